"""``gptfl federate CONFIG``: federated training -> ``RUN/federate/model.safetensors``.

Like every stage command (``commands.stage``), plus two things the simulator needs: the config is
checked before anything is submitted (clients per round, the model to start from, ranks against
this machine's devices for local executors), and a Slurm job gets one task per rank
(``federate.ranks`` spread over ``launcher.slurm.nodes``), which join one torch.distributed world.
"""

from __future__ import annotations

import argparse
import functools
import json

from gptfl_hpc.commands.common import add_config_arguments, add_executor_arguments, config_from_args
from gptfl_hpc.commands.stage import resolve_target
from gptfl_hpc.config import Config
from gptfl_hpc.errors import UserError
from gptfl_hpc.launch import Launcher
from gptfl_hpc.launch.executors import sbatch_script
from gptfl_hpc.rundir import check_run_dir

TARGET = "gptfl_hpc.fl.stage:run"


def register(subparsers) -> None:
    parser = subparsers.add_parser("federate", help="federated learning on the clients' data")
    add_config_arguments(parser)
    add_executor_arguments(parser)
    parser.add_argument("--wait", action="store_true", help="with --executor slurm: wait for the job to finish")
    parser.set_defaults(func=functools.partial(run_federate, name="federate", target=TARGET))


def slurm_tasks(config: Config) -> tuple[int, int]:
    """``(nodes, tasks_per_node)`` for ``federate.ranks`` ranks on ``launcher.slurm.nodes`` nodes."""
    ranks, nodes = config.federate.ranks, config.launcher.slurm.nodes
    if ranks % nodes:
        raise UserError(
            f"federate.ranks {ranks} does not split evenly over launcher.slurm.nodes {nodes}; "
            "use a multiple of the node count"
        )
    return nodes, ranks // nodes


def run_federate(args: argparse.Namespace, *, name: str, target: str) -> int:
    from gptfl_hpc.fl.stage import preflight

    config = config_from_args(args)
    check_run_dir(config)
    executor = config.launcher.executor
    preflight(config, check_local_devices=executor != "slurm")
    nodes, tasks = slurm_tasks(config) if executor == "slurm" else (None, None)
    log_dir = config.run_dir / "logs"
    if args.dry_run:
        print(f"{name}: would run {target} on {config.federate.ranks} ranks with executor '{executor}', "
              f"config hash {config.hash}")
        print(f"{name}: run_dir {config.run_dir}, logs under {log_dir / name}")
        if executor == "slurm":
            script = sbatch_script(
                config.launcher, log_dir / name, job_name=f"gptfl-{name}", nodes=nodes, tasks_per_node=tasks
            )
            print(script, end="")
        return 0
    launcher = Launcher(config.launcher, log_dir)
    job = launcher.submit(resolve_target(target), config, name=name, nodes=nodes, tasks_per_node=tasks)
    print(f"{name}: {executor} job {job.job_id}, logs under {log_dir / name}")
    if executor == "slurm" and not args.wait:
        return 0
    result = launcher.wait([job])[0]
    if result is not None:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    return 0

"""``gptfl pretrain CONFIG``: synthetic shards -> ``RUN/pretrain/model.safetensors``.

    gptfl pretrain CONFIG [key=value ...] [--executor inline|local|slurm|debug] [--dry-run] [--wait]

The stage command pattern (``commands/stage.py``) with one addition: on Slurm the job gets one
task per rank (``launcher.slurm.nodes`` x ``pretrain.ranks / nodes``), each joining the job's
torch.distributed world; the other executors run one task that starts the ranks itself. Inputs are
checked before anything is submitted, so bad shards or settings cost one line, not a job.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from gptfl_hpc.commands.common import add_job_parser, config_from_args
from gptfl_hpc.commands.stage import job_shape as slurm_job_shape
from gptfl_hpc.config import Config
from gptfl_hpc.errors import UserError
from gptfl_hpc.rundir import check_run_dir

NAME = "pretrain"
TARGET = "gptfl_hpc.pretrain.stage:run"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_job_parser(subparsers, NAME, "train the downstream model on the shards (DeepSpeed)", __doc__)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    check_run_dir(config)
    if args.dry_run:
        return dry_run(config)
    from gptfl_hpc.pretrain.stage import completed

    finished = completed(config)
    if finished is not None:
        print(f"{NAME}: already complete for this config; model at {finished['model']}")
        print(json.dumps(finished, indent=2, sort_keys=True, default=str))
        return 0
    launcher, job = submit(config)
    executor = config.launcher.executor
    print(f"{NAME}: {executor} job {job.job_id}, logs under {launcher.log_dir / NAME}")
    if executor == "slurm" and not args.wait:
        return 0
    result = launcher.wait([job])[0]
    if result is not None and _is_rank_zero():
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    return 0


def job_shape(config: Config) -> tuple[int, int]:
    """``(nodes, tasks_per_node)``: one task per rank for submitit (Slurm and local, so a local run
    has the process layout of a Slurm one); inline and debug jobs run here and spawn the ranks."""
    if config.launcher.executor == "local":
        return 1, config.pretrain.ranks
    if config.launcher.executor != "slurm":
        return 1, 1
    return slurm_job_shape(config, NAME, "pretrain.ranks")


def check_inputs(config: Config) -> Any:
    """The stage's own checks, run before submitting; devices only where the job will run."""
    from gptfl_hpc.pretrain.inputs import plan_training
    from gptfl_hpc.pretrain.stage import preflight

    # A Slurm job runs elsewhere, and a task of an srun step has its world size in the environment
    # only once the launch layer exports it: the stage checks the devices there itself.
    here = config.launcher.executor != "slurm" and "SLURM_PROCID" not in os.environ
    return preflight(config) if here else plan_training(config)


def submit(config: Config) -> tuple[Any, Any]:
    """Check the inputs, then submit the stage as one job; ``(launcher, job)``."""
    from gptfl_hpc.launch import Launcher
    from gptfl_hpc.pretrain.stage import run

    nodes, tasks_per_node = job_shape(config)
    check_inputs(config)
    launcher = Launcher(config.launcher, config.run_dir / "logs")
    job = launcher.submit(run, config, name=NAME, nodes=nodes, tasks_per_node=tasks_per_node)
    return launcher, job


def dry_run(config: Config) -> int:
    from gptfl_hpc.launch.executors import sbatch_script

    nodes, tasks_per_node = job_shape(config)
    executor = config.launcher.executor
    print(f"{NAME}: would run {TARGET} with executor '{executor}', config hash {config.hash}")
    try:
        plan = check_inputs(config)
    except UserError as exc:
        print(f"{NAME}: inputs not ready: {exc}")
    else:
        print(
            f"{NAME}: {plan.num_samples} {plan.modality} samples from {len(plan.shard_files)} shards, "
            f"{config.pretrain.epochs} epochs x {plan.steps_per_epoch} steps = {plan.total_steps} steps"
        )
    print(f"{NAME}: {config.pretrain.ranks} ranks as {nodes} node(s) x {tasks_per_node} task(s), "
          f"ZeRO stage {config.pretrain.zero_stage}; run_dir {config.run_dir}")
    if executor == "slurm":
        folder = config.run_dir / "logs" / NAME
        print(sbatch_script(config.launcher.for_stage(NAME), folder, job_name=f"gptfl-{NAME}", nodes=nodes,
                            tasks_per_node=tasks_per_node), end="")
    return 0


def _is_rank_zero() -> bool:
    """Under ``srun`` every task runs this command; only the first prints the summary."""
    return os.environ.get("SLURM_PROCID", "0") == "0"

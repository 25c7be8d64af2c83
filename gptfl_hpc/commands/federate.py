"""``gptfl federate CONFIG``: federated training -> ``RUN/federate/model.safetensors``.

The stage command pattern (``commands.stage``) with the simulator's needs: the config is checked
before anything is submitted (clients per round, the model to start from, ranks against this
machine's devices for local executors), and a Slurm job gets one task per rank (``federate.ranks``
spread over ``launcher.slurm.nodes``), which join one torch.distributed world.
"""

from __future__ import annotations

from gptfl_hpc.commands.stage import add_stage_command
from gptfl_hpc.config import Config


def check(config: Config) -> None:
    from gptfl_hpc.fl.stage import preflight

    preflight(config, check_local_devices=config.launcher.executor != "slurm")


def register(subparsers) -> None:
    add_stage_command(subparsers, "federate", "gptfl_hpc.fl.stage:run", "federated learning on the clients' data",
                      ranks="federate.ranks", check=check)

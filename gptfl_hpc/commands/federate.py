"""``gptfl federate CONFIG``: federated training -> ``RUN/federate/model.safetensors``.

    gptfl federate CONFIG [key=value ...] [--executor inline|local|slurm|debug] [--dry-run] [--wait]
    gptfl federate CONFIG federate.init=scratch     # FL from scratch -> RUN/federate-scratch

The stage command pattern (``commands.stage``): the config is checked before anything is submitted
(clients per round, the model to start from, ranks against this machine's devices for local
executors), and the job gets one task per rank (``federate.ranks`` spread over
``launcher.slurm.nodes``), which join one torch.distributed world. ``federate.init`` picks the
output, not the run: GPT-FL and FL from scratch share one run directory.
"""

from __future__ import annotations

from gptfl_hpc.commands.stage import add_stage_command


def register(subparsers) -> None:
    add_stage_command(subparsers, "federate", __doc__)

"""``gptfl pretrain CONFIG``: synthetic shards -> ``RUN/pretrain/model.safetensors``.

    gptfl pretrain CONFIG [key=value ...] [--executor inline|local|slurm|debug] [--dry-run] [--wait]

The stage command pattern (``commands/stage.py``, ``orchestrate/``): the job gets one task per rank
(``launcher.slurm.nodes`` x ``pretrain.ranks / nodes`` on Slurm, ``pretrain.ranks`` tasks with the
local executor), each joining the job's torch.distributed world; inline and debug jobs start the
ranks themselves. Inputs are checked before anything is submitted, so bad shards or settings cost
one line, not a job.
"""

from __future__ import annotations

import argparse

from gptfl_hpc.commands.stage import add_stage_command


def register(subparsers: argparse._SubParsersAction) -> None:
    add_stage_command(subparsers, "pretrain", __doc__)

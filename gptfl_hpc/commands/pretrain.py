"""``gptfl pretrain CONFIG``: synthetic shards -> ``RUN/pretrain/model.safetensors``.

    gptfl pretrain CONFIG [key=value ...] [--executor inline|local|slurm|debug] [--dry-run] [--wait]

The stage command pattern (``commands/stage.py``): the job gets one task per rank
(``launcher.slurm.nodes`` x ``pretrain.ranks / nodes`` on Slurm, ``pretrain.ranks`` tasks with the
local executor), each joining the job's torch.distributed world; inline and debug jobs start the
ranks themselves. Inputs are checked before anything is submitted, so bad shards or settings cost
one line, not a job.
"""

from __future__ import annotations

import argparse
from typing import Any

from gptfl_hpc.commands.stage import add_stage_command
from gptfl_hpc.config import Config
from gptfl_hpc.stages import PRETRAIN


def register(subparsers: argparse._SubParsersAction) -> None:
    add_stage_command(subparsers, PRETRAIN.name, __doc__, explain=explain)


def explain(config: Config, plan: Any) -> list[str]:
    nodes, tasks = PRETRAIN.job_shape(config)
    lines = []
    if plan is not None:
        lines.append(f"{plan.num_samples} {plan.modality} samples from {len(plan.shard_files)} shards, "
                     f"{config.pretrain.epochs} epochs x {plan.steps_per_epoch} steps = {plan.total_steps} steps")
        if plan.label_selection is not None:
            lines.append(plan.label_selection.describe())
    shape = f"{nodes} node(s) x {tasks} task(s)" if nodes else "one task that starts them"
    lines.append(f"{config.pretrain.ranks} ranks as {shape}, ZeRO stage {config.pretrain.zero_stage}")
    return lines

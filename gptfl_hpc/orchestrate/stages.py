"""The pipeline: every stage's own description, in the order a run makes them.

A stage that no later stage reads is *not needed*: with ``pretrain.shards`` pretraining reads
external shards, so prompts and synthesis are skipped; with ``federate.init_path`` GPT-FL starts
from an external model, so pretraining is skipped too; ``federate.init=scratch`` runs only FL from
scratch.
"""

from __future__ import annotations

from typing import Any, Optional

from gptfl_hpc import report
from gptfl_hpc.config import Config
from gptfl_hpc.errors import UserError
from gptfl_hpc.fl import description as fl
from gptfl_hpc.pretrain import description as pretrain
from gptfl_hpc.prompts import description as prompts
from gptfl_hpc.stage import Stage
from gptfl_hpc.synth import description as synth

PROMPTS = prompts.STAGE
SYNTH = synth.STAGE
PRETRAIN = pretrain.STAGE
FEDERATE = fl.GPT_FL
BASELINE = fl.FROM_SCRATCH
REPORT = report.STAGE

#: In the order a run makes them.
PIPELINE = (PROMPTS, SYNTH, PRETRAIN, FEDERATE, BASELINE, REPORT)
BY_NAME = {stage.name: stage for stage in PIPELINE}


def command_stage(config: Config, name: str) -> Stage:
    """The stage ``gptfl NAME`` runs: ``gptfl federate`` runs FL from scratch with ``federate.init=scratch``."""
    if name == FEDERATE.name and config.federate.init == "scratch":
        return BY_NAME[BASELINE.name]
    return BY_NAME[name]


def not_needed(config: Config) -> dict[str, str]:
    """``{stage: why}`` for the stages this config skips: no later stage reads what they make."""
    skipped: dict[str, str] = {}
    fed = config.federate
    if fed.init == "scratch":
        skipped["federate"] = "federate.init=scratch runs FL from scratch only"
    elif not fed.baseline:
        skipped["federate-scratch"] = "federate.baseline is false"
    if "federate" in skipped:
        why = skipped["federate"]
        skipped.update(pretrain=why, synth=why, prompts=why)
    elif fed.init_path is not None:
        why = f"GPT-FL starts from federate.init_path {fed.init_path}"
        skipped.update(pretrain=why, synth=why, prompts=why)
    elif config.pretrain.shards is not None:
        why = "pretraining reads pretrain.shards"
        skipped.update(synth=why, prompts=why)
    return skipped


def stage_states(config: Config, names: Optional[tuple[str, ...]] = None) -> dict[str, dict[str, Any]]:
    """Each stage's state (``not needed`` with the reason for skipped ones), in pipeline order."""
    skipped = not_needed(config)
    states = {}
    for stage in PIPELINE:
        if names is not None and stage.name not in names:
            continue
        states[stage.name] = {"state": "not needed", "why": skipped[stage.name]} if stage.name in skipped \
            else stage.state(config)
    return states


def job_shape(stage: Stage, config: Config) -> tuple[Optional[int], Optional[int]]:
    """``(nodes, tasks_per_node)`` of a stage's job: with Slurm and the local executor one task per
    rank, so a local run has the process layout of a Slurm one; inline and debug jobs run here and
    start the ranks themselves (``(None, None)``), as does an array stage's every task."""
    executor = config.launcher.executor
    if executor not in ("slurm", "local") or stage.plan is not None:
        return None, None
    ranks = stage.ranks(config)
    if ranks == 1:
        return 1, 1
    if executor == "local":
        return 1, ranks
    nodes = config.launcher.for_stage(stage.name).slurm.nodes
    if ranks % nodes:
        raise UserError(
            f"{stage.ranks_key} {ranks} does not split evenly over launcher.slurm.nodes {nodes}; "
            f"make {stage.ranks_key} a multiple of the node count"
        )
    return nodes, ranks // nodes

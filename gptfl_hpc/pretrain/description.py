"""The pretrain stage as the pipeline sees it: the shards -> ``RUN/pretrain/model.safetensors``.

Torch and DeepSpeed load in the job that trains, never in the command that checks and submits: the
training modules are imported inside ``run`` and ``check``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from gptfl_hpc.config import Config
from gptfl_hpc.errors import UserError
from gptfl_hpc.layout import RunLayout
from gptfl_hpc.modality import require_same_input
from gptfl_hpc.pretrain.config import pretrain_identity
from gptfl_hpc.pretrain.layout import PretrainPaths
from gptfl_hpc.stage import CheckContext, Stage, started_state


def run(config: Config) -> dict[str, Any]:
    from gptfl_hpc.pretrain.stage import run as pretrain

    return pretrain(config)


def check(config: Config, context: CheckContext) -> Any:
    """Devices (where the ranks run here), then the shards and the training plan; with synthesis
    still to run, only what is known before the shards exist (their modality)."""
    if context.devices_here:
        from gptfl_hpc.ranks import check_rank_devices

        check_rank_devices("pretrain.ranks", config.pretrain.ranks)
    if "synth" in context.pending:  # the shards' own checks run when the job starts
        require_same_input(config, "synth.model.kind", "model.name")
        _require_scores_planned(config)
        return None
    from gptfl_hpc.pretrain.inputs import plan_training

    return plan_training(config)


def _require_scores_planned(config: Config) -> None:
    """A score rule on the run's own shards, which synthesis will make without scores: refuse it now."""
    rule = "min_score" if config.pretrain.min_score is not None else "keep_fraction"
    if getattr(config.pretrain, rule) is not None and config.pretrain.shards is None and config.synth.score is None:
        raise UserError(
            f"pretrain.{rule} needs a score per sample, but synth.score is not set, so the run's shards will hold "
            f"none; set synth.score (e.g. synth.score.kind=clip synth.score.model=DIR), or set pretrain.{rule} to null"
        )


def completed(config: Config) -> Optional[dict[str, Any]]:
    """The summary of a finished run of this config, or None."""
    paths = PretrainPaths(config.run_dir)
    if not (paths.done.is_file() and paths.model.is_file()):
        return None
    summary = json.loads(paths.done.read_text())
    # The identity of what pretraining reads: a sweep point's federate-only keys differ from those
    # of the shared run whose model (and done.json) it links.
    same = summary.get("pretrain_identity") == pretrain_identity(config.science())
    return summary if same or summary.get("config_hash") == config.hash else None


def state(config: Config) -> dict[str, Any]:
    """Done when the model and ``done.json`` written by this config after it are there."""
    return {"state": "done"} if completed(config) is not None else started_state(config.layout.pretrain)


def output(layout: RunLayout) -> Path:
    return layout.pretrained_model


def explain(config: Config, plan: Any) -> list[str]:
    lines = []
    if plan is not None:
        lines.append(f"{plan.num_samples} {plan.modality} samples from {len(plan.shard_files)} shards, "
                     f"{config.pretrain.epochs} epochs x {plan.steps_per_epoch} steps = {plan.total_steps} steps")
        if plan.label_selection is not None:
            lines.append(plan.label_selection.describe())
        if plan.score_selection is not None:
            lines.append(plan.score_selection.describe())
    lines.append(f"DeepSpeed ZeRO stage {config.pretrain.zero_stage}")
    return lines


STAGE = Stage("pretrain", "train the downstream model on the shards (DeepSpeed)", run=run, check=check,
              state=state, output=output, needs=("synth",), ranks_key="pretrain.ranks", explain=explain)

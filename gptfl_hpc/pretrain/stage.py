"""Stage 3 entry point: ``run(config)`` trains the downstream model on the synthesis shards.

Reads ``RUN/synth/shard-*.h5`` (or ``pretrain.shards``), writes ``RUN/pretrain/model.safetensors``
(the federate stage's input), ``metrics.jsonl``, ``timing.jsonl``, ``checkpoints/`` and ``done.json``. Running it
again resumes from the latest checkpoint, or returns at once when the model is already exported.

Inputs are checked in this process before any rank starts, so a bad config costs one line and
writes nothing. Under ``srun`` (or a multi-task submitit job) each task runs this function and
joins the job's world; otherwise it spawns ``pretrain.ranks`` processes here.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from gptfl_hpc import durable, ranks
from gptfl_hpc.config import Config
from gptfl_hpc.errors import UserError
from gptfl_hpc.locks import output_lock
from gptfl_hpc.pretrain.description import completed
from gptfl_hpc.pretrain.engine import configure_environment
from gptfl_hpc.pretrain.inputs import TrainingPlan, plan_training
from gptfl_hpc.pretrain.layout import PretrainPaths
from gptfl_hpc.rundir import check_run_dir, prepare_run_dir

log = logging.getLogger(__name__)


def run(config: Config) -> dict[str, Any]:
    """Train (or resume) and export; the summary of the finished run."""
    check_run_dir(config)
    rank = (ranks.launched_world() or (0, 1))[0]
    with output_lock(config.run_dir, "pretrain", rank=rank):  # rank 0 holds it for the job
        return _train(config)


def _train(config: Config) -> dict[str, Any]:
    paths = PretrainPaths(config.run_dir)
    finished = completed(config)
    if finished is not None:
        log.info("pretrain already complete: %s", paths.model)
        return finished
    plan = preflight(config)
    prepare_run_dir(config)
    record_inputs(paths, plan)
    if plan.score_selection is not None:
        log.info("%s", plan.score_selection.describe())
    log.info(
        "pretrain: %d samples from %d shards, %d epochs of %d steps on %d ranks",
        plan.num_samples, len(plan.shard_files), config.pretrain.epochs, plan.steps_per_epoch, config.pretrain.ranks,
    )
    configure_environment(paths.cache)  # spawned ranks inherit it before they import deepspeed
    from gptfl_hpc.pretrain.train import train_rank

    return ranks.run_on_ranks(train_rank, config.pretrain.ranks, (config, plan))


def preflight(config: Config) -> TrainingPlan:
    """Every check that needs no training: devices, shards, modality, batch shape, test split."""
    ranks.check_rank_devices("pretrain.ranks", config.pretrain.ranks)
    return plan_training(config)


def record_inputs(paths: PretrainPaths, plan: TrainingPlan) -> None:
    """Pin the shard list a run starts with; a resume on other shards could not be exact."""
    if durable.read_latest(paths.checkpoints) is not None and paths.inputs.is_file():
        recorded = json.loads(paths.inputs.read_text())
        if recorded.get("fingerprint") != plan.fingerprint:
            raise UserError(
                f"the shards changed since pretraining started ({len(recorded.get('files', []))} files then, "
                f"{len(plan.shard_files)} now); restore them, or remove {paths.folder} to start over"
            )
        return
    inputs: dict = {"fingerprint": plan.fingerprint, "files": [str(path) for path in plan.shard_files]}
    if plan.score_selection is not None:
        inputs["score_selection"] = plan.score_selection.summary()
    durable.atomic_write_json(paths.inputs, inputs)

"""The synthesis stage as the pipeline sees it: prompts -> ``RUN/synth/shard-*.h5``, one array job
whose task ``k`` makes the shards the plan gives it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gptfl_hpc.config import Config
from gptfl_hpc.layout import RunLayout
from gptfl_hpc.modality import require_same_input
from gptfl_hpc.shards.manifest import shard_states
from gptfl_hpc.stage import CheckContext, Stage
from gptfl_hpc.synth import stage as synth
from gptfl_hpc.synth.plan import Plan

log = logging.getLogger(__name__)


def plan(config: Config) -> Plan:
    """The array's plan: ``plan.num_tasks`` tasks."""
    return synth.load_plan(config, len(config.labels.load()))


def check(config: Config, context: CheckContext) -> Plan:
    if config.synth.count is None:
        # Sized from the private dataset, the samples stand in for it; an explicit synth.count makes
        # shards of their own (for pretrain.shards elsewhere), of any modality.
        require_same_input(config, "synth.model.kind", "data.dataset")
    checked = synth.check(config, prompts_pending="prompts" in context.pending)
    note = synth.rounding_note(config, checked)
    if note:
        log.info(note)
    return checked


def state(config: Config) -> dict[str, Any]:
    """Done when every planned shard is complete and matches its recorded checksum (a damaged shard
    makes the stage partial, so the next run remakes it); with shard counts and partial progress."""
    folder = config.layout.synth
    if not (folder / synth.PLAN).is_file():
        return {"state": "missing"}
    labels = config.labels.load()
    planned = synth.load_plan(config, len(labels))
    states = shard_states(folder, planned, labels, check=True)
    counts = {kind: sum(s.state == kind for s in states) for kind in ("complete", "partial", "missing", "bad")}
    samples = sum(s.committed for s in states)
    done = counts["complete"] == planned.num_shards
    partial = {f"shard-{s.shard:05d}": f"{s.committed}/{s.planned}" for s in states if s.state == "partial"}
    return {"state": "done" if done else ("partial" if samples else "missing"), "shards": counts,
            "samples": f"{samples}/{planned.total}", "partial": partial}


def output(layout: RunLayout) -> Path:
    return layout.synth


def explain(config: Config, checked: Plan) -> list[str]:
    """The plan, the generator and the time estimate for a dry run."""
    model = config.synth.model
    batching = (f"steps of {model.batch_size} samples, each made alone (batch_invariant)" if model.batch_invariant
                else f"batch {model.batch_size}")
    lines = [
        f"{checked.total} samples = {checked.per_class} per class x {checked.num_labels} labels",
        f"{checked.num_shards} shards of {checked.samples_per_shard}, {checked.num_tasks} array tasks "
        f"of {checked.shards_per_task} shards, {batching}",
        f"generator {model.kind} ({model.weights}), {model.steps} steps, guidance U{list(checked.guidance)}",
    ]
    note = synth.rounding_note(config, checked)
    if note:
        lines.append(note)
    rate = synth.measured_rate(config)
    if rate:
        parallel = min(checked.num_tasks, config.launcher.for_stage("synth").slurm.array_parallelism)
        hours = checked.total / (rate * parallel) / 3600
        lines.append(f"estimated {hours:.2f} h at the measured {rate:.2f} samples/s per task, {parallel} tasks at once")
    else:
        lines.append("no measured samples/s yet for this run (each finished task records its own); "
                     "run a small synth.count first to measure")
    return lines


def summarize(config: Config, results: list) -> dict[str, Any]:
    return synth.summarize(synth.prepare(config), results)


STAGE = Stage("synth", "prompts -> synthetic shards (one array job)", run=synth.run_array_task, check=check,
              state=state, output=output, needs=("prompts",), plan=plan, prerequisites=("prompts",),
              explain=explain, summarize=summarize, reuse_note=synth.reuse_note)

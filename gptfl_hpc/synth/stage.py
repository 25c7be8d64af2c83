"""The synthesis stage: ``prepare`` fixes the plan, ``run_task`` makes one task's shards.

``prepare`` runs wherever the stage is started (a login node, the inline process, or each array
task of a plain sbatch array): it is idempotent and cheap. It writes ``RUN/synth/plan.json`` once
and builds tiny weights when the config asks for them. ``run_task(config, t)`` makes the shards of
task ``t``: complete shards are checked and skipped, a partial shard continues after its last
committed sample, a bad shard is moved aside and made again. It commits a block every
``flush_every`` samples (whole batches), and at each commit honours a pending preemption.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from tqdm import tqdm

from gptfl_hpc import preemption, stage_reads
from gptfl_hpc.config import Config
from gptfl_hpc.durable import atomic_write_json
from gptfl_hpc.errors import UserError
from gptfl_hpc.identity import sha256_json
from gptfl_hpc.locks import output_locks
from gptfl_hpc.rundir import load_run, prepare_run_dir
from gptfl_hpc.shards.manifest import (
    PLAN,
    check_shard,
    read_record,
    rebuild_manifest,
    shard_path,
    shard_problems,
    shard_states,
    write_record,
)
from gptfl_hpc.shards.writer import PartialShard, shard_name, write_shard
from gptfl_hpc.synth.plan import Plan, make_plan, saved_plan
from gptfl_hpc.tracking import Tracker, open_tracker

log = logging.getLogger(__name__)

#: The ``synth`` keys of how work is split and committed; they never change a sample, so they are
#: not part of the identity.
EXECUTION_KEYS = tuple(key.removeprefix("synth.") for key in stage_reads.EXECUTION_KEYS["synth"])
#: Those and the keys only ``gptfl synth stats`` reads, as dotted config keys.
NOT_IN_SAMPLES = stage_reads.EXECUTION_KEYS["synth"] + stage_reads.SUMMARY_KEYS["synth"]


def synth_identity(config: Config) -> str:
    """sha256 of what decides the samples (and their scores): seed, labels, prompts and synth minus
    how work is split and what only summaries read."""
    science = stage_reads.without_keys(config.science(), NOT_IN_SAMPLES)
    return sha256_json(
        {"seed": science["seed"], "labels": science["labels"], "prompts": science["prompts"], "synth": science["synth"]}
    )


def synth_dir(config: Config) -> Path:
    return config.layout.synth


@dataclass
class SynthJob:
    """What every task of one synthesis run shares."""

    config: Config
    plan: Plan
    labels: list[str]
    prompts: list[list[str]]  # per class index
    weights_dir: Path
    vocoder_dir: Optional[Path]
    provenance: dict[str, Any]
    score_model: Optional[tuple[Any, Path]] = None  # (ScoreFamily, directory) when synth.score is set

    @property
    def folder(self) -> Path:
        return synth_dir(self.config)


def planned_total(config: Config) -> int:
    """``synth.count``, or ``synth.multiplier`` x the real training set's size."""
    if config.synth.count is not None:
        return config.synth.count
    from gptfl_hpc.data.factory import open_dataset

    train_size = len(open_dataset(config.data, "train", decode=False))  # the count, nothing decoded
    return round(config.synth.multiplier * train_size)


def compute_plan(config: Config, num_labels: int) -> Plan:
    from gptfl_hpc.synth.generators import num_speakers
    from gptfl_hpc.synth.guidance_range import planned_guidance

    return make_plan(
        run_seed=config.seed,
        num_labels=num_labels,
        total=planned_total(config),
        samples_per_shard=config.synth.samples_per_shard,
        tasks=config.synth.tasks,
        guidance=planned_guidance(config.synth),
        num_speakers=num_speakers(config.synth.model),
    )


def load_plan(config: Config, num_labels: int) -> Plan:
    """The run's plan: the saved one when it exists (it is fixed once written), else computed."""
    saved = saved_plan(synth_dir(config))
    return saved[0] if saved is not None else compute_plan(config, num_labels)


def rounding_note(config: Config, plan: Plan) -> Optional[str]:
    """One line when ``synth.count`` is not a whole number of samples per class, else None."""
    asked = config.synth.count
    if asked is None or asked == plan.total:
        return None
    return (f"synth.count {asked} makes {plan.total} samples: whole classes of {plan.per_class} "
            f"x {plan.num_labels} labels; set synth.count to a multiple of {plan.num_labels} to silence this")


def check(config: Config, prompts_pending: bool = False) -> Plan:
    """What a synthesis run needs, checked without writing anything: labels, prompts (unless the
    prompts stage runs first), the plan and the weights; returns the plan."""
    from gptfl_hpc.prompts.store import load_prompts
    from gptfl_hpc.synth.generators import check_weights, resolve_weights

    labels = config.labels.load()
    if not prompts_pending:
        load_prompts(config.run_dir, labels)
    plan = load_plan(config, len(labels))
    if config.synth.model.weights != "tiny":  # tiny weights are built by the first task, never missing
        weights_dir, vocoder_dir = resolve_weights(config.synth.model, config.run_dir)
        check_weights(config.synth.model, weights_dir, vocoder_dir)
        refuse_changed_weights(config, {"weights_revision": revision_of(weights_dir, vocoder_dir)})
    if config.synth.score is not None:
        from gptfl_hpc.synth.scoring.kinds import check_score_model

        check_score_model(config.synth.score, config.synth.model.modality, config.run_dir)
    return plan


def revision_of(weights_dir: Path, vocoder_dir: Optional[Path]) -> str:
    """The fingerprint of the generator's weights (and vocoder) recorded with every shard."""
    from gptfl_hpc.synth.generators import weights_revision

    return weights_revision(*[d for d in (weights_dir, vocoder_dir) if d is not None])


def weights_change(config: Config, current: dict[str, Any]) -> Optional[str]:
    """How the weights in ``current`` (``weights_revision``, ``score_revision``) differ from those
    that made the samples already in ``RUN/synth``, or None. The identity of a run is its config, so
    weights re-saved in place under the same path keep the run directory and only this tells them apart."""
    path = synth_dir(config) / PLAN
    if not path.is_file():
        return None
    recorded = json.loads(path.read_text())
    for key, what in (("weights_revision", "synth.model.weights"), ("score_revision", "synth.score.model")):
        if recorded.get(key) and current.get(key) and recorded[key] != current[key]:
            return (f"{path.parent} holds samples made from {what} revision {recorded[key]}, "
                    f"but those weights now have revision {current[key]}")
    return None


def refuse_changed_weights(config: Config, current: dict[str, Any]) -> None:
    """Refuse to add samples of other weights to a run's shards: a dataset is made by one generator."""
    change = weights_change(config, current)
    if change:
        raise UserError(f"{change}; samples of two generators never share a run: set run_dir (in a sweep, "
                        "--shared-dir) to a new directory for the new weights, or restore the weights this run "
                        "was made with")


def reuse_note(config: Config) -> Optional[str]:
    """For a finished synthesis: whether its shards come from other weights than those configured now."""
    from gptfl_hpc.synth.generators import resolve_weights

    if config.synth.model.weights == "tiny" or not (synth_dir(config) / PLAN).is_file():
        return None
    try:
        weights_dir, vocoder_dir = resolve_weights(config.synth.model, config.run_dir)
        current = revision_of(weights_dir, vocoder_dir)
    except (UserError, OSError):  # weights moved away after synthesis: the shards are all that counts
        return None
    change = weights_change(config, {"weights_revision": current})
    return (f"{change}; to sample from the new weights, set run_dir (in a sweep, --shared-dir) to a new directory"
            if change else None)


def prepare(config: Config) -> SynthJob:
    """Fix the plan and the weights; idempotent, so every task may call it."""
    from gptfl_hpc.prompts.store import load_prompts
    from gptfl_hpc.synth.generators import check_weights, resolve_weights, weights_revision

    labels = config.labels.load()
    by_label = load_prompts(config.run_dir, labels)
    plan = load_plan(config, len(labels))
    weights_dir, vocoder_dir = resolve_weights(config.synth.model, config.run_dir)
    check_weights(config.synth.model, weights_dir, vocoder_dir)
    model = config.synth.model
    provenance = {
        "generator": model.kind,
        "modality": model.modality,
        "weights": model.weights,
        "weights_revision": revision_of(weights_dir, vocoder_dir),
        "config_hash": synth_identity(config),
    }
    score_model = None
    if config.synth.score is not None:
        from gptfl_hpc.synth.scoring.kinds import ensure_score_model

        score_model = ensure_score_model(config.synth.score, model.modality, config.run_dir)
        # Only with scores on, so shards made without them keep their bytes.
        provenance.update(score_model=config.synth.score.model or "tiny", score_kind=score_model[0].name,
                          score_revision=weights_revision(score_model[1]))
    refuse_changed_weights(config, provenance)  # before a task adds samples of other weights to the run
    prepare_run_dir(config)  # after the checks: a refused config must not claim the run_dir
    folder = synth_dir(config)
    if not (folder / PLAN).is_file():
        atomic_write_json(folder / PLAN, {"plan": plan.summary(), "labels": labels, **provenance})
    return SynthJob(config, plan, labels, [by_label[label] for label in labels], weights_dir, vocoder_dir, provenance,
                    score_model)


def shard_attrs(job: SynthJob, shard: int, sample_rate: Optional[int]) -> dict[str, Any]:
    start, stop = job.plan.shard_range(shard)
    attrs: dict[str, Any] = {
        "labels": job.labels,
        **job.provenance,
        "shard": shard,
        "start": start,
        "stop": stop,
        "total": job.plan.total,
    }
    if sample_rate is not None:
        attrs["sample_rate"] = sample_rate
    return attrs


def quarantine(job: SynthJob, shard: int, problem: str) -> None:
    """Move a bad shard and its record to ``RUN/synth/bad/`` (kept for inspection, never deleted)."""
    bad = job.folder / "bad"
    bad.mkdir(exist_ok=True)
    for source in (shard_path(job.folder, shard), job.folder / f"{shard_name(shard)}.json"):
        if source.exists():
            target = bad / source.name
            suffix = 1
            while target.exists():
                target = bad / f"{source.name}.{suffix}"
                suffix += 1
            shutil.move(str(source), str(target))
    log.warning("%s is bad (%s): moved to %s, making it again", shard_name(shard), problem, bad)


def _remove_stale_temporaries(job: SynthJob, shard: int) -> None:
    """Temporaries of a write that a kill interrupted; only this task writes this shard."""
    name = shard_name(shard)
    for pattern in (f".{name}.h5.*.tmp", f".{name}.json.*.tmp", f".partial/{name}/.*.tmp"):
        for path in glob.glob(str(job.folder / pattern)):
            Path(path).unlink(missing_ok=True)


def _shard_is_done(job: SynthJob, shard: int) -> bool:
    """True for a good complete shard; a bad one is quarantined and False returned."""
    path = shard_path(job.folder, shard)
    if not path.is_file():
        return False
    if read_record(job.folder, shard) is None:
        # Killed between the shard's rename and its record: the shard was complete when renamed.
        try:
            write_record(job.folder, shard, job.plan, job.labels)
        except (OSError, KeyError) as exc:
            quarantine(job, shard, f"unreadable ({exc})")
            return False
    problem = check_shard(job.folder, shard, job.plan, job.labels)
    if problem is None:
        return True
    quarantine(job, shard, problem)
    return False


def run_task(config: Config, task: int) -> dict[str, Any]:
    """Make every shard of array task ``task``; returns counts and the measured samples/s. Holds the
    locks of its own shards only, so the tasks of one array write side by side."""
    job = prepare(config)
    with output_locks(config.run_dir, [f"synth/{shard_name(shard)}" for shard in job.plan.task_shards(task)]):
        return _make_shards(job, task)


def _make_shards(job: SynthJob, task: int) -> dict[str, Any]:
    config = job.config
    plan, model = job.plan, config.synth.model
    shards = plan.task_shards(task)
    todo = [shard for shard in shards if not _shard_is_done(job, shard)]
    skipped = len(shards) - len(todo)
    result: dict[str, Any] = {"task": task, "shards": list(shards), "skipped": skipped, "made": 0, "samples": 0}
    if not todo:
        log.info("task %d: all %d shards already complete", task, len(shards))
        rebuild_manifest(job.folder, plan, job.labels, job.provenance)
        return result

    from gptfl_hpc.synth.generators import load_generator

    generator = load_generator(model, config.data.image_size, job.weights_dir, job.vocoder_dir)
    scorer = None
    if job.score_model is not None:
        from gptfl_hpc.synth.generators.runtime import resolve_device
        from gptfl_hpc.synth.scoring.scorer import SampleScorer

        scorer = SampleScorer(*job.score_model, resolve_device(model), generator.sample_rate)
    remaining = []
    for shard in todo:
        start, stop = plan.shard_range(shard)
        _remove_stale_temporaries(job, shard)
        remaining.append(stop - PartialShard(job.folder, shard, start, stop).committed())
    with open_tracker(config, f"synth-task-{task:05d}") as tracker:
        return _make_todo(job, task, todo, remaining, result, generator, tracker, scorer)


def _make_todo(job: SynthJob, task: int, todo: list[int], remaining: list[int], result: dict[str, Any],
               generator: Any, tracker: Tracker, scorer: Any = None) -> dict[str, Any]:
    """Generate the unfinished shards ``todo``, committing a block every ``flush_every`` samples; the
    tracker sees the task's samples done (its step, the same however often the task restarts) and
    the samples/s at each commit."""
    config, plan, model = job.config, job.plan, job.config.synth.model
    batch = model.batch_size
    flush = -(-config.synth.flush_every // batch) * batch  # whole batches, so batches never shift
    task_total = sum(stop - start for start, stop in map(plan.shard_range, plan.task_shards(task)))
    progress = tqdm(total=sum(remaining), desc=f"synth task {task}", unit="sample", mininterval=5, disable=None)
    began, made = time.monotonic(), 0
    for shard in todo:
        start, stop = plan.shard_range(shard)
        partial = PartialShard(job.folder, shard, start, stop)
        cursor = partial.committed()
        if cursor > start:
            log.info("task %d: %s resumes after %d committed samples", task, shard_name(shard), cursor - start)
        pending: list[dict[str, np.ndarray]] = []
        while cursor < stop:
            # Batches start at start + j * batch: the same batches however often the task restarts.
            end = min(cursor + batch, stop)
            specs = plan.specs(cursor, end, job.prompts)
            samples = generator.generate_each(specs) if model.batch_invariant else generator.generate(specs)
            arrays = _as_arrays(specs, samples, model.kind == "speecht5")
            if scorer is not None:
                arrays.update(scorer.score([spec.prompt for spec in specs], arrays["x"]))
            pending.append(arrays)
            progress.update(end - cursor)
            made += end - cursor
            cursor = end
            pending_count = sum(len(block["index"]) for block in pending)
            if pending_count >= flush or cursor == stop or preemption.requested():
                partial.commit({key: np.concatenate([b[key] for b in pending]) for key in pending[0]})
                pending = []
                rate = made / max(time.monotonic() - began, 1e-9)
                log.info("task %d: %s committed %d/%d samples (%.2f samples/s)", task, shard_name(shard),
                         cursor - start, stop - start, rate)
                done = task_total - sum(remaining) + made
                tracker.log_metrics(done, {"samples_per_s": rate, "samples_done": done})
                preemption.raise_if_requested()
        write_shard(shard_path(job.folder, shard), partial.load(), shard_attrs(job, shard, generator.sample_rate))
        write_record(job.folder, shard, plan, job.labels)
        partial.remove()
        rebuild_manifest(job.folder, plan, job.labels, job.provenance)
        result["made"] += 1
    progress.close()
    seconds = time.monotonic() - began
    result.update(samples=made, seconds=round(seconds, 3), samples_per_s=round(made / max(seconds, 1e-9), 3))
    result["flagged"] = [{"index": index, "problem": problem} for index, problem in generator.flagged]
    _record_throughput(job, task, result)
    tracker.log_metrics(task_total, {"flagged": len(result["flagged"]), "task_samples_per_s": result["samples_per_s"]})
    return result


def _as_arrays(specs: list, x: np.ndarray, with_speaker: bool) -> dict[str, np.ndarray]:
    arrays = {
        "x": x,
        "y": np.array([s.label for s in specs], dtype=np.int64),
        "index": np.array([s.index for s in specs], dtype=np.int64),
        "seed": np.array([s.seed for s in specs], dtype=np.int64),
        "guidance": np.array([s.guidance for s in specs], dtype=np.float64),
        "prompt": np.array([s.prompt for s in specs], dtype=np.str_),
    }
    if with_speaker:
        arrays["speaker"] = np.array([s.speaker for s in specs], dtype=np.int64)
    return arrays


def _record_throughput(job: SynthJob, task: int, result: dict[str, Any]) -> None:
    """Measured samples/s per task, for the next dry run's time estimate."""
    if result["samples"]:
        record = {key: result[key] for key in ("samples", "seconds", "samples_per_s")}
        record["host"] = os.uname().nodename
        atomic_write_json(job.folder / "throughput" / f"task-{task:05d}.json", record)


def measured_rate(config: Config) -> Optional[float]:
    """Median samples/s of this run's finished tasks, or None before any task ran."""
    rates = []
    for path in sorted((synth_dir(config) / "throughput").glob("task-*.json")):
        try:
            rates.append(float(json.loads(path.read_text())["samples_per_s"]))
        except (OSError, ValueError, KeyError):
            continue
    return float(np.median(rates)) if rates else None


def run(config: Config) -> dict[str, Any]:
    """Every task in this process, one after another (the inline path of ``gptfl run``)."""
    job = prepare(config)
    results = [run_task(config, task) for task in range(job.plan.num_tasks)]
    return summarize(job, results)


def summarize(job: SynthJob, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the tasks' results; fails if any planned shard is still incomplete."""
    manifest = rebuild_manifest(job.folder, job.plan, job.labels, job.provenance)
    states = shard_states(job.folder, job.plan, job.labels, check=False)
    missing = [s.shard for s in states if s.state != "complete"]
    if missing:
        raise RuntimeError(f"synthesis finished with shards {missing} incomplete; run it again to finish them")
    return {
        "samples": manifest["samples"],
        "shards": manifest["complete_shards"],
        "made": sum(r["made"] for r in results),
        "skipped": sum(r["skipped"] for r in results),
        "flagged": sum(len(r.get("flagged", [])) for r in results),
        "manifest": str(job.folder / "manifest.json"),
    }


def verify(run_dir: Path) -> list[tuple[str, str]]:
    """``(shard, problem)`` for every planned shard that is not good (missing ones included); reads only."""
    config = load_run(run_dir)
    labels = config.labels.load()
    folder = synth_dir(config)
    if not (folder / PLAN).is_file():
        raise UserError(f"{folder / PLAN} not found; run `gptfl synth` for this run first")
    return shard_problems(folder, load_plan(config, len(labels)), labels)


def run_array_task(item: tuple[Config, int]) -> dict[str, Any]:
    """``run_task`` for one ``(config, task)`` item of an array job."""
    config, task = item
    return run_task(config, task)

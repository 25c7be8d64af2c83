"""What is on disk: per-shard records, the manifest, verification and status.

Each complete shard ``shard-KKKKK.h5`` gets a record ``shard-KKKKK.json`` (sha256, count, index
range, class histogram) written right after the shard's rename. ``manifest.json`` lists every
recorded shard; tasks finishing at the same time rebuild it under a file lock, and ``verify`` and
``status`` rebuild it too, so it never stays behind the records.

A shard is *good* when it opens, says ``complete``, holds exactly its planned index range with the
plan's labels, and its sha256 equals its record. Anything else is *bad*: the next run moves it to
``RUN/synth/bad/`` (kept, never deleted) and makes it again. Readers of shards (pretraining) use
``read_plan`` and ``shard_problems`` to refuse a folder with any planned shard not good, and
``record_problem`` for a shard outside such a folder that has a record beside it.

The functions take any plan that says how many shards there are and which samples each holds
(``ShardPlan``): the synthesis plan, or the ``ShardRanges`` of a saved one.
"""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence, TypeVar

import numpy as np

from gptfl_hpc.durable import atomic_write_json, sha256_of
from gptfl_hpc.shards.writer import PartialShard, read_arrays, read_attrs, shard_name

MANIFEST = "manifest.json"
#: The plan and labels of a synthesis folder, written before its first shard.
PLAN = "plan.json"


sha256_file = sha256_of  # the shard checksum is the one every durable file uses


class ShardPlan(Protocol):
    """How many shards a folder should hold and which samples each one covers."""

    @property
    def num_shards(self) -> int: ...

    def shard_range(self, shard: int) -> tuple[int, int]: ...


class SummarizedPlan(ShardPlan, Protocol):
    """A plan that can also describe itself for ``manifest.json``."""

    def summary(self) -> dict[str, Any]: ...


PlanT = TypeVar("PlanT")


def shard_path(synth_dir: Path, shard: int) -> Path:
    return Path(synth_dir) / f"{shard_name(shard)}.h5"


def record_path(synth_dir: Path, shard: int) -> Path:
    return Path(synth_dir) / f"{shard_name(shard)}.json"


def write_record(synth_dir: Path, shard: int, plan: ShardPlan, labels: Sequence[str]) -> dict[str, Any]:
    """Record a freshly completed shard: checksum, count, range and class histogram."""
    path = shard_path(synth_dir, shard)
    start, stop = plan.shard_range(shard)
    y = read_arrays(path, ["y"])["y"]
    record = {
        "name": path.name,
        "shard": shard,
        "start": start,
        "stop": stop,
        "count": int(len(y)),
        "sha256": sha256_file(path),
        "histogram": np.bincount(y, minlength=len(labels)).astype(int).tolist(),
    }
    atomic_write_json(record_path(synth_dir, shard), record)
    return record


def read_record(synth_dir: Path, shard: int) -> Optional[dict[str, Any]]:
    try:
        return json.loads(record_path(synth_dir, shard).read_text())
    except (OSError, ValueError):
        return None


def check_shard(synth_dir: Path, shard: int, plan: ShardPlan, labels: Sequence[str]) -> Optional[str]:
    """None when shard ``shard`` is good; otherwise what is wrong with it, in a few words."""
    path = shard_path(synth_dir, shard)
    record = read_record(synth_dir, shard)
    if record is None:
        return "no record (the run stopped between the shard's rename and its record)"
    if sha256_file(path) != record.get("sha256"):
        return "sha256 differs from its record (truncated or altered)"
    try:
        attrs = read_attrs(path)
        arrays = read_arrays(path)
    except (OSError, KeyError) as exc:
        return f"unreadable as HDF5 ({exc})"
    start, stop = plan.shard_range(shard)
    if not attrs.get("complete"):
        return "not marked complete"
    if json.loads(attrs.get("labels", "[]")) != list(labels):
        return "made for other labels"
    if not np.array_equal(arrays["index"], np.arange(start, stop)):
        return f"does not hold exactly samples {start}..{stop - 1}"
    if len(arrays["x"]) != stop - start or len(arrays["y"]) != stop - start:
        return "x or y has the wrong length"
    return None


@dataclass(frozen=True)
class ShardState:
    shard: int
    state: str  # complete | partial | missing | bad
    committed: int  # samples on disk for this shard
    planned: int
    problem: Optional[str] = None


def shard_states(synth_dir: Path, plan: ShardPlan, labels: Sequence[str], check: bool = True) -> list[ShardState]:
    """The state of every planned shard; with ``check`` complete shards are verified in full."""
    states = []
    for shard in range(plan.num_shards):
        start, stop = plan.shard_range(shard)
        if shard_path(synth_dir, shard).is_file():
            problem = check_shard(synth_dir, shard, plan, labels) if check else None
            if problem is None:
                states.append(ShardState(shard, "complete", stop - start, stop - start))
            else:
                states.append(ShardState(shard, "bad", 0, stop - start, problem))
            continue
        committed = PartialShard(synth_dir, shard, start, stop).committed() - start
        states.append(ShardState(shard, "partial" if committed else "missing", committed, stop - start))
    return states


def shard_problems(synth_dir: Path, plan: ShardPlan, labels: Sequence[str]) -> list[tuple[str, str]]:
    """``(file name, problem)`` for every planned shard that is not good, missing and partial ones included."""
    problems = []
    for state in shard_states(synth_dir, plan, labels, check=True):
        name = shard_path(synth_dir, state.shard).name
        if state.state == "bad":
            problems.append((name, state.problem or "bad"))
        elif state.state != "complete":
            problems.append((name, f"{state.state} ({state.committed}/{state.planned} samples)"))
    return problems


def read_plan(synth_dir: Path, build: Callable[[dict[str, Any]], PlanT]) -> Optional[tuple[PlanT, list[str]]]:
    """The plan and labels a synthesis folder was made with (``plan.json``, else ``manifest.json``),
    the plan made by ``build`` from its saved summary; None for a folder of shards that neither
    describes (or whose summary ``build`` cannot read)."""
    for name in (PLAN, MANIFEST):
        try:
            saved = json.loads((Path(synth_dir) / name).read_text())
            return build(saved["plan"]), list(saved["labels"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def record_problem(path: Path) -> Optional[str]:
    """What is wrong with shard ``path`` by the record beside it (``shard-K.json``), or None when it
    matches or has no record to check against."""
    try:
        record = json.loads(Path(path).with_suffix(".json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return "its record is unreadable"
    if not isinstance(record, dict) or "sha256" not in record:
        return None  # some other JSON file, not a shard record
    if sha256_file(path) != record["sha256"]:
        return "sha256 differs from its record (truncated or altered)"
    return None


@contextmanager
def _locked(synth_dir: Path) -> Iterator[None]:
    with open(Path(synth_dir) / ".manifest.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def rebuild_manifest(synth_dir: Path, plan: SummarizedPlan, labels: Sequence[str], provenance: dict[str, Any]) -> dict[str, Any]:
    """Write ``manifest.json`` from the records of the shards that exist."""
    synth_dir = Path(synth_dir)
    with _locked(synth_dir):
        shards = []
        for shard in range(plan.num_shards):
            record = read_record(synth_dir, shard)
            if record is not None and shard_path(synth_dir, shard).is_file():
                shards.append(record)
        histogram = np.sum([r["histogram"] for r in shards], axis=0).astype(int).tolist() if shards else []
        manifest = {
            "labels": list(labels),
            "plan": plan.summary(),
            **provenance,
            "planned_shards": plan.num_shards,
            "complete_shards": len(shards),
            "samples": int(sum(r["count"] for r in shards)),
            "histogram": histogram,
            "shards": shards,
        }
        atomic_write_json(synth_dir / MANIFEST, manifest)
    return manifest

"""Per-class score distributions and near-duplicate counts, read back from scored shards.

Near-duplicates come from the unit embeddings the shards store beside each score (``embedding``,
float16): two samples of one class are near-duplicates when the cosine of their embeddings exceeds
``synth.score.duplicate_threshold``, and a class's count is the number of samples that have a
near-duplicate earlier in it (so ``k`` copies of one sample count ``k - 1``). The stored
embeddings make this a pass over the shards with no model to load; the comparison runs in blocks,
so memory stays at one block x one class.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

from gptfl_hpc.errors import UserError
from gptfl_hpc.shards.reader import checked_shard_files

#: Rows of embeddings compared at once when counting near-duplicates.
DUPLICATE_BLOCK = 2048


@dataclass(frozen=True)
class ScoredSamples:
    """Every scored sample of a shard folder, in shard order; samples are read on demand."""

    labels: list[str]
    modality: str
    sample_rate: Optional[int]
    files: list[Path]
    shard: np.ndarray  # which file each sample is in
    row: np.ndarray  # its row in that file
    y: np.ndarray  # index into ``labels``
    score: np.ndarray
    embedding: np.ndarray

    def sample(self, position: int) -> np.ndarray:
        with h5py.File(self.files[int(self.shard[position])], "r", locking=False) as handle:
            return handle["x"][int(self.row[position])]

    def prompt(self, position: int) -> str:
        with h5py.File(self.files[int(self.shard[position])], "r", locking=False) as handle:
            value = handle["prompt"][int(self.row[position])]
        return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class ClassScores:
    label: str
    count: int
    mean: float
    min: float
    p10: float
    median: float
    max: float
    near_duplicates: int


def read_scored(folder: Path) -> ScoredSamples:
    """The scores, embeddings and labels of a synthesis folder's shards; one line when they have no scores."""
    files = checked_shard_files(folder)
    if not files:
        raise UserError(f"{folder} holds no complete shards; run `gptfl synth` first")
    labels: list[str] = []
    shard, row, y, score, embedding = [], [], [], [], []
    modality, rate = "image", None
    for number, path in enumerate(files):
        with h5py.File(path, "r", locking=False) as handle:
            if "score" not in handle or "embedding" not in handle:
                raise UserError(f"shard {path} holds no scores; make the shards with synth.score set to see them")
            names = json.loads(handle.attrs["labels"])
            modality = str(handle.attrs.get("modality", "image"))
            rate = int(handle.attrs["sample_rate"]) if "sample_rate" in handle.attrs else None
            for name in names:
                if name not in labels:
                    labels.append(name)
            mapping = np.array([labels.index(name) for name in names], dtype=np.int64)
            count = len(handle["y"])
            shard.append(np.full(count, number))
            row.append(np.arange(count))
            y.append(mapping[handle["y"][:]])
            score.append(handle["score"][:].astype(np.float32))
            embedding.append(handle["embedding"][:].astype(np.float32))
    return ScoredSamples(labels, modality, rate, files, *map(np.concatenate, (shard, row, y, score, embedding)))


def near_duplicates(embeddings: np.ndarray, threshold: float) -> int:
    """How many rows have an earlier row whose cosine with them exceeds ``threshold``."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    duplicate = np.zeros(len(unit), dtype=bool)
    for start in range(0, len(unit), DUPLICATE_BLOCK):
        block = unit[start : start + DUPLICATE_BLOCK]
        similar = block @ unit[: start + len(block)].T  # against every row up to this block's end
        earlier = np.tril(np.ones_like(similar, dtype=bool), k=start - 1)  # column < row
        duplicate[start : start + len(block)] = ((similar > threshold) & earlier).any(axis=1)
    return int(duplicate.sum())


def class_scores(samples: ScoredSamples, threshold: float) -> list[ClassScores]:
    """The score distribution and near-duplicate count of each class, in label order."""
    rows = []
    for index, label in enumerate(samples.labels):
        members = samples.y == index
        values = samples.score[members].astype(np.float64)
        if not len(values):
            continue
        rows.append(ClassScores(
            label=label, count=int(len(values)), mean=float(values.mean()), min=float(values.min()),
            p10=float(np.percentile(values, 10)), median=float(np.median(values)), max=float(values.max()),
            near_duplicates=near_duplicates(samples.embedding[members], threshold),
        ))
    return rows


def table(rows: list[ClassScores], threshold: float) -> list[str]:
    """The rows as aligned text lines, one per class."""
    width = max([len("class")] + [len(row.label) for row in rows])
    lines = [f"{'class':<{width}}  {'count':>6}  {'mean':>7}  {'min':>7}  {'p10':>7}  {'median':>7}  {'max':>7}  "
             f"near-duplicates (cosine > {threshold:g})"]
    for row in rows:
        lines.append(f"{row.label:<{width}}  {row.count:>6}  {row.mean:>7.4f}  {row.min:>7.4f}  {row.p10:>7.4f}  "
                     f"{row.median:>7.4f}  {row.max:>7.4f}  {row.near_duplicates}")
    return lines


def as_json(rows: list[ClassScores], threshold: float) -> dict:
    return {"duplicate_threshold": threshold, "classes": [asdict(row) for row in rows]}


def extremes(samples: ScoredSamples, per_side: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per class, the positions of its ``per_side`` lowest and highest scores (ties to the earlier sample)."""
    found = {}
    for index in range(len(samples.labels)):
        members = np.flatnonzero(samples.y == index)
        scores = samples.score[members].astype(np.float64)
        lowest = members[np.lexsort((members, scores))][:per_side]
        highest = members[np.lexsort((members, -scores))][:per_side]
        found[index] = (lowest, highest)
    return found

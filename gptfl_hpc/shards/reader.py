"""A dataset over synthesis shards (HDF5), yielding the same samples as the real datasets.

A shard file holds datasets ``x`` (uint8 ``N x H x W x C`` images, or int16/float32 ``N x T``
audio with a ``sample_rate`` file attribute), ``y`` (int64 indices into the shard's label list),
``index``, ``seed``, ``guidance``, ``prompt``; and file attributes ``labels`` (JSON list of names),
``complete`` (bool) and ``modality`` (``image`` / ``speech`` / ``audio``).

``ShardDataset`` reads only attributes and lengths when built. Files are opened lazily in the
process that reads samples -- each DataLoader worker opens its own handles, and a handle
inherited through ``fork`` is never reused (the opening pid is remembered). Reads are one sample
at a time (``x[j]``); ``__getitems__`` merges runs of consecutive indices into one slice read, so
a ``BlockBatchSampler`` (random blocks of consecutive samples) serves batches with a few large
reads instead of many small ones.

Shards may carry more labels than the run (external shards given to pretraining): samples of the
other labels are dropped when the dataset is built (which reads every ``y`` of such shards), and
an index map turns dataset indices into shard positions, so reads stay per sample and runs of
kept neighbours still merge into one slice.

Shards are checked against their records before they are read (``checked_shard_files``, which
hashes every shard): a synthesis folder (one with ``plan.json`` or ``manifest.json``) must hold
every planned shard, complete and matching its recorded sha256, and is refused otherwise -- never
read with shards left out or altered. Elsewhere a shard with a record beside it must match it;
plain complete shards without records are read as they are, incomplete ones skipped.
``ShardDataset`` checks a folder or file it is given; a list of files is read as given (pretraining
checks its sources when it plans, before any rank builds its dataset).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import h5py
import numpy as np
import torch
from torch.utils.data import Sampler

from gptfl_hpc.data.base import SAMPLE_RATE, LabeledDataset, Transform
from gptfl_hpc.data.labels import (
    DROPPED,
    LabelSelection,
    canonical_label,
    label_mapping,
    report_selection,
    unused_labels,
)
from gptfl_hpc.data.waveforms import pcm_to_float, to_mono_rate
from gptfl_hpc.errors import UserError
from gptfl_hpc.layout import RunLayout
from gptfl_hpc.shards.manifest import read_plan, record_problem, shard_path, shard_problems
from gptfl_hpc.shards.ranges import ShardRanges

PathLike = Union[str, Path]


def find_complete_shards(directory: PathLike) -> list[Path]:
    """``directory/*.h5`` in sorted order, keeping only files marked ``complete``."""
    folder = _existing_folder(directory)
    return [path for path in sorted(folder.glob("*.h5")) if _is_complete(path)]


def _existing_folder(directory: PathLike) -> Path:
    folder = Path(directory)
    if not folder.is_dir():
        raise UserError(f"shard directory {folder} does not exist; run the synthesize stage first or fix the path")
    return folder


def checked_shard_files(source: PathLike) -> list[Path]:
    """The shards to read from a folder (or one shard file), each checked against its record; one
    ``UserError`` line naming the first shard that is not good and how to remake it."""
    path = Path(source)
    if path.is_file():
        _refuse_bad_shards(path.parent, [(path.name, record_problem(path))])
        return [path]
    folder = _existing_folder(path)
    saved = read_plan(folder, ShardRanges.from_summary)
    if saved is not None:
        plan, labels = saved
        _refuse_bad_shards(folder, shard_problems(folder, plan, labels))
        return [shard_path(folder, shard) for shard in range(plan.num_shards)]
    _refuse_bad_shards(folder, [(path.name, record_problem(path)) for path in sorted(folder.glob("*.h5"))])
    return find_complete_shards(folder)


def _refuse_bad_shards(folder: Path, checked: Sequence[tuple[str, Optional[str]]]) -> None:
    """One line for the ``(name, problem)`` pairs whose problem is not None, if any."""
    problems = [(name, problem) for name, problem in checked if problem is not None]
    if not problems:
        return
    name, problem = problems[0]
    others = f" (and {len(problems) - 1} more shard(s) not good)" if len(problems) > 1 else ""
    them = "it" if len(problems) == 1 else "them"
    run = RunLayout(folder.parent)
    if run.synth == folder and run.config_file.is_file():  # a run's own synthesis folder
        fix = f"`gptfl synth CONFIG` remakes {them}, `gptfl synth verify {run.root}` lists every bad shard"
    else:
        fix = (f"remake {them} with `gptfl synth CONFIG` of the run that made {them}, "
               f"or leave {them} out of pretrain.shards")
    raise UserError(f"shard {folder / name} is not usable: {problem}{others}; {fix}")


def _is_complete(path: Path) -> bool:
    try:
        with _open(path) as handle:
            return bool(handle.attrs.get("complete", False))
    except OSError:
        return False  # a shard still being written or truncated by a crash: not ours to read


def _open(path: Path, chunk_cache: bool = True) -> h5py.File:
    # File locking fails on many parallel file systems and buys nothing for read-only access.
    if chunk_cache:
        return h5py.File(path, "r", locking=False)
    # Without a chunk cache HDF5 reads just the selected sample of an uncompressed chunk; with
    # one it would read the whole chunk for each random sample (3x slower at 64 samples/chunk).
    return h5py.File(path, "r", locking=False, rdcc_nbytes=0, rdcc_nslots=1)


@dataclass(frozen=True)
class ShardHeader:
    """What a shard's attributes and shapes say, read once when the dataset is built."""

    path: Path
    length: int
    modality: str
    sample_rate: Optional[int]
    compressed: bool
    labels: tuple[str, ...]  # the shard's own label list
    mapping: np.ndarray  # shard class index -> run class index, or DROPPED


def _read_header(path: Path, run_labels: Sequence[str]) -> ShardHeader:
    if not path.is_file():
        raise UserError(f"shard {path} does not exist; list existing shards or pass their directory")
    try:
        with _open(path) as handle:
            if not bool(handle.attrs.get("complete", False)):
                raise UserError(f"shard {path} is not complete; finish the synthesize stage or leave it out")
            if "x" not in handle or "y" not in handle or "labels" not in handle.attrs:
                raise UserError(f"shard {path} lacks x, y or the labels attribute; it is not a synthesis shard")
            x, y = handle["x"], handle["y"]
            if len(x) != len(y):
                raise UserError(f"shard {path} has {len(x)} x but {len(y)} y; regenerate it")
            rate = handle.attrs.get("sample_rate")
            labels = json.loads(_text(handle.attrs["labels"]))
            return ShardHeader(
                path=path,
                length=len(x),
                modality=_text(handle.attrs.get("modality", "image")),
                sample_rate=None if rate is None else int(rate),
                compressed=x.id.get_create_plist().get_nfilters() > 0,
                labels=tuple(labels),
                mapping=label_mapping(labels, run_labels, f"shard {path}"),
            )
    except OSError as exc:
        raise UserError(f"shard {path} cannot be read as HDF5 ({exc}); regenerate it") from None


class ShardDataset(LabeledDataset):
    """The samples of the given shards whose labels the run uses, class indices matched by name."""

    def __init__(
        self,
        source: Union[PathLike, Sequence[PathLike]],
        run_labels: Sequence[str],
        transform: Optional[Transform] = None,
        sample_rate: int = SAMPLE_RATE,
    ):
        if isinstance(source, (str, Path)) and Path(source).exists():
            paths = checked_shard_files(source)
        elif isinstance(source, (str, Path)):
            paths = [Path(source)]  # _read_header refuses it in one line
        else:  # a list of files, read as given (a TrainingPlan's, checked by plan_training)
            paths = [Path(p) for p in source]
        if not paths:
            raise UserError(f"no complete shards in {source}; run the synthesize stage first")
        self.paths = paths
        self.source = _describe_shards(paths)
        self.labels = list(run_labels)
        self.transform = transform
        self.sample_rate = sample_rate
        self.headers = [_read_header(path, self.labels) for path in paths]
        modalities = sorted({h.modality for h in self.headers})
        if len(modalities) != 1:
            raise UserError(f"shards mix modalities {modalities}; use shards of one synthesize run")
        self.modality = modalities[0]
        self._ends = np.cumsum([h.length for h in self.headers])
        self._targets: Optional[np.ndarray] = None
        self._positions: Optional[np.ndarray] = None  # shard-wide position of each kept sample
        if any((header.mapping == DROPPED).any() for header in self.headers):
            self._drop_other_labels()
        self._pid: Optional[int] = None
        self._x: list[h5py.Dataset] = []
        self._y: list[np.ndarray] = []
        self._files: list[h5py.File] = []

    # ------------------------------------------------------------------ interface

    def __len__(self) -> int:
        return int(self._ends[-1]) if self._positions is None else len(self._positions)

    @property
    def targets(self) -> np.ndarray:  # type: ignore[override]
        """Class indices of all (kept) samples; reads every ``y`` once, on first use."""
        if self._targets is None:
            self._targets = self._read_targets()
        return self._targets

    @property
    def has_scores(self) -> bool:
        """Whether every shard holds a ``score`` per sample (shards made with ``synth.score``)."""
        return self.unscored_shard() is None

    def unscored_shard(self) -> Optional[Path]:
        """The first shard without a ``score`` dataset, or None."""
        for header in self.headers:
            with _open(header.path) as handle:
                if "score" not in handle:
                    return header.path
        return None

    def read_scores(self) -> np.ndarray:
        """The ``score`` of every (kept) sample, aligned with ``targets``; float32."""
        parts = []
        for header in self.headers:
            with _open(header.path) as handle:
                if "score" not in handle:
                    raise UserError(f"shard {header.path} holds no scores; make it with synth.score set")
                parts.append(handle["score"][:].astype(np.float32))
        every = np.concatenate(parts)
        return every if self._positions is None else every[self._positions]

    def keep_only(self, indices: np.ndarray) -> None:
        """Keep only the samples at ``indices`` (ascending dataset indices), in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        targets = self.targets
        base = np.arange(int(self._ends[-1])) if self._positions is None else self._positions
        self._positions = base[indices]
        self._targets = targets[indices]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        shard, local = self._locate(index)
        self._ensure_open()
        return self._sample(self._x[shard][local], int(self._y[shard][local]), shard)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, int]]:
        """Samples for ``indices``; each run of consecutive indices in one shard is one slice read."""
        self._ensure_open()
        samples: list[tuple[Any, int]] = []
        for shard, start, stop in self._runs(indices):
            if stop - start == 1:
                block = self._x[shard][start][None]
            else:
                block = self._x[shard][start:stop]
            labels = self._y[shard][start:stop]
            samples.extend(self._sample(x, int(y), shard) for x, y in zip(block, labels))
        return samples

    # ------------------------------------------------------------------ internals

    def _read_targets(self) -> np.ndarray:
        """Run class index (or ``DROPPED``) of every sample of every shard."""
        parts = []
        for header in self.headers:
            with _open(header.path) as handle:
                parts.append(header.mapping[handle["y"][:].astype(np.int64)])
        return np.concatenate(parts)

    def _drop_other_labels(self) -> None:
        every = self._read_targets()
        self._positions = np.flatnonzero(every != DROPPED)
        self._targets = every[self._positions]
        other = {
            canonical_label(name) for header in self.headers for name in unused_labels(header.labels, self.labels)
        }
        self.selection = LabelSelection(
            self.source,
            kept=len(self._positions),
            dropped=len(every) - len(self._positions),
            run_labels=len(self.labels),
            other_labels=len(other),
        )
        report_selection(self.selection)

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        position = index if self._positions is None else int(self._positions[index])
        shard = int(np.searchsorted(self._ends, position, side="right"))
        return shard, position - (int(self._ends[shard - 1]) if shard else 0)

    def _runs(self, indices: Sequence[int]) -> Iterator[tuple[int, int, int]]:
        """Maximal ``(shard, start, stop)`` runs of consecutive shard positions, in the given order."""
        run: Optional[list[int]] = None
        for index in indices:
            shard, local = self._locate(int(index))
            if run is not None and shard == run[0] and local == run[2]:
                run[2] += 1
                continue
            if run is not None:
                yield run[0], run[1], run[2]
            run = [shard, local, local + 1]
        if run is not None:
            yield run[0], run[1], run[2]

    def _sample(self, x: np.ndarray, y: int, shard: int) -> tuple[Any, int]:
        if self.modality != "image":
            rate = self.headers[shard].sample_rate or self.sample_rate
            x = to_mono_rate(pcm_to_float(x), rate, self.sample_rate)
        if self.transform is not None:
            x = self.transform(x)
        return x, y

    def _ensure_open(self) -> None:
        if self._pid == os.getpid():
            return
        # A new process (a DataLoader worker, or a fork): handles from the parent are not ours.
        self._files = [_open(h.path, chunk_cache=h.compressed) for h in self.headers]
        self._x = [handle["x"] for handle in self._files]
        self._y = [h.mapping[handle["y"][:].astype(np.int64)] for h, handle in zip(self.headers, self._files)]
        self._pid = os.getpid()

    def close(self) -> None:
        if self._pid == os.getpid():
            for handle in self._files:
                handle.close()
        self._files, self._x, self._y, self._pid = [], [], [], None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_files=[], _x=[], _y=[], _pid=None)
        return state


class BlockBatchSampler(Sampler[list[int]]):
    """Batches made of random blocks of ``block_size`` consecutive indices.

    Each epoch shuffles the block order (seeded by ``seed`` and ``set_epoch``); a batch is the next
    ``batch_size // block_size`` blocks. With shards whose samples are in plan order (labels drawn
    per sample), a batch still mixes classes, while reads are slices instead of single samples.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        block_size: int = 32,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ):
        if batch_size < 1 or block_size < 1:
            raise ValueError("batch_size and block_size must be at least 1")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.block_size = min(block_size, batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        starts = np.arange(0, self.num_samples, self.block_size)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            starts = starts[torch.randperm(len(starts), generator=generator).numpy()]
        batch: list[int] = []
        for start in starts:
            batch.extend(range(int(start), min(int(start) + self.block_size, self.num_samples)))
            if len(batch) >= self.batch_size:
                yield batch[: self.batch_size]
                batch = batch[self.batch_size :]
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)


def _describe_shards(paths: Sequence[Path]) -> str:
    """``"the shards in /scratch/synth"``: how messages name a set of shard files."""
    folders = list(dict.fromkeys(str(path.parent) for path in paths))
    return f"the shards in {', '.join(folders)}"


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)

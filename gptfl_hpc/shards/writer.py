"""Writing one shard: committed blocks while it grows, one HDF5 file when it is complete.

A shard in progress lives in ``RUN/synth/.partial/shard-KKKKK/`` as block files
``START-STOP.npz``, each written atomically (temp file, fsync, rename). The committed count is the
end of the last block in an unbroken run from the shard's start, so a kill at any moment -- even
mid-write -- loses at most the uncommitted samples and never corrupts the committed ones. (An HDF5
file being appended to is not crash-safe: metadata cached by the library can be half on disk.)

When the last block is committed the blocks are assembled into ``shard-KKKKK.h5`` under a temporary
name, fsynced and renamed into ``RUN/synth/``; then the block folder is removed. The HDF5 file has no
timestamps, so the same samples give the same bytes. The file is built in memory and written in one
piece: HDF5 never meets a full disk (a file it cannot flush stays open in the library and crashes the
interpreter at exit); the write itself fails cleanly with ``DiskFull``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from gptfl_hpc.durable import atomic_path, atomic_write_bytes

FIELDS = ("x", "y", "index", "seed", "guidance", "prompt", "speaker", "score", "embedding")
_BLOCK = re.compile(r"^(\d{9})-(\d{9})\.npz$")
_CHUNK_BYTES = 1 << 20  # about 1 MiB of samples per HDF5 chunk


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}"


class PartialShard:
    """The committed blocks of shard ``shard`` covering ``[start, stop)``."""

    def __init__(self, synth_dir: Path, shard: int, start: int, stop: int):
        self.folder = Path(synth_dir) / ".partial" / shard_name(shard)
        self.start, self.stop = start, stop

    def blocks(self) -> list[tuple[int, int, Path]]:
        """Committed ``(start, stop, path)`` in order, cut at the first gap."""
        if not self.folder.is_dir():
            return []
        found = sorted(
            (int(m.group(1)), int(m.group(2)), path)
            for path in self.folder.iterdir()
            if (m := _BLOCK.match(path.name))
        )
        chain, end = [], self.start
        for first, last, path in found:
            if first != end:
                break
            chain.append((first, last, path))
            end = last
        return chain

    def committed(self) -> int:
        """Index of the first sample not yet committed (``start`` when nothing is)."""
        blocks = self.blocks()
        return blocks[-1][1] if blocks else self.start

    def commit(self, arrays: dict[str, np.ndarray]) -> int:
        """Append one block (consecutive samples starting at ``committed()``); returns the new end."""
        first = self.committed()
        count = len(arrays["index"])
        if count == 0 or int(arrays["index"][0]) != first:
            raise ValueError(f"block must start at sample {first}, got {arrays['index'][:1]}")
        last = first + count
        self.folder.mkdir(parents=True, exist_ok=True)
        planned = sum(values.nbytes for values in arrays.values())
        with atomic_path(self.folder / f"{first:09d}-{last:09d}.npz", planned_bytes=planned) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
        return last

    def load(self) -> dict[str, np.ndarray]:
        """All committed samples, concatenated per field."""
        parts: dict[str, list[np.ndarray]] = {}
        for _, _, path in self.blocks():
            with np.load(path, allow_pickle=False) as block:
                for key in block.files:
                    parts.setdefault(key, []).append(block[key])
        return {key: np.concatenate(values) for key, values in parts.items()}

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def write_shard(path: Path, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """Atomically write a complete shard: datasets from ``arrays``, ``attrs`` plus ``complete``."""
    x = arrays["x"]
    sample_bytes = max(1, int(np.prod(x.shape[1:])) * x.dtype.itemsize)
    chunk = max(1, min(len(x), _CHUNK_BYTES // sample_bytes))
    # The core driver without a backing store keeps the file in memory; its image is the bytes
    # HDF5 would have written to disk.
    with h5py.File(path.name, "w", driver="core", backing_store=False, locking=False) as handle:
        handle.create_dataset("x", data=x, chunks=(chunk, *x.shape[1:]), track_times=False)
        for key in FIELDS[1:]:
            if key not in arrays:
                continue
            values = arrays[key]
            if key == "prompt":
                values = np.array([str(text) for text in values], dtype=h5py.string_dtype("utf-8"))
            handle.create_dataset(key, data=values, track_times=False)
        for key, value in attrs.items():
            handle.attrs[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
        handle.attrs["complete"] = True
        handle.flush()
        image = handle.id.get_file_image()
    atomic_write_bytes(path, image)


def read_arrays(path: Path, keys: Sequence[str] = FIELDS) -> dict[str, np.ndarray]:
    """The datasets ``keys`` (every one by default) of a shard file, those it holds (prompts as str)."""
    with h5py.File(path, "r", locking=False) as handle:
        arrays = {key: handle[key][:] for key in keys if key in handle}
    if "prompt" in arrays:
        arrays["prompt"] = np.array([p.decode() if isinstance(p, bytes) else p for p in arrays["prompt"]])
    return arrays


def read_attrs(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r", locking=False) as handle:
        return {key: _plain(value) for key, value in handle.attrs.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value

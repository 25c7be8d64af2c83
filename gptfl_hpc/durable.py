"""Durable files: atomic writes, a ``latest`` pointer, RNG capture, safe checkpoint loading.

Every file a stage leaves behind is either absent or whole: it is written under a temporary name
in the same directory, fsynced, and renamed over the target (rename is atomic within a file
system). A killed process therefore never leaves a half-written checkpoint that a resume would read.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Union

import numpy as np

if TYPE_CHECKING:  # torch is imported where needed: label and config commands start fast
    import torch

PathLike = Union[str, Path]
LATEST = "latest"
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import: os.umask can only be read by setting it


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes 0600 files; shards and reports are shared, so use the usual umask'd mode.
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    # The rename itself lives in the directory entry; sync it so it survives a power loss.
    _fsync(directory)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_directory(directory: PathLike, build: Callable[[Path], None]) -> bool:
    """Fill ``directory`` with ``build(staging)`` in a hidden sibling, then rename it into place.

    Readers see nothing or the whole folder. Of concurrent builders (array tasks starting together)
    the first rename wins and the others drop their copies; returns whether this call published it.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not mkdtemp (0700): the published folder gets the usual umask'd mode.
    staging = directory.parent / f".{directory.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    staging.mkdir()
    try:
        build(staging)
        for path in sorted(staging.rglob("*")):
            _fsync(path)
        _fsync(staging)
        try:
            os.rename(staging, directory)
        except OSError:
            if not directory.is_dir():
                raise
            return False
        _fsync_dir(directory.parent)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def atomic_symlink(link: PathLike, target: PathLike) -> None:
    """Make ``link`` a symbolic link to ``target`` (kept as given: relative targets stay relative),
    replacing an older link in one rename, so a reader never finds the name missing."""
    link = Path(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.parent / f".{link.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    finally:
        if tmp.is_symlink():
            tmp.unlink()
    _fsync_dir(link.parent)


def atomic_save(path: PathLike, save: Callable[[Path], None]) -> None:
    """Atomic write for libraries that write to a path themselves (``torch.save``, safetensors)."""
    with atomic_path(path) as tmp:
        save(tmp)


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: PathLike, state: dict[str, Any]) -> None:
    """``torch.save`` atomically; ``state`` must hold only tensors and plain Python values."""
    import torch

    atomic_save(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Load a checkpoint without unpickling arbitrary objects."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def save_tensors(path: PathLike, tensors: dict[str, "torch.Tensor"], metadata: Optional[dict[str, str]] = None) -> None:
    from safetensors.torch import save_file

    contiguous = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    atomic_save(path, lambda tmp: save_file(contiguous, str(tmp), metadata=metadata))


def load_tensors(path: PathLike) -> dict[str, "torch.Tensor"]:
    from safetensors.torch import load_file

    return load_file(str(path))


def write_latest(directory: PathLike, name: str) -> None:
    """Point ``directory/latest`` at ``name`` (written after the checkpoint itself is durable)."""
    atomic_write_text(Path(directory) / LATEST, name + "\n")


def read_latest(directory: PathLike) -> Optional[Path]:
    """The checkpoint ``latest`` points at, or None when there is none yet."""
    pointer = Path(directory) / LATEST
    if not pointer.is_file():
        return None
    target = Path(directory) / pointer.read_text().strip()
    return target if target.exists() else None


# --------------------------------------------------------------------------- RNG state


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy (legacy global) and torch RNG states, as values ``weights_only`` can load."""
    import torch

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    import torch

    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

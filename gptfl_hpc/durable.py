"""Durable files: atomic writes, a ``latest`` pointer, RNG capture, safe checkpoint loading.

Every file a stage leaves behind is either absent or whole: it is written under a temporary name
in the same directory, fsynced, and renamed over the target (rename is atomic within a file
system). A killed process therefore never leaves a half-written checkpoint that a resume would read.

A file damaged later (a full disk, a bad copy, a truncation) is caught by the SHA-256 checksums
written with every checkpoint: a resume takes the newest checkpoint that matches them, moves the
damaged ones into ``damaged/`` with one warning line each, and never deletes them.

A write the disk refuses (``ENOSPC``, ``EDQUOT``) removes its partial copy and raises ``DiskFull``:
one line naming the file and about how much more space it needs. Libraries that hide the errno
(``torch.save`` reports a short write as a ``RuntimeError``) are recognised by a probe: after a
failed write, one more MiB is written beside the partial copy; a refusal there means the disk is full.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import random
import re
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Union

import numpy as np

from gptfl_hpc.errors import DiskFull, UserError, refused_for_space

if TYPE_CHECKING:  # torch is imported where needed: label and config commands start fast
    import torch

PathLike = Union[str, Path]
LATEST = "latest"
#: Folder beside the checkpoints that holds each one's ``NAME.sha256``.
CHECKSUMS = "checksums"
#: Where a resume moves damaged checkpoints, beside the good ones.
DAMAGED = "damaged"
#: What ``torch.load`` raises on a damaged file (a truncated zip, a cut pickle, an unsafe object).
UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError)
_PROBE_BYTES = 1 << 20

log = logging.getLogger(__name__)
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import: os.umask can only be read by setting it


@contextmanager
def atomic_path(path: PathLike, planned_bytes: Optional[int] = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    On a full disk the temporary copy is removed and ``DiskFull`` raised; ``planned_bytes`` (the
    size the file will have, when known) makes its estimate of the space needed.
    """
    path = Path(path)
    tmp: Optional[Path] = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(tmp_name)
        # mkstemp makes 0600 files; shards and reports are shared, so use the usual umask'd mode.
        os.fchmod(fd, 0o666 & ~_UMASK)
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except Exception as error:
        full = _disk_full(error, path, tmp, planned_bytes)
        if full is None:
            raise
        raise full from error
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _disk_full(error: Exception, path: Path, partial: Optional[Path], planned_bytes: Optional[int]) -> Optional[DiskFull]:
    """``DiskFull`` for ``path`` when ``error`` came from a full disk, else None. The partial copy
    (a file or a staging folder) is removed first, so the free space counts it; ``planned_bytes``
    defaults to its size."""
    if not _refused_for_space(error, path.parent):
        return None
    written = 0
    if partial is not None and partial.is_dir():
        written = sum(file.stat().st_size for file in partial.rglob("*") if file.is_file())
        shutil.rmtree(partial, ignore_errors=True)
    elif partial is not None and partial.exists():
        written = partial.stat().st_size
        # Truncated, not only unlinked: the failed writer may still hold it open (the traceback
        # keeps its frame alive), and an open file keeps its blocks.
        os.truncate(partial, 0)
        partial.unlink(missing_ok=True)
    planned = planned_bytes if planned_bytes is not None else written
    return DiskFull(path, planned - free_bytes(path.parent))


def _refused_for_space(error: Exception, directory: Path) -> bool:
    if isinstance(error, UserError):
        return False
    return refused_for_space(error) or refuses_more(directory)


def refuses_more(directory: Path) -> bool:
    """Whether the file system under ``directory`` refuses one more MiB for lack of space or quota
    (checked after a failed write, while its partial copy still takes its space)."""
    try:
        with tempfile.TemporaryFile(dir=_existing(directory)) as probe:
            probe.write(bytes(_PROBE_BYTES))
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        return refused_for_space(error)
    return False


def free_bytes(directory: PathLike) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``directory``."""
    stats = os.statvfs(_existing(Path(directory)))
    return stats.f_bavail * stats.f_frsize


def _existing(directory: Path) -> Path:
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return directory


def payload_bytes(obj: Any) -> int:
    """About the bytes ``torch.save`` or ``np.savez`` writes for ``obj``: its tensors and arrays."""
    if isinstance(obj, dict):
        return sum(payload_bytes(key) + payload_bytes(value) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(item) for item in obj)
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (str, bytes)):
        return len(obj)
    if hasattr(obj, "untyped_storage"):  # a torch.Tensor: torch.save writes its whole storage
        return obj.untyped_storage().nbytes()
    return 8


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
    try:
        staging.mkdir()
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
    except Exception as error:
        full = _disk_full(error, directory, staging, None)
        if full is None:
            raise
        raise full from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_path(path, planned_bytes=len(data)) as tmp:
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


def atomic_save(path: PathLike, save: Callable[[Path], None], planned_bytes: Optional[int] = None) -> None:
    """Atomic write for libraries that write to a path themselves (``torch.save``, safetensors)."""
    with atomic_path(path, planned_bytes) as tmp:
        save(tmp)


def atomic_save_with_checksum(path: PathLike, save: Callable[[Path], None], planned_bytes: Optional[int] = None) -> str:
    """``atomic_save`` that returns the SHA-256 of the bytes written."""
    with atomic_path(path, planned_bytes) as tmp:
        save(tmp)
        return sha256_of(tmp)


# --------------------------------------------------------------------------- checksums


def sha256_of(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_file_of(checkpoint: PathLike) -> Path:
    """``checkpoints/round-000010.pt`` -> ``checkpoints/checksums/round-000010.pt.sha256``: apart
    from the checkpoints, so a checkpoint folder holds only what DeepSpeed wrote."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent / CHECKSUMS / f"{checkpoint.name}.sha256"


def write_checksums(checkpoint: PathLike, digests: dict[PathLike, str]) -> None:
    """Record the SHA-256 of a checkpoint's files (paths as given, under the checkpoint's folder) in
    ``sha256sum`` format: ``cd checkpoints && sha256sum -c checksums/NAME.sha256`` checks them by
    hand. Written after the files it lists."""
    root = Path(checkpoint).parent
    named = sorted((str(Path(path).relative_to(root)), digest) for path, digest in digests.items())
    atomic_write_text(checksum_file_of(checkpoint), "".join(f"{digest}  {name}\n" for name, digest in named))


_CHECKSUM_LINE = re.compile(r"^([0-9a-f]{64})  (\S.*)$")


def checkpoint_problem(
    checkpoint: PathLike, check_unrecorded: Optional[Callable[[Path], Optional[str]]] = None
) -> Optional[str]:
    """What is wrong with a checkpoint (file or folder), or None when it is usable: its files are
    checked against its checksum file. One from before checksums has none; it is checked by
    ``check_unrecorded`` (default: loading it with ``load_checkpoint``)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        return "missing"
    checksums = checksum_file_of(checkpoint)
    if not checksums.is_file():
        check = check_unrecorded or (lambda path: load_problem(path, load_checkpoint))
        return check(checkpoint)
    try:
        entries = [_CHECKSUM_LINE.match(line) for line in checksums.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        return f"{checksums.name} is unreadable ({error})"
    if not entries or not all(entries):
        return f"{checksums.name} is malformed"
    for entry in entries:
        digest, name = entry.groups()
        path = checkpoint.parent / name
        if not path.is_file():
            return f"{name} is missing"
        if sha256_of(path) != digest:
            return f"{name} does not match its checksum"
    return None


def load_problem(path: PathLike, load: Callable[[Path], Any]) -> Optional[str]:
    """Check a file that has no checksum by loading it: what ``load`` raised, or None."""
    try:
        load(Path(path))
    except UNREADABLE as error:
        # torch's messages run on for several sentences; the first says what failed.
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0]
        return f"{Path(path).name} is unreadable: {reason}"
    return None


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: PathLike, state: dict[str, Any]) -> None:
    """``torch.save`` atomically, then its checksum file; ``state`` must hold only tensors and plain
    Python values."""
    import torch

    digest = atomic_save_with_checksum(path, lambda tmp: torch.save(state, tmp), payload_bytes(state))
    write_checksums(path, {path: digest})


def remove_checkpoint(path: PathLike) -> None:
    """Delete a checkpoint (file or folder) and its checksum file."""
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    checksum_file_of(path).unlink(missing_ok=True)


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Load a checkpoint without unpickling arbitrary objects."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def save_tensors(path: PathLike, tensors: dict[str, "torch.Tensor"], metadata: Optional[dict[str, str]] = None) -> None:
    from safetensors.torch import save_file

    contiguous = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    atomic_save(path, lambda tmp: save_file(contiguous, str(tmp), metadata=metadata), payload_bytes(contiguous))


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


def commit_checkpoint(checkpoint: PathLike, number_of: Callable[[str], Optional[int]], keep: int) -> bool:
    """Make a just-saved checkpoint the one to resume from once it matches its checksums: point
    ``latest`` at it and remove all but the ``keep`` newest up to it (newer ones are saves a kill
    interrupted). One that does not match is reported and left; ``latest`` and the older ones stay,
    so a resume still has a good one. ``number_of`` reads a step or round from a name."""
    checkpoint = Path(checkpoint)
    problem = checkpoint_problem(checkpoint)
    if problem is not None:
        log.warning("checkpoint %s failed its check right after saving (%s); latest stays where it was",
                    checkpoint, problem)
        return False
    directory = checkpoint.parent
    write_latest(directory, checkpoint.name)
    newest = number_of(checkpoint.name)
    saved = sorted((n, path) for path in directory.iterdir() if (n := number_of(path.name)) is not None and n <= newest)
    for _, path in saved[:-keep]:
        remove_checkpoint(path)
    return True


def newest_intact_checkpoint(
    directory: PathLike, number_of: Callable[[str], Optional[int]], problem_of: Callable[[Path], Optional[str]]
) -> Optional[Path]:
    """The checkpoint to resume from: the newest, up to the one ``latest`` names, that
    ``problem_of`` finds nothing wrong with; None when there is none.

    Each damaged one is moved into ``directory/damaged/`` (never deleted: it is the user's data)
    and reported in one warning line; ``latest`` then names the one chosen, or is removed.
    ``number_of`` reads a checkpoint's step or round from its name (None: not a checkpoint).
    """
    directory = Path(directory)
    damaged: list[tuple[Path, str]] = []
    chosen = None
    for candidate in _checkpoints_up_to_latest(directory, number_of):
        problem = problem_of(candidate)
        if problem is None:
            chosen = candidate
            break
        damaged.append((candidate, problem))
    if not damaged:
        return chosen
    outcome = f"resuming from {chosen.name}" if chosen else "no intact checkpoint is left: starting over"
    for path, problem in damaged:
        moved = set_aside(path)
        kept = f"; kept as {moved}" if moved else ""
        log.warning("checkpoint %s is damaged (%s)%s; %s", path, problem, kept, outcome)
    if chosen is not None:
        write_latest(directory, chosen.name)
    else:
        (directory / LATEST).unlink(missing_ok=True)
    return chosen


def _checkpoints_up_to_latest(directory: Path, number_of: Callable[[str], Optional[int]]) -> list[Path]:
    """Newest first: the one ``latest`` names (even if it is missing) and the older ones. Newer
    ones are saves a kill interrupted: ``latest`` never named them."""
    pointer = directory / LATEST
    if not pointer.is_file():
        return []
    named = directory / pointer.read_text().strip()
    newest = number_of(named.name)
    if newest is None:  # not a checkpoint's name: weigh every checkpoint there is
        named, newest = None, float("inf")
    older = {n: path for path in directory.iterdir() if (n := number_of(path.name)) is not None and n < newest}
    return [*([named] if named else []), *(older[n] for n in sorted(older, reverse=True))]


def set_aside(path: PathLike) -> Optional[Path]:
    """Move a damaged checkpoint (file or folder, with its checksum file) into ``damaged/`` beside
    it, under a fresh name if that one is taken; returns where it went (None: it was missing)."""
    path = Path(path)
    if not path.exists():
        return None
    folder = path.parent / DAMAGED
    target = folder / path.name
    copy = 1
    while target.exists() or checksum_file_of(target).exists():
        copy += 1
        target = folder / f"{path.name}.{copy}"
    checksum_file_of(target).parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    if checksum_file_of(path).exists():
        os.replace(checksum_file_of(path), checksum_file_of(target))
    _fsync_dir(folder)
    _fsync_dir(path.parent)
    return target


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

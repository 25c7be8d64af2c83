"""Decode a list of image or audio files once, into an array every later open maps.

A reader that finds its samples as files (``folder``, ``food101``) or as encoded bytes (``hf``)
describes them as a ``MediaSource`` and gets back a ``DecodedDataset``. The first open decodes
every sample (images: RGB, resized and centre-cropped, uint8 ``N x S x S x 3``; audio: 16 kHz
mono, padded or trimmed, int16 ``N x T``) into ``CACHE/<fingerprint>/samples.npy``; later opens,
and every rank and DataLoader worker, memory-map that file and decode nothing.

The fingerprint covers the source (file names, sizes and modification times, or the saved
dataset's own fingerprint) and how samples are decoded (size, seconds), so a changed, added,
removed or touched file makes a new cache. The folder is built under a lock
(``CACHE/locks/<fingerprint>.lock``) and published by one rename (``durable.atomic_directory``):
ranks that open together build it once, and a killed build leaves nothing that looks finished.

An unreadable file is one ``UserError`` naming it, or, with ``data.skip_unreadable``, left out
and counted in one warning line.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mmap
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Sequence, Union

import numpy as np

from gptfl_hpc.data.base import SAMPLE_RATE, LabeledDataset
from gptfl_hpc.errors import UserError

log = logging.getLogger(__name__)

CACHE_FORMAT = "gptfl-decoded/1"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
AUDIO_SUFFIXES = (".wav", ".flac")

Item = Union[Path, bytes]


def media_kind(path: Union[str, Path]) -> Optional[str]:
    """``image`` or ``audio`` by file suffix; None for any other file."""
    suffix = Path(path).suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "audio" if suffix in AUDIO_SUFFIXES else None


# --------------------------------------------------------------------------- how samples decode


@dataclass(frozen=True)
class ImageDecoding:
    """Any image mode -> RGB, shorter side resized to ``size``, centre-cropped: uint8 ``S x S x 3``."""

    size: int
    modality: str = "image"

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.size, self.size, 3)

    dtype = np.dtype(np.uint8)

    def settings(self) -> dict[str, Any]:
        return {"kind": "image", "size": self.size}

    def decode(self, item: Union[Path, BinaryIO]) -> np.ndarray:
        from PIL import Image

        from gptfl_hpc.data.images import resize_square

        with Image.open(item) as image:
            # A JPEG decoder scales by 1/2..1/8 while decoding: far faster for photos much larger than size.
            image.draft("RGB", (self.size, self.size))
            rgb = _as_rgb(image)
            if rgb.size == (self.size, self.size):
                return np.asarray(rgb, dtype=np.uint8)
            return resize_square(rgb, self.size)

    def check(self, item: Union[Path, BinaryIO]) -> None:
        from PIL import Image

        with Image.open(item) as image:
            # Reads the file without decoding pixels; finds a truncated PNG by its chunk checksums
            # (other formats' bodies are checked when they are decoded).
            image.verify()

    def as_sample(self, stored: np.ndarray) -> np.ndarray:
        return stored


def _as_rgb(image: Any) -> Any:
    """Any PIL mode as RGB; 16-bit greyscale (PNG, TIFF) scaled to 8 bits instead of clipped."""
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode == "I":
        levels = np.asarray(image, dtype=np.float64) / 65535.0 * 255.0
        return Image.fromarray(np.clip(np.round(levels), 0, 255).astype(np.uint8), "L").convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class AudioDecoding:
    """Any rate and channel count -> 16 kHz mono, zero-padded or trimmed to ``seconds``: int16 ``T``."""

    seconds: float
    modality: str = "audio"

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(round(self.seconds * SAMPLE_RATE)),)

    dtype = np.dtype(np.int16)

    def settings(self) -> dict[str, Any]:
        return {"kind": "audio", "rate": SAMPLE_RATE, "samples": self.shape[0]}

    def decode(self, item: Union[Path, BinaryIO]) -> np.ndarray:
        from gptfl_hpc.data.waveforms import read_wav

        waveform = read_wav(item)
        fixed = np.zeros(self.shape, dtype=np.float32)
        fixed[: min(len(waveform), len(fixed))] = waveform[: len(fixed)]
        return np.round(np.clip(fixed, -1.0, 32767 / 32768) * 32768).astype(np.int16)

    def check(self, item: Union[Path, BinaryIO]) -> None:
        import soundfile

        soundfile.info(item if hasattr(item, "read") else str(item))

    def as_sample(self, stored: np.ndarray) -> np.ndarray:
        return stored.astype(np.float32) / 32768.0


Decoding = Union[ImageDecoding, AudioDecoding]


def decoding_for(kind: str, config: Any) -> Decoding:
    """The decoding of ``image`` or ``audio`` samples under a ``DataConfig``."""
    return ImageDecoding(config.image_size) if kind == "image" else AudioDecoding(config.audio.seconds)


# --------------------------------------------------------------------------- where samples come from


@dataclass
class MediaSource:
    """The encoded samples of one split: files (``paths``) or encoded bytes (``fetch(i)``).

    ``names`` name each sample in messages (a path relative to the data root); ``fingerprint``
    identifies the encoded content (files: names, sizes and modification times)."""

    names: list[str]
    fingerprint: str
    paths: Optional[list[Path]] = None
    fetch: Optional[Callable[[int], Item]] = None

    def __len__(self) -> int:
        return len(self.names)

    def open(self, index: int) -> Union[Path, BinaryIO]:
        item = self.paths[index] if self.paths is not None else self.fetch(index)
        return io.BytesIO(item) if isinstance(item, (bytes, bytearray)) else item

    @classmethod
    def of_files(cls, root: Path, paths: Sequence[Path]) -> "MediaSource":
        paths = list(paths)
        prefix = len(str(root).rstrip("/")) + 1  # str slicing: Path.relative_to is slow for 100,000 files
        names = [str(path)[prefix:].replace(os.sep, "/") for path in paths]
        digest = hashlib.sha256()
        for name, path in zip(names, paths):
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                raise UserError(f"{path} was listed but is gone; restore it or remove it from the data") from None
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return cls(names, digest.hexdigest(), paths=paths)


# --------------------------------------------------------------------------- the dataset


class DecodedDataset(LabeledDataset):
    """Samples of a ``MediaSource`` decoded once (or, opened with ``decode=False``, listed and their
    headers checked: ``load`` then decodes the file it is asked for)."""

    def __init__(
        self,
        source: MediaSource,
        targets: np.ndarray,
        labels: Sequence[str],
        decoding: Decoding,
        *,
        what: str,
        client_ids: Optional[np.ndarray] = None,
        cache: Optional[Path] = None,
        decode: bool = True,
        skip_unreadable: bool = False,
    ):
        self.decoding = decoding
        self.modality = decoding.modality
        self.labels = list(labels)
        self.sources = source
        if decode:
            self.samples, kept, skipped = decode_all(source, decoding, cache, what, skip_unreadable)
        else:
            self.samples = None
            kept, skipped = check_all(source, decoding, what, skip_unreadable)
        if skipped:
            log.warning("left out %d unreadable file%s of %s (first: %s); data.skip_unreadable is on",
                        len(skipped), "s" if len(skipped) > 1 else "", what, skipped[0])
        self.skipped = skipped
        self.kept = kept  # the source index of each sample
        self.targets = np.asarray(targets, dtype=np.int64)[kept]
        if client_ids is not None:
            self.client_ids = np.asarray(client_ids, dtype=str)[kept]

    def load(self, index: int) -> np.ndarray:
        position = int(self.kept[index])
        if self.samples is not None:
            return self.decoding.as_sample(np.asarray(self.samples[position]))
        return self.decoding.as_sample(self.decoding.decode(self.sources.open(position)))


#: Results of ``check_all`` in this process, by cache key: the checks of several stages before
#: submitting (synthesis sizes from the train split, the federation opens it again) read each header once.
_CHECKED: dict[str, tuple[np.ndarray, list[str]]] = {}


def check_all(source: MediaSource, decoding: Decoding, what: str, skip: bool) -> tuple[np.ndarray, list[str]]:
    """Open every sample's header: the unreadable ones refused, or left out with ``skip``."""
    key = cache_key(source, decoding)
    if key in _CHECKED and (skip or not _CHECKED[key][1]):
        return _CHECKED[key]
    bad: list[str] = []
    for index in range(len(source)):
        try:
            decoding.check(source.open(index))
        except Exception as exc:  # any decoder error: the file is not a readable sample
            if not skip:
                raise _unreadable(source.names[index], what, exc) from None
            bad.append(source.names[index])
    _CHECKED[key] = (_kept(source, bad), bad)
    return _CHECKED[key]


def decode_all(
    source: MediaSource, decoding: Decoding, cache: Optional[Path], what: str, skip: bool
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(samples, kept source indices, skipped names): from the cache, after building it if needed."""
    if cache is None:
        samples = shared_array((len(source),) + decoding.shape, decoding.dtype)
        bad = _decode_into(samples, source, decoding, what, skip)
        return samples, _kept(source, bad), bad
    key = cache_key(source, decoding)
    folder = Path(cache) / key
    if not (folder / "info.json").is_file():
        _build_once(folder, source, decoding, what, skip)
    info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
    if info["skipped"] and not skip:  # built by a run that skipped them; this one refuses them
        raise _unreadable(info["skipped"][0], what, None)
    samples = np.load(folder / "samples.npy", mmap_mode="r")
    return samples, np.load(folder / "kept.npy"), list(info["skipped"])


def cache_key(source: MediaSource, decoding: Decoding) -> str:
    document = json.dumps({"format": CACHE_FORMAT, "source": source.fingerprint, "count": len(source),
                           "decoding": decoding.settings()}, sort_keys=True)
    return hashlib.sha256(document.encode()).hexdigest()[:32]


def _build_once(folder: Path, source: MediaSource, decoding: Decoding, what: str, skip: bool) -> None:
    from gptfl_hpc.durable import atomic_directory
    from gptfl_hpc.locks import Lock

    lock = Lock(folder.parent / "locks" / f"{folder.name}.lock", f"the data cache {folder}",
                "it is being built by another rank")
    lock.take(wait=True)  # the other ranks wait here while one builds
    try:
        if (folder / "info.json").is_file():
            return  # built by the rank that held the lock before us

        def build(staging: Path) -> None:
            samples = np.lib.format.open_memmap(staging / "samples.npy", mode="w+", dtype=decoding.dtype,
                                                shape=(len(source),) + decoding.shape)
            bad = _decode_into(samples, source, decoding, what, skip)
            samples.flush()
            del samples
            np.save(staging / "kept.npy", _kept(source, bad))
            info = {"format": CACHE_FORMAT, "what": what, "count": len(source), "skipped": bad,
                    "decoding": decoding.settings()}
            (staging / "info.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")

        started = time.perf_counter()
        atomic_directory(folder, build)
        seconds = time.perf_counter() - started
        log.info("decoded %d files of %s into %s in %.1f s (%.0f files/s)", len(source), what, folder, seconds,
                 len(source) / max(seconds, 1e-9))
    finally:
        lock.release()


#: Samples per task of the decoding processes: large enough that a task's start costs little.
CHUNK = 256


def _decode_into(samples: np.ndarray, source: MediaSource, decoding: Decoding, what: str, skip: bool) -> list[str]:
    """Decode every sample into ``samples`` (rows of skipped ones stay zero); the skipped names.

    ``samples`` must be memory other processes can write: a ``MAP_SHARED`` memory map (the cache
    file) or ``shared_array``. Forked processes decode chunks of it side by side; threads would not
    help, since for small images most of the time is Python under the GIL.
    """
    from tqdm import tqdm

    global _JOB
    chunks = [(start, min(start + CHUNK, len(source))) for start in range(0, len(source), CHUNK)]
    workers = max(1, min(8, len(os.sched_getaffinity(0)), len(chunks)))
    bad: list[str] = []
    _JOB = (samples, source, decoding, what, skip)
    pool = None
    try:
        pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None
        # The bar shows on a terminal only: a job log or a refused command's one line stays clean.
        with tqdm(total=len(source), desc=f"decoding {what}", unit="file", mininterval=2.0, disable=None) as progress:
            results = pool.imap_unordered(_decode_chunk, chunks) if pool is not None else map(_decode_chunk, chunks)
            for count, names in results:
                bad += names
                progress.update(count)
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        _JOB = None
        if pool is not None:
            pool.terminate()
    return sorted(bad, key=source.names.index) if bad else bad


#: What the decoding processes work on: set before they fork, so no sample source is pickled.
_JOB: Optional[tuple] = None


def _decode_chunk(bounds: tuple[int, int]) -> tuple[int, list[str]]:
    samples, source, decoding, what, skip = _JOB
    bad = []
    for index in range(*bounds):
        try:
            samples[index] = decoding.decode(source.open(index))
        except Exception as exc:  # any decoder error: the file is not a readable sample
            if not skip:
                raise _unreadable(source.names[index], what, exc) from None
            bad.append(source.names[index])
    return bounds[1] - bounds[0], bad


def shared_array(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A zeroed array in anonymous shared memory: forked processes write into the parent's copy."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(mmap.mmap(-1, max(size, 1)), dtype=dtype, count=int(np.prod(shape))).reshape(shape)


def _kept(source: MediaSource, bad: list[str]) -> np.ndarray:
    skipped = set(bad)
    return np.array([i for i, name in enumerate(source.names) if name not in skipped], dtype=np.int64)


def _unreadable(name: str, what: str, error: Optional[BaseException]) -> UserError:
    why = f" ({error.__class__.__name__}: {error})" if error is not None else ""
    return UserError(f"{what}: {name} cannot be decoded{why}; replace or remove the file, "
                     "or set data.skip_unreadable=true to leave such files out")

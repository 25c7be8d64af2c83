"""Writers of tiny datasets in their published on-disk formats, and of synthesis shards."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path
from typing import Optional, Sequence

import h5py
import numpy as np
import scipy.io
import soundfile
from PIL import Image

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _pickle(path: Path, obj: dict) -> None:
    # Protocol 2 with bytes keys, like the Python 2 cPickle files that are published.
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _cifar_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, per_batch: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    _pickle(
        folder / "batches.meta",
        {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_cases_per_batch": per_batch, b"num_vis": 3072},
    )
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        _pickle(
            folder / name,
            {
                b"batch_label": name.encode(),
                b"labels": labels,
                b"data": _cifar_rows(rng, per_batch),
                b"filenames": [b"x.png"] * per_batch,
            },
        )
    return root


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    fine = [f"class_{k}" for k in range(99)] + ["aquarium_fish"]
    _pickle(
        folder / "meta",
        {b"fine_label_names": [n.encode() for n in fine], b"coarse_label_names": [f"c{k}".encode() for k in range(20)]},
    )
    for name, n in (("train", n_train), ("test", n_test)):
        fine_labels = [99] + [int(v) for v in rng.integers(0, 100, n - 1)]
        _pickle(
            folder / name,
            {
                b"filenames": [b"x.png"] * n,
                b"batch_label": name.encode(),
                b"fine_labels": fine_labels,
                b"coarse_labels": [0] * n,
                b"data": _cifar_rows(rng, n),
            },
        )
    return root


def write_flowers102(root: Path, classes: Sequence[int] = (1, 2, 102, 1, 2, 102), seed: int = 0) -> Path:
    """Images 1..len(classes) with the given 1-based classes; train/val/test ids interleaved."""
    rng = np.random.default_rng(seed)
    (root / "jpg").mkdir(parents=True)
    for image_id in range(1, len(classes) + 1):
        height, width = int(rng.integers(20, 40)), int(rng.integers(20, 40))
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "jpg" / f"image_{image_id:05d}.jpg")
    ids = np.arange(1, len(classes) + 1)
    scipy.io.savemat(root / "imagelabels.mat", {"labels": np.asarray(classes, dtype=np.uint8)[None, :]})
    scipy.io.savemat(
        root / "setid.mat", {"trnid": ids[0::3][None, :], "valid": ids[1::3][None, :], "tstid": ids[2::3][None, :]}
    )
    return root


def write_wav(path: Path, seconds: float, rate: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    samples = (rng.uniform(-0.5, 0.5, int(seconds * rate)) * 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, rate, subtype="PCM_16")


def write_speech_commands(
    root: Path, files: Sequence[str], validation: Sequence[str] = (), testing: Sequence[str] = ()
) -> Path:
    """``files`` like ``"yes/abcd1234_nohash_0.wav"``; 0.1 s clips at 16 kHz."""
    for k, relative in enumerate(files):
        write_wav(root / relative, 0.1, 16_000, seed=k)
    write_wav(root / "_background_noise_" / "white_noise.wav", 0.1, 16_000)
    (root / "validation_list.txt").write_text("".join(f"{f}\n" for f in validation))
    (root / "testing_list.txt").write_text("".join(f"{f}\n" for f in testing))
    (root / "LICENSE").write_text("CC-BY-4.0\n")
    return root


def write_esc50(root: Path, rows: Sequence[tuple[str, int, int, str]]) -> Path:
    """``rows`` of (filename, fold, target, category); 0.05 s clips at 44.1 kHz."""
    (root / "meta").mkdir(parents=True)
    with open(root / "meta" / "esc50.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for filename, fold, target, category in rows:
            writer.writerow([filename, fold, target, category, "False", filename.split("-")[1], "A"])
    for k, (filename, *_rest) in enumerate(rows):
        write_wav(root / "audio" / filename, 0.05, 44_100, seed=k)
    return root


def write_shard(
    path: Path,
    x: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    modality: str = "image",
    complete: bool = True,
    sample_rate: Optional[int] = None,
    first_index: int = 0,
    chunk: int = 64,
    compression: Optional[str] = None,
) -> Path:
    """A synthesis shard as the synthesize stage writes it (uncompressed, chunked along samples)."""
    n = len(x)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=x, chunks=(min(chunk, max(n, 1)),) + x.shape[1:], compression=compression)
        handle.create_dataset("y", data=np.asarray(y, dtype=np.int64))
        handle.create_dataset("index", data=np.arange(first_index, first_index + n, dtype=np.int64))
        handle.create_dataset("seed", data=np.arange(n, dtype=np.int64) + 1000)
        handle.create_dataset("guidance", data=np.full(n, 3.0, dtype=np.float32))
        prompts = [f"a photo of a {labels[int(k)]}" for k in y]
        handle.create_dataset("prompt", data=prompts, dtype=h5py.string_dtype("utf-8"))
        handle.attrs["labels"] = json.dumps(list(labels))
        handle.attrs["complete"] = complete
        handle.attrs["modality"] = modality
        if sample_rate is not None:
            handle.attrs["sample_rate"] = sample_rate
    return path

"""CIFAR-10 and CIFAR-100 from their published "python version" pickle batches.

Expected layout (the archives unpacked as published)::

    ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    ROOT/cifar-100-python/{train, test, meta}          # fine labels are used

``ROOT`` may also be the batch folder itself. Samples are uint8 ``32 x 32 x 3`` images; label
names come from the meta file with ``_`` turned into spaces (``aquarium fish``). The batches are
unpickled with an allow-list that admits only NumPy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any, Optional

import numpy as np

from gptfl_hpc.data.base import ArrayDataset
from gptfl_hpc.data.registry import OpenOptions, register_dataset
from gptfl_hpc.data.roots import PathLike, malformed, require_file, require_root

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"


@register_dataset("cifar10", "CIFAR-10", "image")
def open_cifar10(config, split: str, options: OpenOptions) -> ArrayDataset:
    return load_cifar10(config.root, split)


@register_dataset("cifar100", "CIFAR-100", "image")
def open_cifar100(config, split: str, options: OpenOptions) -> ArrayDataset:
    return load_cifar100(config.root, split)


def load_cifar10(root: Optional[PathLike], split: str = "train") -> ArrayDataset:
    _check_split(split)
    folder = _batch_folder(root, "CIFAR-10", CIFAR10_FOLDER, "data_batch_1")
    files = [f"data_batch_{k}" for k in range(1, 6)] if split == "train" else ["test_batch"]
    meta = _unpickle(require_file(folder, "batches.meta", "CIFAR-10", CIFAR10_FOLDER), "CIFAR-10")
    labels = _label_names(meta, b"label_names", folder / "batches.meta", "CIFAR-10")
    images, targets = [], []
    for name in files:
        path = require_file(folder, name, "CIFAR-10", CIFAR10_FOLDER)
        batch = _unpickle(path, "CIFAR-10")
        images.append(_images(batch, path, "CIFAR-10"))
        targets.append(_targets(batch, b"labels", path, "CIFAR-10", len(labels)))
    return ArrayDataset(np.concatenate(images), np.concatenate(targets), labels, "image")


def load_cifar100(root: Optional[PathLike], split: str = "train") -> ArrayDataset:
    _check_split(split)
    folder = _batch_folder(root, "CIFAR-100", CIFAR100_FOLDER, "train")
    meta = _unpickle(require_file(folder, "meta", "CIFAR-100", CIFAR100_FOLDER), "CIFAR-100")
    labels = _label_names(meta, b"fine_label_names", folder / "meta", "CIFAR-100")
    path = require_file(folder, split, "CIFAR-100", CIFAR100_FOLDER)
    batch = _unpickle(path, "CIFAR-100")
    images = _images(batch, path, "CIFAR-100")
    targets = _targets(batch, b"fine_labels", path, "CIFAR-100", len(labels))
    return ArrayDataset(images, targets, labels, "image")


def _batch_folder(root: Optional[PathLike], dataset: str, folder: str, probe: str) -> Path:
    base = require_root(root, dataset, folder)
    if (base / probe).is_file() and not (base / folder).is_dir():
        return base  # data.root points at the batch folder itself
    require_file(base, f"{folder}/{probe}", dataset, folder)
    return base / folder


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"unknown split '{split}'; use 'train' or 'test'")


def _label_names(meta: dict, key: bytes, path: Path, dataset: str) -> list[str]:
    if key not in meta:
        raise malformed(path, dataset, f"no {key.decode()}")
    return [_text(name).replace("_", " ") for name in meta[key]]


def _images(batch: dict, path: Path, dataset: str) -> np.ndarray:
    data = batch.get(b"data")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise malformed(path, dataset, "'data' is not an N x 3072 array")
    # Rows are channel-major (1024 R, 1024 G, 1024 B); the shared format is H x W x C.
    return np.ascontiguousarray(data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _targets(batch: dict, key: bytes, path: Path, dataset: str, num_classes: int) -> np.ndarray:
    if key not in batch:
        raise malformed(path, dataset, f"no {key.decode()}")
    targets = np.asarray(batch[key], dtype=np.int64)
    if len(targets) != len(batch[b"data"]) or (len(targets) and not 0 <= targets.min() <= targets.max() < num_classes):
        raise malformed(path, dataset, f"{key.decode()} do not match the data or the label names")
    return targets


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- safe unpickling

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1").
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and NumPy arrays; refuses every other class."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a dataset file")
        # NumPy 2 renamed numpy.core to numpy._core; the published files use the old name.
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = module.replace("numpy.core", "numpy._core", 1)
        return getattr(importlib.import_module(module), name)


def _unpickle(path: Path, dataset: str) -> dict:
    try:
        with open(path, "rb") as handle:
            # The published batches were written by Python 2: byte strings stay bytes.
            content = _ArrayUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise malformed(path, dataset, f"not a CIFAR pickle: {exc}") from None
    if not isinstance(content, dict):
        raise malformed(path, dataset, "not a dict")
    # Files re-pickled by Python 3 carry str keys; use bytes keys throughout.
    return {key.encode() if isinstance(key, str) else key: value for key, value in content.items()}

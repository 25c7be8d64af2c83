"""``data.dataset: hf``: a Hugging Face ``datasets`` dataset saved with ``save_to_disk``.

``data.root`` is the saved folder (a ``Dataset`` or a ``DatasetDict`` with ``train``/``test``
splits, ``validation`` for val); it is read offline with ``load_from_disk``. Columns:

- ``data.columns.input``: the image or audio column (default: the first ``Image`` or ``Audio`` feature);
- ``data.columns.label``: the label column (default: the first ``ClassLabel``); a ``ClassLabel``'s
  names are the label names, a plain column's distinct values otherwise;
- ``data.columns.client``: each sample's client for ``data.partition.kind: natural``.

Without a test split, ``data.test_fraction`` of each class (seeded with ``data.split_seed``) is
held out of the train split. Samples are decoded from the stored bytes (or the path a row names)
with PIL and soundfile -- the column is read with ``decode=False`` -- once, into the run's data
cache, exactly like a ``folder`` dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from gptfl_hpc.data.decoded import DecodedDataset, MediaSource, decoding_for
from gptfl_hpc.data.holdout import stratified_test_mask
from gptfl_hpc.data.registry import OpenOptions, register_dataset
from gptfl_hpc.data.roots import require_root
from gptfl_hpc.errors import UserError

HOLDS = "a dataset saved with save_to_disk (dataset_info.json or dataset_dict.json)"
SPLIT_NAMES = {"train": ("train",), "test": ("test",), "val": ("validation", "val")}
MEDIA_TYPES = {"Image": "image", "Audio": "audio"}


def _saved_features(root: Path) -> Optional[dict[str, Any]]:
    """The features of the saved dataset (of its first split), read from its JSON files."""
    info = root / "dataset_info.json"
    if not info.is_file():
        splits = root / "dataset_dict.json"
        if not splits.is_file():
            return None
        names = json.loads(splits.read_text(encoding="utf-8")).get("splits", [])
        info = root / names[0] / "dataset_info.json" if names else info
        if not info.is_file():
            return None
    return json.loads(info.read_text(encoding="utf-8")).get("features") or {}


def hf_modality(config: Any) -> Optional[str]:
    """``image`` or ``audio``: the kind of the input column, read without loading the dataset."""
    if config.root is None:
        return None
    features = _saved_features(Path(config.root).expanduser())
    if not features:
        return None
    column = config.columns.input or next((n for n, f in features.items() if f.get("_type") in MEDIA_TYPES), None)
    feature = features.get(column) if column else None
    return MEDIA_TYPES.get(feature.get("_type")) if isinstance(feature, dict) else None


@register_dataset("hf", "Hugging Face", hf_modality)
def open_hf(config: Any, split: str, options: OpenOptions) -> DecodedDataset:
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split '{split}'; use one of {sorted(SPLIT_NAMES)}")
    root = require_root(config.root, "the hf dataset", HOLDS)
    dataset, held_out = _split_of(_load(root), split, root)
    input_column, kind = _input_column(dataset, config, root)
    label_column = _label_column(dataset, config, root)
    client_column = _column(dataset, config.columns.client, "client", root) if config.columns.client else None
    labels, targets = _labels(dataset, label_column)
    clients = np.array([str(v) for v in dataset[client_column]], dtype=str) if client_column else None
    chosen = np.arange(len(targets))
    if held_out:
        test = stratified_test_mask(targets, config.test_fraction, config.split_seed)
        chosen = np.flatnonzero(test if split == "test" else ~test)
    targets, clients = targets[chosen], None if clients is None else clients[chosen]
    import datasets

    feature = datasets.Image(decode=False) if kind == "image" else datasets.Audio(decode=False)
    encoded = dataset.select_columns([input_column]).cast_column(input_column, feature)
    source = _source(encoded, input_column, chosen, split, root)
    return DecodedDataset(source, targets, labels, decoding_for(kind, config), what=f"the hf {split} split at {root}",
                          client_ids=clients, cache=options.cache, decode=options.decode,
                          skip_unreadable=config.skip_unreadable)


def _load(root: Path) -> Any:
    try:
        import datasets
    except ImportError:
        raise UserError("data.dataset hf needs the datasets package; install it (pip install datasets)") from None

    try:
        return datasets.load_from_disk(str(root))
    except FileNotFoundError:
        raise UserError(f"{root} is not a saved Hugging Face dataset; point data.root at {HOLDS}") from None


def _split_of(saved: Any, split: str, root: Path) -> tuple[Any, bool]:
    """The ``datasets.Dataset`` of ``split``, and whether its test share must be held out of it."""
    import datasets

    if isinstance(saved, datasets.Dataset):
        if split == "val":
            raise UserError(f"the hf dataset at {root} has no splits, so no val split; save a DatasetDict with 'validation'")
        return saved, True
    name = next((n for n in SPLIT_NAMES[split] if n in saved), None)
    if name is not None:
        return saved[name], False
    if split == "test" and "train" in saved:
        return saved["train"], True
    raise UserError(f"the hf dataset at {root} has no {split} split (it has {', '.join(saved)}); save one "
                    f"named {SPLIT_NAMES[split][0]}")


def _column(dataset: Any, name: str, role: str, root: Path) -> str:
    if name not in dataset.features:
        raise UserError(f"data.columns.{role} '{name}' is not a column of the hf dataset at {root}; use one of "
                        f"{', '.join(dataset.features)}")
    return name


def _input_column(dataset: Any, config: Any, root: Path) -> tuple[str, str]:
    if config.columns.input is not None:
        name = _column(dataset, config.columns.input, "input", root)
    else:
        name = next((n for n, f in dataset.features.items() if type(f).__name__ in MEDIA_TYPES), None)
        if name is None:
            raise UserError(f"the hf dataset at {root} has no Image or Audio column; set data.columns.input")
    kind = MEDIA_TYPES.get(type(dataset.features[name]).__name__)
    if kind is None:
        raise UserError(f"data.columns.input '{name}' of the hf dataset at {root} is not an Image or Audio feature; "
                        "name the column that holds the images or audio")
    return name, kind


def _label_column(dataset: Any, config: Any, root: Path) -> str:
    if config.columns.label is not None:
        return _column(dataset, config.columns.label, "label", root)
    name = next((n for n, f in dataset.features.items() if type(f).__name__ == "ClassLabel"), None)
    if name is None:
        raise UserError(f"the hf dataset at {root} has no ClassLabel column; set data.columns.label")
    return name


def _labels(dataset: Any, column: str) -> tuple[list[str], np.ndarray]:
    values = dataset[column]
    feature = dataset.features[column]
    if type(feature).__name__ == "ClassLabel":
        return list(feature.names), np.asarray(values, dtype=np.int64)
    names = sorted({str(v) for v in values})
    index = {name: k for k, name in enumerate(names)}
    return names, np.array([index[str(v)] for v in values], dtype=np.int64)


def _source(encoded: Any, column: str, chosen: np.ndarray, split: str, root: Path) -> MediaSource:
    files = sorted(f["filename"] for f in encoded.cache_files)
    stats = [(f, Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in files]
    fingerprint = json.dumps([encoded._fingerprint, split, stats, chosen.tolist()])

    def fetch(position: int) -> Any:
        value = encoded[int(chosen[position])][column]
        if value.get("bytes") is not None:
            return value["bytes"]
        return Path(value["path"]) if Path(value["path"]).is_absolute() else root / value["path"]

    names = [f"row {int(i)}" for i in chosen]
    return MediaSource(names, fingerprint, fetch=fetch)

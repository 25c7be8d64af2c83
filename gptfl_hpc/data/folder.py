"""``data.dataset: folder``: images or audio in class folders, as Hugging Face's imagefolder and
audiofolder lay them out.

Layouts (``data.root`` is ROOT)::

    ROOT/<split>/<label>/<file>       # split: train, test (val or validation for val)
    ROOT/<label>/<file>               # no split folders: data.test_fraction of each class, chosen
                                      # with data.split_seed, is the test split

Files are ``.png .jpg .jpeg .webp .bmp`` (any mode: converted to RGB, resized and centre-cropped to
``data.image_size``) or ``.wav .flac`` (mixed to mono, resampled to 16 kHz, padded or trimmed to
``data.audio.seconds``); one kind per root. Hidden folders and folders starting with ``_`` are
skipped. With only ``ROOT/train/``, the test split is held out of it the same way.

A split folder (or ROOT) may hold ``metadata.csv`` or ``metadata.jsonl``: one row per file with
``file_name`` (relative to that folder) and any other columns. The label is the ``label`` column
(or ``data.columns.label``); without such a column, the file's class folder. ``data.columns.client``
names the column of each sample's client (writer, speaker, hospital) for
``data.partition.kind: natural``. Label names are matched to the run's labels by name.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from gptfl_hpc.data.decoded import DecodedDataset, MediaSource, decoding_for, media_kind
from gptfl_hpc.data.holdout import stratified_test_mask
from gptfl_hpc.data.registry import OpenOptions, register_dataset
from gptfl_hpc.data.roots import require_root
from gptfl_hpc.errors import UserError

HOLDS = "<label>/<files> or <split>/<label>/<files>"
SPLIT_FOLDERS = {"train": ("train",), "test": ("test",), "val": ("val", "validation")}
METADATA_FILES = ("metadata.csv", "metadata.jsonl")
DEFAULT_LABEL_COLUMN = "label"


def folder_modality(config: Any) -> Optional[str]:
    """``image`` or ``audio`` from the first media file under ``data.root``; None if there is none yet."""
    if config.root is None:
        return None
    for _, folders, files in os.walk(Path(config.root).expanduser()):
        folders[:] = sorted(f for f in folders if not f.startswith((".", "_")))
        for name in sorted(files):
            kind = media_kind(name)
            if kind is not None:
                return kind
    return None


@register_dataset("folder", "image/audio folder", folder_modality)
def open_folder(config: Any, split: str, options: OpenOptions) -> DecodedDataset:
    root = require_root(config.root, "the folder dataset", HOLDS)
    listing = list_split(root, split, config)
    return listing.dataset(root, config, options, f"the {split} split of {root}")


@dataclass
class Listing:
    """The files of one split, each with its label name and, if asked for, client id."""

    files: list[Path]
    label_names: list[str]
    client_ids: Optional[list[str]]

    def dataset(self, root: Path, config: Any, options: OpenOptions, what: str) -> DecodedDataset:
        kind = single_kind(self.files, root)
        labels = sorted(set(self.label_names))
        index = {name: k for k, name in enumerate(labels)}
        targets = np.array([index[name] for name in self.label_names], dtype=np.int64)
        clients = None if self.client_ids is None else np.array(self.client_ids, dtype=str)
        return DecodedDataset(MediaSource.of_files(root, self.files), targets, labels, decoding_for(kind, config),
                              what=what, client_ids=clients, cache=options.cache, decode=options.decode,
                              skip_unreadable=config.skip_unreadable)

    def subset(self, mask: np.ndarray) -> "Listing":
        chosen = np.flatnonzero(mask)
        return Listing([self.files[i] for i in chosen], [self.label_names[i] for i in chosen],
                       None if self.client_ids is None else [self.client_ids[i] for i in chosen])


def list_split(root: Path, split: str, config: Any) -> Listing:
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"unknown split '{split}'; use one of {sorted(SPLIT_FOLDERS)}")
    train_folder = _split_folder(root, "train")
    if train_folder is None:  # ROOT/<label>/...: hold the test split out
        if split == "val":
            raise UserError(f"the folder dataset at {root} has no split folders, so no val split; add {root}/val/")
        return _held_out(list_folder(root, config), split, config)
    folder = _split_folder(root, split)
    if folder is not None:
        return list_folder(folder, config, needs_clients=split == "train")
    if split == "test":
        return _held_out(list_folder(train_folder, config), split, config)
    raise UserError(f"the folder dataset at {root} has no {split}/ folder; add it beside {train_folder.name}/")


def _split_folder(root: Path, split: str) -> Optional[Path]:
    return next((root / name for name in SPLIT_FOLDERS[split] if (root / name).is_dir()), None)


def _held_out(listing: Listing, split: str, config: Any) -> Listing:
    index = {name: k for k, name in enumerate(sorted(set(listing.label_names)))}
    targets = np.array([index[name] for name in listing.label_names], dtype=np.int64)
    test = stratified_test_mask(targets, config.test_fraction, config.split_seed)
    return listing.subset(test if split == "test" else ~test)


def list_folder(folder: Path, config: Any, needs_clients: bool = True) -> Listing:
    """The files of one split folder, labelled by its metadata file or by their class folders.

    Only the train split is partitioned, so only it must name each sample's client."""
    metadata = next((folder / name for name in METADATA_FILES if (folder / name).is_file()), None)
    if metadata is not None:
        return _from_metadata(folder, metadata, config)
    if config.columns.client is not None and needs_clients:
        raise UserError(f"data.columns.client '{config.columns.client}' needs a metadata.csv or metadata.jsonl "
                        f"in {folder} with that column; add one (file_name, label, {config.columns.client})")
    return _from_class_folders(folder)


def _from_class_folders(folder: Path) -> Listing:
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not classes:
        raise UserError(f"the folder dataset at {folder} holds no class folders; put the files in "
                        f"{folder}/<label>/ (or point data.root at the folder that holds {HOLDS})")
    files: list[Path] = []
    label_names: list[str] = []
    for class_folder in classes:
        found = _media_files(class_folder)
        if not found:
            raise UserError(f"class folder {class_folder} holds no image or audio files; add some or remove the folder")
        files += found
        label_names += [class_folder.name] * len(found)
    return Listing(files, label_names, None)


def _media_files(folder: Path) -> list[Path]:
    """Image and audio files under ``folder``, hidden ones left out, in sorted order."""
    found = []
    for parent, folders, files in os.walk(folder):  # os.walk: several times faster than Path.rglob
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [os.path.join(parent, name) for name in files if not name.startswith(".") and media_kind(name)]
    return [Path(path) for path in sorted(found)]


def _from_metadata(folder: Path, metadata: Path, config: Any) -> Listing:
    rows, columns = _read_rows(metadata)
    if "file_name" not in columns:
        raise UserError(f"{metadata} has no column 'file_name'; name each file (relative to {folder}) in it")
    label_column = config.columns.label or DEFAULT_LABEL_COLUMN
    if label_column not in columns and config.columns.label is not None:
        raise UserError(f"{metadata} has no column '{label_column}' (data.columns.label); use one of "
                        f"{', '.join(columns)}")
    client_column = config.columns.client
    if client_column is not None and client_column not in columns:
        raise UserError(f"{metadata} has no column '{client_column}' (data.columns.client); use one of "
                        f"{', '.join(columns)}")
    files, label_names, clients = [], [], []
    for row in rows:
        relative = str(row["file_name"]).strip()
        path = folder / relative
        if not path.is_file():
            raise UserError(f"{metadata} names {relative}, which is not in {folder}; add the file or remove its row")
        if label_column in columns:
            label = str(row[label_column]).strip()
        elif len(Path(relative).parts) > 1:
            label = Path(relative).parts[0]  # the file's class folder
        else:
            raise UserError(f"{metadata} has no column '{label_column}' and {relative} is in no class folder; "
                            f"add a '{label_column}' column or set data.columns.label")
        files.append(path)
        label_names.append(label)
        if client_column is not None:
            clients.append(str(row[client_column]).strip())
    if not files:
        raise UserError(f"{metadata} lists no files; add a row per file (file_name, {label_column})")
    return Listing(files, label_names, clients if client_column is not None else None)


def _read_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return rows, list(reader.fieldnames or [])
    rows, columns = [], {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"{path} line {number} is not a JSON object; write one object per line") from None
            rows.append(row)
            columns.update(dict.fromkeys(row))
    return rows, list(columns)


def single_kind(files: list[Path], root: Path) -> str:
    """``image`` or ``audio``: the one kind of media the files are; UserError for a mix."""
    first: dict[str, Path] = {}
    for path in files:
        kind = media_kind(path)
        if kind is None:
            raise UserError(f"{path} is neither an image (.png .jpg .jpeg .webp .bmp) nor audio (.wav .flac); "
                            "convert or remove it")
        first.setdefault(kind, path)
    if len(first) > 1:
        raise UserError(f"{root} holds both images ({first['image'].relative_to(root)}) and audio "
                        f"({first['audio'].relative_to(root)}); keep one kind of file per data.root")
    return next(iter(first))

"""ESC-50 (environmental sound classification) from its published layout.

Expected layout::

    ROOT/audio/<filename>.wav        # 5 s clips, 44.1 kHz mono
    ROOT/meta/esc50.csv              # filename, fold, target, category, esc10, src_file, take

Class ``k`` is the csv's ``target`` ``k``, named by its ``category`` with ``_`` turned into
spaces (``chirping birds``). ``split="test"`` is fold ``test_fold`` and ``"train"`` the other
four folds. Samples are float32 waveforms resampled to 16 kHz.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import numpy as np

from gptfl_hpc.data.base import LabeledDataset
from gptfl_hpc.data.registry import OpenOptions, register_dataset
from gptfl_hpc.data.roots import PathLike, malformed, require_file, require_root
from gptfl_hpc.data.waveforms import read_wav

HOLDS = "audio/ and meta/esc50.csv"
COLUMNS = ("filename", "fold", "target", "category")


@register_dataset("esc50", "ESC-50", "audio")
def open_esc50(config, split: str, options: OpenOptions) -> "ESC50":
    return ESC50(config.root, split, config.esc50_test_fold)


class ESC50(LabeledDataset):
    modality = "audio"

    def __init__(self, root: Optional[PathLike], split: str = "train", test_fold: int = 5):
        if split not in ("train", "test"):
            raise ValueError(f"unknown split '{split}'; use 'train' or 'test'")
        self.root = require_root(root, "ESC-50", HOLDS)
        meta = require_file(self.root, "meta/esc50.csv", "ESC-50", HOLDS)
        rows = _read_rows(meta)
        self.labels = _label_names(rows, meta)
        chosen = [r for r in rows if (int(r["fold"]) == test_fold) == (split == "test")]
        self.files = [f"audio/{r['filename']}" for r in chosen]
        self.targets = np.array([int(r["target"]) for r in chosen], dtype=np.int64)
        self.folds = np.array([int(r["fold"]) for r in chosen], dtype=np.int64)
        for relative in self.files:
            require_file(self.root, relative, "ESC-50", HOLDS)

    def load(self, index: int) -> np.ndarray:
        return read_wav(self.root / self.files[index])


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise malformed(path, "ESC-50", f"no column {', '.join(missing)}")
        rows = list(reader)
    for row in rows:
        if not (row["fold"].strip().isdigit() and row["target"].strip().isdigit()):
            raise malformed(path, "ESC-50", f"row for {row['filename']} has a non-integer fold or target")
    return rows


def _label_names(rows: list[dict[str, str]], path: Path) -> list[str]:
    """Names in target order; every target 0..K-1 must name one category."""
    by_target: dict[int, str] = {}
    for row in rows:
        target, name = int(row["target"]), row["category"].strip().replace("_", " ")
        if by_target.setdefault(target, name) != name:
            raise malformed(path, "ESC-50", f"target {target} is both '{by_target[target]}' and '{name}'")
    if sorted(by_target) != list(range(len(by_target))):
        raise malformed(path, "ESC-50", "targets are not 0..K-1")
    return [by_target[k] for k in range(len(by_target))]

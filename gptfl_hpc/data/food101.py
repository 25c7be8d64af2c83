"""Food-101 from its published layout.

Expected layout (``food-101.tar.gz`` unpacked)::

    ROOT/images/<class>/<id>.jpg     # 101 classes, 1,000 photos each
    ROOT/meta/train.txt              # "<class>/<id>" per line: 750 per class
    ROOT/meta/test.txt               # 250 per class

Label names are the class folders with ``_`` turned into spaces (``apple pie``). Photos are
decoded once into the run's data cache like a ``folder`` dataset (RGB, resized and centre-cropped
to ``data.image_size``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gptfl_hpc.data.decoded import DecodedDataset, ImageDecoding, MediaSource
from gptfl_hpc.data.registry import OpenOptions, register_dataset
from gptfl_hpc.data.roots import require_file, require_root

HOLDS = "images/<class>/*.jpg and meta/train.txt, meta/test.txt"


@register_dataset("food101", "Food-101", "image")
def open_food101(config: Any, split: str, options: OpenOptions) -> DecodedDataset:
    if split not in ("train", "test"):
        raise ValueError(f"unknown split '{split}'; use 'train' or 'test'")
    root = require_root(config.root, "Food-101", HOLDS)
    listed = require_file(root, f"meta/{split}.txt", "Food-101", HOLDS)
    entries = [line.strip() for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
    classes = sorted({entry.split("/", 1)[0] for entry in entries})
    index = {name: k for k, name in enumerate(classes)}
    files = [require_file(root, f"images/{entry}.jpg", "Food-101", HOLDS) for entry in entries]
    targets = np.array([index[entry.split("/", 1)[0]] for entry in entries], dtype=np.int64)
    labels = [name.replace("_", " ") for name in classes]
    return DecodedDataset(MediaSource.of_files(root, files), targets, labels, ImageDecoding(config.image_size),
                          what=f"the Food-101 {split} split at {root}", cache=options.cache, decode=options.decode,
                          skip_unreadable=config.skip_unreadable)

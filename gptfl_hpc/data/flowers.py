"""Oxford Flowers102 from its published files.

Expected layout::

    ROOT/jpg/image_00001.jpg ... image_08189.jpg
    ROOT/imagelabels.mat     # "labels": 1 x N, classes 1..102
    ROOT/setid.mat           # "trnid", "valid", "tstid": 1-based image ids per split

The published files carry no class names; the package ships the customary 102 names
(``flowers102_labels.txt``, in class-id order). Images are decoded per sample, resized on the
shorter side and centre-cropped to ``image_size`` (uint8 ``S x S x 3``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

import numpy as np

from gptfl_hpc.data.base import LabeledDataset
from gptfl_hpc.data.images import read_image
from gptfl_hpc.data.registry import OpenOptions, register_dataset
from gptfl_hpc.data.roots import PathLike, malformed, require_file, require_root

HOLDS = "jpg/, imagelabels.mat and setid.mat"
SPLIT_KEYS = {"train": ("trnid",), "val": ("valid",), "test": ("tstid",), "trainval": ("trnid", "valid")}


def flowers102_label_names() -> list[str]:
    text = resources.files("gptfl_hpc.data").joinpath("flowers102_labels.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@register_dataset("flowers102", "Flowers102", "image")
def open_flowers102(config, split: str, options: OpenOptions) -> "Flowers102":
    return Flowers102(config.root, split, config.image_size)


class Flowers102(LabeledDataset):
    modality = "image"

    def __init__(self, root: Optional[PathLike], split: str = "train", image_size: int = 64):
        if split not in SPLIT_KEYS:
            raise ValueError(f"unknown split '{split}'; use one of {sorted(SPLIT_KEYS)}")
        self.root = require_root(root, "Flowers102", HOLDS)
        self.image_size = image_size
        self.labels = flowers102_label_names()
        labels_path = require_file(self.root, "imagelabels.mat", "Flowers102", HOLDS)
        setid_path = require_file(self.root, "setid.mat", "Flowers102", HOLDS)
        class_of_image = _mat_vector(labels_path, "labels")
        if len(class_of_image) and not 1 <= class_of_image.min() <= class_of_image.max() <= len(self.labels):
            raise malformed(labels_path, "Flowers102", f"labels outside 1..{len(self.labels)}")
        ids = np.sort(np.concatenate([_mat_vector(setid_path, key) for key in SPLIT_KEYS[split]]))
        if len(ids) and not 1 <= ids.min() <= ids.max() <= len(class_of_image):
            raise malformed(setid_path, "Flowers102", "image ids outside imagelabels.mat")
        self.image_ids = ids
        self.targets = class_of_image[ids - 1] - 1
        for image_id in ids:
            require_file(self.root, _image_name(image_id), "Flowers102", HOLDS)

    def load(self, index: int) -> np.ndarray:
        return read_image(self.root / _image_name(self.image_ids[index]), self.image_size)


def _image_name(image_id: int) -> str:
    return f"jpg/image_{int(image_id):05d}.jpg"


def _mat_vector(path: Path, key: str) -> np.ndarray:
    import scipy.io  # here: the registry imports this module when the config is read

    try:
        content = scipy.io.loadmat(path)
    except (ValueError, TypeError, OSError, NotImplementedError, scipy.io.matlab.MatReadError) as exc:
        raise malformed(path, "Flowers102", f"not a MATLAB file: {exc}") from None
    if key not in content:
        raise malformed(path, "Flowers102", f"no '{key}'")
    return np.asarray(content[key]).astype(np.int64).ravel()

"""The quickstart's private client data: scikit-learn's bundled handwritten digits.

``sklearn.datasets.load_digits`` ships 1,797 greyscale 8 x 8 images of the digits 0-9 inside the
package, so the quickstart needs no download and no data root. To share a shape with the image
models and with synthetic images, each image is upsampled (bilinear) to ``image_size`` square,
repeated over three channels and inverted to dark ink on a white background, as a text-to-image
model draws "handwritten digit". Label names are ``"digit zero"`` ... ``"digit nine"``: words a
text-to-image prompt can use.

The train/test split is stratified per class and a pure function of ``split_seed``.
"""

from __future__ import annotations

import numpy as np

from gptfl_hpc.data.base import ArrayDataset
from gptfl_hpc.data.holdout import stratified_test_mask
from gptfl_hpc.data.registry import OpenOptions, register_dataset

DIGIT_LABELS = [f"digit {word}" for word in "zero one two three four five six seven eight nine".split()]


@register_dataset("digits", "digits", "image", needs_root=False)
def open_digits(config, split: str, options: OpenOptions) -> ArrayDataset:
    return load_digits(split, config.image_size, config.test_fraction, config.split_seed)


def load_digits(
    split: str = "train", image_size: int = 32, test_fraction: float = 0.2, split_seed: int = 0
) -> ArrayDataset:
    if split not in ("train", "test"):
        raise ValueError(f"unknown split '{split}'; use 'train' or 'test'")
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = _to_rgb_uint8(bunch.images, image_size)
    targets = bunch.target.astype(np.int64)
    test = stratified_test_mask(targets, test_fraction, split_seed)
    chosen = test if split == "test" else ~test
    return ArrayDataset(images[chosen], targets[chosen], DIGIT_LABELS, "image")


def _to_rgb_uint8(images: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    ink = torch.from_numpy(images.astype(np.float32) / 16.0).unsqueeze(1)  # N x 1 x 8 x 8, 1 = ink
    ink = F.interpolate(ink, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    paper = ((1.0 - ink) * 255.0).round().to(torch.uint8)
    return np.ascontiguousarray(paper.repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy())

"""Image helpers: decode and resize to the shared uint8 ``H x W x 3`` format, batch, convert.

Batches stay uint8 until they reach the training device: ``collate_images`` stacks the numpy
samples once and returns a ``N x 3 x H x W`` uint8 tensor; ``to_float_images`` turns that into
normalised float on whatever device it sits.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Sequence

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch is imported where batches are made, so the readers load without it
    import torch

# ImageNet statistics: the pretrained torchvision weights expect them, and they suit CIFAR too.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_image(path: "Path | BinaryIO", size: int) -> np.ndarray:
    """Decode an image file (any mode) to RGB and ``resize_square`` it."""
    with Image.open(path) as image:
        return resize_square(image.convert("RGB"), size)


def resize_square(image: "Image.Image | np.ndarray", size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` and centre-crop to ``size x size`` (uint8 HWC)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def collate_images(batch: Sequence[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[(HWC uint8, y), ...]`` -> (``N x C x H x W`` uint8 tensor, int64 targets).

    The image tensor is a permuted view of the stacked HWC batch, i.e. NCHW in channels-last
    memory format: no copy here; ``.to(device)`` keeps the layout, which convolutions accept.
    """
    import torch

    images = np.stack([x for x, _ in batch])
    targets = np.fromiter((y for _, y in batch), dtype=np.int64, count=len(batch))
    return torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(targets)


def to_float_images(
    images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """uint8 ``N x C x H x W`` -> float32, scaled to [0, 1] and normalised per channel."""
    import torch

    mean_t = torch.tensor(mean, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float().div_(255.0) - mean_t).div_(std_t)

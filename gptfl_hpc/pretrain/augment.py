"""Batch augmentation against over-fitting to synthetic data, on the training device.

Images: RandomResizedCrop + horizontal flip, done as one affine resample of the whole batch
(``affine_grid`` + ``grid_sample``) instead of a Python loop over samples. Audio: one time mask and
one frequency mask per clip (SpecAugment), kept inside each clip's real frames.

The random numbers come from a CPU generator seeded per micro-batch (``batch_seed``), never from
the global RNG: a batch's augmentation depends only on (seed, epoch, micro-batch, rank), so a
resumed run augments exactly as the uninterrupted one, on any device.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

ASPECT_RATIOS = (3 / 4, 4 / 3)


def batch_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, epoch, micro-batch, rank), well mixed."""
    digest = hashlib.blake2b("/".join(str(int(p)) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def random_resized_crop_flip(
    images: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.08, 1.0)
) -> torch.Tensor:
    """``N x C x H x W`` float -> same shape: a crop of ``scale`` of the area, resized back, flipped half the time."""
    n = images.shape[0]
    low, high = scale
    area = low + (high - low) * torch.rand(n, generator=generator)
    log_low, log_high = math.log(ASPECT_RATIOS[0]), math.log(ASPECT_RATIOS[1])
    ratio = torch.exp(log_low + (log_high - log_low) * torch.rand(n, generator=generator))
    # Half-widths in normalised coordinates ([-1, 1] spans the image); the crop stays inside it.
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (1 - width) * (2 * torch.rand(n, generator=generator) - 1)
    centre_y = (1 - height) * (2 * torch.rand(n, generator=generator) - 1)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def mask_time_frequency(
    features: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator, max_time: int, max_freq: int
) -> torch.Tensor:
    """``B x T x F`` log-mel -> a copy with one run of <= ``max_time`` frames and of <= ``max_freq`` bins
    zeroed per clip."""
    b, frames, bins = features.shape
    lengths = lengths.cpu().clamp(min=1, max=frames)
    freq_width = torch.floor(torch.rand(b, generator=generator) * (min(max_freq, bins) + 1))
    freq_start = torch.floor(torch.rand(b, generator=generator) * (bins - freq_width + 1))
    time_width = torch.minimum(torch.floor(torch.rand(b, generator=generator) * (max_time + 1)), lengths.float())
    time_start = torch.floor(torch.rand(b, generator=generator) * (lengths.float() - time_width + 1))
    t = torch.arange(frames).view(1, -1)
    f = torch.arange(bins).view(1, -1)
    time_mask = (t >= time_start.view(-1, 1)) & (t < (time_start + time_width).view(-1, 1))  # B x T
    freq_mask = (f >= freq_start.view(-1, 1)) & (f < (freq_start + freq_width).view(-1, 1))  # B x F
    mask = (time_mask[:, :, None] | freq_mask[:, None, :]).to(features.device)
    # Features are normalised per clip, so zero is the clip's mean: a masked run carries no signal.
    return features.masked_fill(mask, 0.0)

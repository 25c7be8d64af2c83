"""A collated batch -> model inputs on the training device, augmented when training.

Images travel as uint8 until they reach the device, are normalised there (ImageNet statistics),
resized to ``data.image_size`` if the shards were made at another size, then cropped and flipped.
Audio arrives as padded log-mel features with their true lengths; the model takes both.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from gptfl_hpc.data.images import to_float_images
from gptfl_hpc.pretrain.augment import mask_time_frequency, random_resized_crop_flip
from gptfl_hpc.pretrain.config import PretrainConfig

ModelInputs = tuple[tuple[torch.Tensor, ...], torch.Tensor]


class BatchPreparer:
    """Callable: raw collated batch (+ an augmentation seed while training) -> (inputs, targets)."""

    def __init__(self, modality: str, device: torch.device, image_size: int, settings: PretrainConfig):
        self.modality = modality
        self.device = device
        self.image_size = image_size
        self.settings = settings

    def __call__(self, raw: Any, augment_seed: Optional[int] = None) -> ModelInputs:
        generator = None
        if augment_seed is not None and self.settings.augment:
            generator = torch.Generator().manual_seed(augment_seed)
        if self.modality == "image":
            return self._images(raw, generator)
        return self._audio(raw, generator)

    def _images(self, raw: Any, generator: Optional[torch.Generator]) -> ModelInputs:
        images, targets = raw
        x = to_float_images(images.to(self.device, non_blocking=True))
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        if generator is not None:
            x = random_resized_crop_flip(x, generator, tuple(self.settings.crop_scale))
        return (x,), targets.to(self.device, non_blocking=True)

    def _audio(self, raw: Any, generator: Optional[torch.Generator]) -> ModelInputs:
        features, targets, lengths = raw
        x = features.to(self.device, non_blocking=True)
        if generator is not None and (self.settings.time_mask or self.settings.freq_mask):
            x = mask_time_frequency(x, lengths, generator, self.settings.time_mask, self.settings.freq_mask)
        return (x, lengths), targets.to(self.device, non_blocking=True)

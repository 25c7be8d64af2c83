"""The ConvNet of the dataset-distillation literature (used by GPT-FL's image experiments).

``depth`` blocks of Conv3x3 (padding 1) -> GroupNorm(width, width, affine) -- i.e. instance
norm with a learned scale and shift -> ReLU -> AvgPool2d(2), then one Linear on the flattened
features. Width 128, depth 3, 32 x 32 RGB input, 10 classes: 320,010 parameters.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvNet(nn.Module):
    def __init__(self, num_classes: int, width: int = 128, depth: int = 3, in_channels: int = 3, image_size: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for _ in range(depth):
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1),
                nn.GroupNorm(width, width, affine=True),
                nn.ReLU(inplace=True),
                nn.AvgPool2d(kernel_size=2, stride=2),
            ]
            channels, size = width, size // 2
        if size < 1:
            raise ValueError(f"image_size {image_size} is too small for depth {depth}")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))

"""ResNet18 / ResNet50 from torchvision, optionally with the CIFAR stem.

The CIFAR stem replaces the 7 x 7 stride-2 convolution and the max-pool, which shrink a 32 x 32
image to 8 x 8 before the first block, by a 3 x 3 stride-1 convolution and no pooling.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18, resnet50


def build_resnet(depth: int, num_classes: int, cifar_stem: bool = True) -> nn.Module:
    factory = {18: resnet18, 50: resnet50}[depth]
    model = factory(weights=None, num_classes=num_classes)
    if cifar_stem:
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model

"""VGG19 for small images: torchvision's VGG19 (no batch norm) with a compact classifier.

The 16 convolutional layers are torchvision's, unchanged (so ImageNet weights for
``features.*`` load as they are). The ImageNet head -- 7 x 7 pooling and three Linear layers,
about 120 M parameters -- makes no sense at 32 x 32, where the features end at 512 x 1 x 1; it is
replaced, as in the CIFAR VGG models of the FL literature, by global average pooling and one
``Linear(512, num_classes)``. 10 classes: 20,029,514 parameters; 100 classes: 20,075,684.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import vgg19


def build_vgg19(num_classes: int) -> nn.Module:
    model = vgg19(weights=None)
    model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    model.classifier = nn.Linear(512, num_classes)
    return model

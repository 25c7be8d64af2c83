"""Every downstream model, built by name: ``build_model(name, num_classes, **options)``.

=============  =====================================================  =========================
name           model                                                  options
=============  =====================================================  =========================
convnet        ConvNet (width 128, depth 3, instance norm)            width, depth, image_size
vgg19          torchvision VGG19, no BN, compact classifier           --
resnet18       torchvision ResNet18                                    cifar_stem
resnet50       torchvision ResNet50                                    cifar_stem
audio_crnn     FedAudio conv + bidirectional GRU on log-mel           n_mels, hidden_size, dropout
=============  =====================================================  =========================

Every model also takes ``imagenet_weights`` (a local path; see ``pretrained.load_pretrained``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Union

from torch import nn

from gptfl_hpc.errors import UserError
from gptfl_hpc.models.audio_crnn import AudioConvGRU
from gptfl_hpc.models.convnet import ConvNet
from gptfl_hpc.models.pretrained import load_pretrained
from gptfl_hpc.models.resnet import build_resnet
from gptfl_hpc.models.vgg import build_vgg19

MODELS: dict[str, Callable[..., nn.Module]] = {
    "convnet": ConvNet,
    "vgg19": build_vgg19,
    "resnet18": lambda num_classes, cifar_stem=True: build_resnet(18, num_classes, cifar_stem),
    "resnet50": lambda num_classes, cifar_stem=True: build_resnet(50, num_classes, cifar_stem),
    "audio_crnn": AudioConvGRU,
}


def build_model(
    name: str, num_classes: int, imagenet_weights: Optional[Union[str, Path]] = None, **options: Any
) -> nn.Module:
    key = name.lower()
    if key not in MODELS:
        raise UserError(f"unknown model '{name}'; valid models: {', '.join(MODELS)}")
    if num_classes < 1:
        raise UserError(f"model {name} needs at least one class (got {num_classes})")
    try:
        model = MODELS[key](num_classes=num_classes, **options)
    except TypeError as exc:
        raise UserError(f"model {name} does not take these options {sorted(options)} ({exc})") from None
    if imagenet_weights is not None:
        load_pretrained(model, imagenet_weights)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

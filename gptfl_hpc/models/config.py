"""The ``model`` config section; defaults build the quickstart's ConvNet."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import Field

from gptfl_hpc.schema import Section
from gptfl_hpc.errors import UserError

if TYPE_CHECKING:
    from torch import nn

ModelName = Literal["convnet", "vgg19", "resnet18", "resnet50", "audio_crnn"]


class ModelConfig(Section):
    """Which downstream model, and its options."""

    name: ModelName = "convnet"
    num_classes: Optional[int] = Field(None, ge=1, description="null = the number of run labels")
    cifar_stem: bool = Field(True, description="resnet: 3x3 stride-1 first conv and no max-pool")
    imagenet_weights: Optional[Path] = Field(None, description="local .safetensors / .pt to start from")
    width: int = Field(128, ge=1, description="convnet: channels per block")
    depth: int = Field(3, ge=1, le=8, description="convnet: number of blocks")
    hidden_size: int = Field(128, ge=2, description="audio_crnn: GRU width")
    dropout: float = Field(0.1, ge=0, lt=1, description="audio_crnn: dropout after the convolutions")


def build_from_config(config: ModelConfig, num_labels: int, image_size: int = 32, n_mels: int = 128) -> "nn.Module":
    """The configured model for a run with ``num_labels`` labels."""
    from gptfl_hpc.models.registry import build_model

    if config.num_classes is not None and config.num_classes != num_labels:
        raise UserError(
            f"model.num_classes {config.num_classes} differs from the {num_labels} run labels; leave it null"
        )
    options: dict[str, Any] = {}
    if config.name == "convnet":
        options = {"width": config.width, "depth": config.depth, "image_size": image_size}
    elif config.name in ("resnet18", "resnet50"):
        options = {"cifar_stem": config.cifar_stem}
    elif config.name == "audio_crnn":
        options = {"n_mels": n_mels, "hidden_size": config.hidden_size, "dropout": config.dropout}
    return build_model(config.name, num_labels, imagenet_weights=config.imagenet_weights, **options)

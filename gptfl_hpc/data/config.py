"""The ``data`` config section: which dataset, where it lives, and how it is split into clients.

Every field has a quickstart default: scikit-learn's digits (no root needed), 10 clients drawn
from Dirichlet(0.5) with at least 10 samples each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from gptfl_hpc.schema import Section

DatasetName = Literal["digits", "cifar10", "cifar100", "flowers102", "speech_commands", "esc50"]

#: What each ``data.dataset`` holds, in the words shards use.
DATASET_MODALITY = {"digits": "image", "cifar10": "image", "cifar100": "image", "flowers102": "image",
                    "speech_commands": "speech", "esc50": "audio"}


class PartitionConfig(Section):
    """How the training split is divided among clients."""

    kind: Literal["dirichlet", "iid", "speaker"] = "dirichlet"
    num_clients: Optional[int] = Field(10, ge=1, description="with kind speaker: null = one client per speaker")
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration; small = more skewed")
    min_client_size: int = Field(10, ge=0, description="redraw until every client has this many samples")
    seed: int = Field(0, ge=0, description="the partition's own seed: training seeds leave clients unchanged")

    @model_validator(mode="after")
    def _clients_needed(self) -> "PartitionConfig":
        if self.num_clients is None and self.kind != "speaker":
            raise ValueError(f"data.partition.num_clients may be null only with kind speaker, not {self.kind}")
        return self


class AudioFeatureConfig(Section):
    """Log-mel features for speech and audio (FedAudio's settings); waveforms are always 16 kHz."""

    n_mels: int = Field(128, ge=8)
    n_fft: int = Field(1024, ge=64)
    hop_length: int = Field(160, ge=1)
    normalize: bool = True


class DataConfig(Section):
    """The private (client) dataset and its partition."""

    dataset: DatasetName = "digits"
    root: Optional[Path] = Field(None, description="local folder in the dataset's published layout; digits needs none")
    image_size: int = Field(32, ge=8, le=1024, description="images are resized and centre-cropped to this square")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="digits only: share held out for testing")
    split_seed: int = Field(0, ge=0, description="digits only: seed of the train/test split")
    esc50_test_fold: int = Field(5, ge=1, le=5, description="ESC-50 only: the fold used for testing")
    partition: PartitionConfig = Field(default_factory=PartitionConfig)
    audio: AudioFeatureConfig = Field(default_factory=AudioFeatureConfig)

    @model_validator(mode="after")
    def _speaker_needs_speakers(self) -> "DataConfig":
        if self.partition.kind == "speaker" and self.dataset != "speech_commands":
            raise ValueError(f"data.partition.kind speaker needs dataset speech_commands, not {self.dataset}")
        return self

"""The ``data`` config section: which dataset, where it lives, and how it is split into clients.

Every field has a quickstart default: scikit-learn's digits (no root needed), 10 clients drawn
from Dirichlet(0.5) with at least 10 samples each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from gptfl_hpc.schema import Section, added


#: Partition kinds whose clients are the values of a per-sample id (``speaker`` is ``natural`` over
#: Speech Commands' speaker ids, under the name it had first).
NATURAL_KINDS = ("natural", "speaker")


class PartitionConfig(Section):
    """How the training split is divided among clients."""

    kind: Literal["dirichlet", "iid", "natural", "speaker"] = Field(
        "dirichlet", description="natural: one client per value of data.columns.client; speaker: Speech Commands' "
        "speakers as natural clients")
    num_clients: Optional[int] = Field(
        10, ge=1, description="with kind natural or speaker: null = one client per value; fewer merge values, seeded")
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration; small = more skewed")
    min_client_size: int = Field(10, ge=0, description="redraw until every client has this many samples")
    seed: int = Field(0, ge=0, description="the partition's own seed: training seeds leave clients unchanged")

    @model_validator(mode="after")
    def _clients_needed(self) -> "PartitionConfig":
        if self.num_clients is None and self.kind not in NATURAL_KINDS:
            raise ValueError(f"data.partition.num_clients may be null only with kind natural or speaker, not {self.kind}")
        return self


class AudioFeatureConfig(Section):
    """Log-mel features for speech and audio (FedAudio's settings); waveforms are always 16 kHz."""

    n_mels: int = Field(128, ge=8)
    n_fft: int = Field(1024, ge=64)
    hop_length: int = Field(160, ge=1)
    normalize: bool = True
    seconds: float = added(1.0, gt=0, le=600, description="folder and hf audio: clips are padded or trimmed to this")


class ColumnsConfig(Section):
    """Which columns of a metadata file (folder) or of a saved Hugging Face dataset (hf) hold what."""

    input: Optional[str] = Field(None, description="hf: the image or audio column; null = the first Image/Audio feature")
    label: Optional[str] = Field(None, description="null = 'label' in metadata.csv, else the class folders; "
                                 "hf: the first ClassLabel feature")
    client: Optional[str] = Field(None, description="the id of each sample's client (writer, speaker, hospital) "
                                  "for data.partition.kind natural")


class DataConfig(Section):
    """The private (client) dataset and its partition."""

    dataset: str = Field("digits", description="a registered reader: digits, cifar10, cifar100, flowers102, "
                         "speech_commands, esc50, folder, food101, hf (gptfl_hpc.data.registry)")
    root: Optional[Path] = Field(None, description="local folder in the dataset's published layout; digits needs none")
    image_size: int = Field(32, ge=8, le=1024, description="images are resized and centre-cropped to this square")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="data without a test split (digits, a folder or "
                                 "hf dataset of one split): share held out for testing, per class")
    split_seed: int = Field(0, ge=0, description="seed of that held-out share")
    esc50_test_fold: int = Field(5, ge=1, le=5, description="ESC-50 only: the fold used for testing")
    partition: PartitionConfig = Field(default_factory=PartitionConfig)
    audio: AudioFeatureConfig = Field(default_factory=AudioFeatureConfig)
    columns: ColumnsConfig = added(ColumnsConfig())
    skip_unreadable: bool = added(False, description="folder, food101 and hf: leave out files that cannot be "
                                  "decoded (counted in one line) instead of refusing the data")

    @field_validator("dataset")
    @classmethod
    def _registered(cls, name: str) -> str:
        from gptfl_hpc.data.registry import dataset_reader
        from gptfl_hpc.errors import UserError

        try:
            dataset_reader(name)
        except UserError as exc:  # as a validation error, so the message names the key and its source
            raise ValueError(str(exc).removeprefix("data.dataset ")) from None
        return name

    @model_validator(mode="after")
    def _speaker_needs_speakers(self) -> "DataConfig":
        if self.partition.kind == "speaker" and self.dataset != "speech_commands":
            raise ValueError(f"data.partition.kind speaker needs dataset speech_commands, not {self.dataset}")
        return self

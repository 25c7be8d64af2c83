"""Open the configured dataset, and build its partition, from a ``DataConfig``."""

from __future__ import annotations

from typing import Optional

from gptfl_hpc.data.audio_features import LogMel
from gptfl_hpc.data.base import LabeledDataset, Transform
from gptfl_hpc.data.config import DataConfig
from gptfl_hpc.data.partition import Partition, dirichlet_partition, iid_partition, speaker_partition
from gptfl_hpc.errors import UserError

#: ``data.dataset`` as messages name it.
DISPLAY_NAMES = {
    "digits": "digits",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "flowers102": "Flowers102",
    "speech_commands": "Speech Commands",
    "esc50": "ESC-50",
}


def open_dataset(config: DataConfig, split: str = "train") -> LabeledDataset:
    """The configured dataset's ``split`` ("train" or "test"; Speech Commands also has "val")."""
    dataset = _read(config, split)
    dataset.source = describe_source(config, split)
    return dataset


def describe_source(config: DataConfig, split: str) -> str:
    """``"the Speech Commands train split at /data/sc"``: how messages name a dataset split."""
    name = DISPLAY_NAMES.get(config.dataset, config.dataset)
    where = f" at {config.root}" if config.root is not None and config.dataset != "digits" else ""
    return f"the {name} {split} split{where}"


def _read(config: DataConfig, split: str) -> LabeledDataset:
    name = config.dataset
    if name == "digits":
        from gptfl_hpc.data.digits import load_digits

        return load_digits(split, config.image_size, config.test_fraction, config.split_seed)
    if name == "cifar10":
        from gptfl_hpc.data.cifar import load_cifar10

        return load_cifar10(config.root, split)
    if name == "cifar100":
        from gptfl_hpc.data.cifar import load_cifar100

        return load_cifar100(config.root, split)
    if name == "flowers102":
        from gptfl_hpc.data.flowers import Flowers102

        return Flowers102(config.root, split, config.image_size)
    if name == "speech_commands":
        from gptfl_hpc.data.speech_commands import SpeechCommands

        return SpeechCommands(config.root, split)
    if name == "esc50":
        from gptfl_hpc.data.esc50 import ESC50

        return ESC50(config.root, split, config.esc50_test_fold)
    raise UserError(f"unknown dataset '{name}'; use digits, cifar10, cifar100, flowers102, speech_commands or esc50")


def feature_transform(config: DataConfig, modality: str) -> Optional[Transform]:
    """The model-input transform for a modality: log-mel for speech and audio, none for images."""
    if modality == "image":
        return None
    audio = config.audio
    return LogMel(n_mels=audio.n_mels, n_fft=audio.n_fft, hop_length=audio.hop_length, normalize=audio.normalize)


def make_partition(config: DataConfig, dataset: LabeledDataset) -> Partition:
    """The configured partition of ``dataset`` (normally its train split)."""
    spec = config.partition
    if spec.kind == "iid":
        return iid_partition(len(dataset), spec.num_clients, spec.seed)
    if spec.kind == "speaker":
        speakers = getattr(dataset, "speakers", None)
        if speakers is None:
            raise UserError(
                f"data.partition.kind speaker needs speaker ids, which {config.dataset} lacks; use dirichlet or iid"
            )
        return speaker_partition(speakers, spec.seed, spec.num_clients)
    return dirichlet_partition(
        dataset.targets, spec.num_clients, spec.alpha, spec.seed, spec.min_client_size, dataset.num_classes
    )

"""Open the configured dataset, and build its partition, from a ``DataConfig``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from gptfl_hpc.data.base import LabeledDataset, Transform
from gptfl_hpc.data.config import NATURAL_KINDS, DataConfig
from gptfl_hpc.data.partition import Partition, dirichlet_partition, iid_partition, natural_partition
from gptfl_hpc.data.registry import OpenOptions, dataset_reader
from gptfl_hpc.errors import UserError

if TYPE_CHECKING:
    from gptfl_hpc.config import Config


def open_dataset(
    config: DataConfig, split: str = "train", cache: Optional[Path] = None, decode: bool = True
) -> LabeledDataset:
    """The configured dataset's ``split`` ("train" or "test"; Speech Commands also has "val").

    ``cache``: where readers that decode files keep the decoded samples (``RunLayout.data_cache``);
    ``decode=False`` lists and checks the samples without decoding them (checks before submitting).
    """
    dataset = dataset_reader(config.dataset).open(config, split, OpenOptions(cache=cache, decode=decode))
    dataset.source = describe_source(config, split)
    return dataset


def open_run_dataset(config: "Config", split: str = "train") -> LabeledDataset:
    """``open_dataset`` for a stage of a run: decoded samples are kept in the run's data cache."""
    from gptfl_hpc.layout import RunLayout

    return open_dataset(config.data, split, cache=RunLayout(config.run_dir).data_cache)


def describe_source(config: DataConfig, split: str) -> str:
    """``"the Speech Commands train split at /data/sc"``: how messages name a dataset split."""
    reader = dataset_reader(config.dataset)
    where = f" at {config.root}" if config.root is not None and reader.needs_root else ""
    return f"the {reader.display_name} {split} split{where}"


def feature_transform(config: DataConfig, modality: str) -> Optional[Transform]:
    """The model-input transform for a modality: log-mel for speech and audio, none for images."""
    if modality == "image":
        return None
    from gptfl_hpc.data.audio_features import LogMel

    audio = config.audio
    return LogMel(n_mels=audio.n_mels, n_fft=audio.n_fft, hop_length=audio.hop_length, normalize=audio.normalize)


def make_partition(config: DataConfig, dataset: LabeledDataset) -> Partition:
    """The configured partition of ``dataset`` (normally its train split)."""
    spec = config.partition
    if spec.kind == "iid":
        return iid_partition(len(dataset), spec.num_clients, spec.seed)
    if spec.kind in NATURAL_KINDS:
        # speaker keeps its first behaviour (no size floor), so its partitions keep their bytes
        floor = spec.min_client_size if spec.kind == "natural" else 0
        return natural_partition(_client_ids(config, dataset), spec.seed, spec.num_clients, floor, kind=spec.kind)
    return dirichlet_partition(
        dataset.targets, spec.num_clients, spec.alpha, spec.seed, spec.min_client_size, dataset.num_classes
    )


def _client_ids(config: DataConfig, dataset: LabeledDataset):
    """Each sample's client id: the client column's values (Speech Commands: its speakers)."""
    if config.partition.kind == "speaker":
        ids = getattr(dataset, "speakers", None)
        if ids is None:
            raise UserError(
                f"data.partition.kind speaker needs speaker ids, which {config.dataset} lacks; use dirichlet or iid"
            )
        return ids
    ids = getattr(dataset, "client_ids", None)
    if ids is None:
        raise UserError(
            f"data.partition.kind natural needs each sample's client, which {dataset.source} does not give; "
            "set data.columns.client to its client column (writer, speaker, hospital) or use kind dirichlet or iid"
        )
    return ids

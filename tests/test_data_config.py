"""The ``data`` config section and opening datasets from it."""

from __future__ import annotations

import pytest
from fixtures_data import write_speech_commands
from pydantic import ValidationError

from gptfl_hpc.data.config import DataConfig
from gptfl_hpc.data.factory import feature_transform, make_partition, open_dataset
from gptfl_hpc.errors import UserError


def test_defaults_are_the_quickstart():
    config = DataConfig()
    assert config.dataset == "digits" and config.root is None
    assert (config.partition.kind, config.partition.num_clients, config.partition.alpha) == ("dirichlet", 10, 0.5)
    train = open_dataset(config, "train")
    partition = make_partition(config, train)
    assert partition.num_clients == 10 and partition.sizes().min() >= config.partition.min_client_size
    assert feature_transform(config, "image") is None


@pytest.mark.parametrize(
    "data",
    [
        {"partition": {"alpha": 0}},
        {"partition": {"num_clients": 0}},
        {"partition": {"kind": "speaker"}},
        {"partition": {"kind": "iid", "num_clients": None}},
        {"dataset": "mnist"},
        {"image_size": 4},
        {"esc50_test_fold": 6},
        {"unknown": 1},
    ],
)
def test_invalid_values_are_rejected(data):
    with pytest.raises(ValidationError):
        DataConfig.model_validate(data)


def test_dataset_that_needs_a_root_fails_at_construction():
    config = DataConfig(dataset="cifar10")  # valid config: the root is checked when opened
    with pytest.raises(UserError, match="data.root"):
        open_dataset(config)


def test_speaker_partition_through_the_config(tmp_path):
    files = [f"yes/spk{k}_nohash_{j}.wav" for k in range(4) for j in range(2)]
    config = DataConfig(
        dataset="speech_commands",
        root=write_speech_commands(tmp_path, files),
        partition={"kind": "speaker", "num_clients": None},
    )
    train = open_dataset(config)
    assert make_partition(config, train).num_clients == 4
    merged = DataConfig.model_validate({**config.model_dump(), "partition": {"kind": "speaker", "num_clients": 2}})
    assert make_partition(merged, train).num_clients == 2
    features = feature_transform(config, train.modality)(train[0][0])
    assert features.shape == (11, 128)  # 0.1 s at hop 160 -> 11 frames

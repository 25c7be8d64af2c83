"""Each real-dataset reader on a tiny fixture in the published format, and its root errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from fixtures_data import (
    CIFAR10_NAMES,
    write_cifar10,
    write_cifar100,
    write_esc50,
    write_flowers102,
    write_speech_commands,
)

from gptfl_hpc.data.cifar import load_cifar10, load_cifar100
from gptfl_hpc.data.esc50 import ESC50
from gptfl_hpc.data.flowers import Flowers102, flowers102_label_names
from gptfl_hpc.data.speech_commands import SPEECH_COMMANDS_V2_WORDS, SpeechCommands, speaker_of
from gptfl_hpc.errors import UserError


def assert_one_line_naming(exc_info: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(exc_info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


def assert_interface(ds) -> None:
    assert len(ds) == len(ds.targets) > 0
    assert ds.targets.dtype == np.int64
    x, y = ds[0]
    assert isinstance(y, int) and y == ds.targets[0] and 0 <= y < len(ds.labels)
    if ds.modality == "image":
        assert x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3
    else:
        assert x.dtype == np.float32 and x.ndim == 1


# --------------------------------------------------------------------------- CIFAR


def test_cifar10_reads_pickle_batches(tmp_path):
    root = write_cifar10(tmp_path, per_batch=4)
    train, test = load_cifar10(root, "train"), load_cifar10(root, "test")
    assert (len(train), len(test)) == (20, 4)
    assert train.labels == CIFAR10_NAMES
    assert_interface(train)
    # Channel-major rows become H x W x C: pixel (0, 0) holds bytes 0, 1024 and 2048 of the row.
    with open(root / "cifar-10-batches-py" / "data_batch_1", "rb") as handle:
        row = pickle.load(handle, encoding="bytes")[b"data"][0]
    assert train[0][0].shape == (32, 32, 3)
    assert list(train[0][0][0, 0]) == [row[0], row[1024], row[2048]]
    # data.root may also be the batch folder itself.
    assert len(load_cifar10(root / "cifar-10-batches-py", "test")) == 4


def test_cifar100_uses_fine_labels_with_readable_names(tmp_path):
    root = write_cifar100(tmp_path, n_train=6, n_test=3)
    train = load_cifar100(root, "train")
    assert len(train) == 6 and len(load_cifar100(root, "test")) == 3
    assert len(train.labels) == 100 and train.labels[99] == "aquarium fish"
    assert train.targets[0] == 99
    assert_interface(train)


def test_cifar_wrong_root_is_one_line_naming_the_path(tmp_path):
    with pytest.raises(UserError) as exc_info:
        load_cifar10(tmp_path, "train")
    assert_one_line_naming(exc_info, str(tmp_path), "cifar-10-batches-py/data_batch_1", "data.root")
    with pytest.raises(UserError) as exc_info:
        load_cifar100(tmp_path / "missing", "train")
    assert_one_line_naming(exc_info, str(tmp_path / "missing"), "cifar-100-python")
    with pytest.raises(UserError) as exc_info:
        load_cifar10(None, "train")
    assert_one_line_naming(exc_info, "data.root")


def test_cifar_refuses_pickles_with_foreign_classes(tmp_path):
    root = write_cifar10(tmp_path)
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": pickle.Pickler}, protocol=2))
    with pytest.raises(UserError) as exc_info:
        load_cifar10(root, "test")
    assert_one_line_naming(exc_info, "test_batch", "malformed")


# --------------------------------------------------------------------------- Flowers102


def test_flowers102_reads_jpgs_and_mat_files(tmp_path):
    root = write_flowers102(tmp_path, classes=(1, 2, 102, 1, 2, 102))
    train = Flowers102(root, "train", image_size=16)
    assert list(train.image_ids) == [1, 4]
    assert list(train.targets) == [0, 0]
    assert len(Flowers102(root, "test")) == 2 and list(Flowers102(root, "test").targets) == [101, 101]
    assert len(Flowers102(root, "trainval")) == 4
    assert_interface(train)
    assert train[0][0].shape == (16, 16, 3)
    names = flowers102_label_names()
    assert len(names) == 102 == len(set(names)) and names[0] == "pink primrose"
    assert train.labels == names


def test_flowers102_errors(tmp_path):
    with pytest.raises(UserError) as exc_info:
        Flowers102(tmp_path, "train")
    assert_one_line_naming(exc_info, str(tmp_path), "imagelabels.mat")
    root = write_flowers102(tmp_path / "f")
    (root / "jpg" / "image_00004.jpg").unlink()
    with pytest.raises(UserError) as exc_info:
        Flowers102(root, "train")
    assert_one_line_naming(exc_info, "jpg/image_00004.jpg")
    (root / "setid.mat").write_bytes(b"not a mat file")
    with pytest.raises(UserError) as exc_info:
        Flowers102(root, "test")
    assert_one_line_naming(exc_info, "setid.mat", "malformed")


# --------------------------------------------------------------------------- Speech Commands


def test_speech_commands_splits_and_speakers(tmp_path):
    files = [
        "yes/aaaa0001_nohash_0.wav",
        "yes/aaaa0001_nohash_1.wav",
        "no/bbbb0002_nohash_0.wav",
        "zero/cccc0003_nohash_0.wav",
        "backward/dddd0004_nohash_0.wav",
    ]
    root = write_speech_commands(tmp_path, files, validation=[files[3]], testing=[files[4]])
    train = SpeechCommands(root, "train")
    assert train.labels == SPEECH_COMMANDS_V2_WORDS and len(train.labels) == 35
    assert train.files == ["no/bbbb0002_nohash_0.wav", "yes/aaaa0001_nohash_0.wav", "yes/aaaa0001_nohash_1.wav"]
    assert [train.labels[t] for t in train.targets] == ["no", "yes", "yes"]
    assert list(train.speakers) == ["bbbb0002", "aaaa0001", "aaaa0001"]
    assert_interface(train)
    assert train[0][0].shape == (1600,)
    assert SpeechCommands(root, "val").files == [files[3]]
    assert SpeechCommands(root, "test").files == [files[4]]
    assert speaker_of("right/bb05582b_nohash_3.wav") == "bb05582b"


def test_speech_commands_errors(tmp_path):
    with pytest.raises(UserError) as exc_info:
        SpeechCommands(tmp_path, "train")
    assert_one_line_naming(exc_info, str(tmp_path), "validation_list.txt")
    root = write_speech_commands(tmp_path / "sc", ["yes/aaaa0001_nohash_0.wav", "banana/aaaa0001_nohash_0.wav"])
    with pytest.raises(UserError) as exc_info:
        SpeechCommands(root, "train")
    assert_one_line_naming(exc_info, "banana")


# --------------------------------------------------------------------------- ESC-50


def test_esc50_folds_names_and_resampling(tmp_path):
    rows = [
        ("1-100-A-0.wav", 1, 0, "dog"),
        ("2-101-A-1.wav", 2, 1, "chirping_birds"),
        ("5-102-A-0.wav", 5, 0, "dog"),
        ("5-103-A-1.wav", 5, 1, "chirping_birds"),
    ]
    root = write_esc50(tmp_path, rows)
    train, test = ESC50(root, "train"), ESC50(root, "test")
    assert train.labels == ["dog", "chirping birds"]
    assert list(train.targets) == [0, 1] and list(test.targets) == [0, 1]
    assert list(ESC50(root, "test", test_fold=1).targets) == [0]
    assert_interface(train)
    assert train[0][0].shape == (800,)  # 0.05 s at 44.1 kHz, resampled to 16 kHz


def test_esc50_errors(tmp_path):
    with pytest.raises(UserError) as exc_info:
        ESC50(tmp_path, "train")
    assert_one_line_naming(exc_info, str(tmp_path), "meta/esc50.csv")
    root = write_esc50(tmp_path / "e", [("1-1-A-0.wav", 1, 0, "dog"), ("1-2-A-1.wav", 1, 0, "cat")])
    with pytest.raises(UserError) as exc_info:
        ESC50(root, "train")
    assert_one_line_naming(exc_info, "esc50.csv", "target 0")

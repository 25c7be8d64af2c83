"""Each real-dataset reader on a tiny fixture in the published format, and its root errors."""

from __future__ import annotations

import logging
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

from gptfl_hpc.commands.partition import partition_report
from gptfl_hpc.data.cifar import load_cifar10, load_cifar100
from gptfl_hpc.data.config import DataConfig
from gptfl_hpc.data.esc50 import ESC50
from gptfl_hpc.data.factory import make_partition, open_dataset
from gptfl_hpc.data.flowers import Flowers102, flowers102_label_names
from gptfl_hpc.data.labels import match_labels
from gptfl_hpc.data.speech_commands import SPEECH_COMMANDS_V2_WORDS, SpeechCommands, speaker_of
from gptfl_hpc.data.waveforms import read_wav
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


def test_cifar10_label_subset_keeps_only_those_classes(tmp_path, caplog):
    root = write_cifar10(tmp_path, per_batch=4)  # train targets 8 6 5 2 0 1 4 8 9 7 8 7 8 1 6 4 3 7 2 0
    config = DataConfig(dataset="cifar10", root=root)
    source = open_dataset(config, "train")
    with caplog.at_level(logging.INFO, logger="gptfl_hpc.data.labels"):
        train = match_labels(source, ["ship", "airplane", "cat"])
    assert list(train.indices) == [0, 4, 7, 10, 12, 16, 19]
    assert list(train.targets) == [0, 1, 0, 0, 0, 2, 1]
    assert all(np.array_equal(train[i][0], source[j][0]) for i, j in enumerate(train.indices))
    assert_interface(train)
    assert caplog.messages == [
        f"the CIFAR-10 train split at {root}: kept 7 samples of 3 labels, dropped 13 samples of 7 other labels"
    ]
    test = match_labels(open_dataset(config, "test"), ["ship", "airplane", "cat"])  # test targets 1 7 8 3
    assert list(test.targets) == [0, 2] and test.selection.dropped == 2
    with pytest.raises(UserError) as exc_info:
        match_labels(source, ["ship", "airplane", "kitten"])
    assert_one_line_naming(exc_info, f"the CIFAR-10 train split at {root} has no label 'kitten'", "labels.names")
    assert "ArrayDataset" not in str(exc_info.value)


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


KEYWORDS = "yes no up down left right on off stop go".split()


def keyword_spotting_root(tmp_path):
    """A Speech Commands root with words inside and outside the 10 keywords in every split."""
    train = [
        "yes/aaaa0001_nohash_0.wav",
        "yes/bbbb0002_nohash_0.wav",
        "no/aaaa0001_nohash_0.wav",
        "bed/cccc0003_nohash_0.wav",
        "bird/aaaa0001_nohash_1.wav",
        "go/dddd0004_nohash_0.wav",
        "stop/bbbb0002_nohash_1.wav",
        "zero/eeee0005_nohash_0.wav",
    ]
    validation = ["up/ffff0006_nohash_0.wav", "wow/ffff0006_nohash_1.wav"]
    testing = ["down/gggg0007_nohash_0.wav", "marvin/gggg0007_nohash_1.wav", "left/hhhh0008_nohash_0.wav"]
    return write_speech_commands(tmp_path, train + validation + testing, validation=validation, testing=testing)


def test_speech_commands_ten_keywords_drop_the_other_words(tmp_path, caplog):
    root = keyword_spotting_root(tmp_path)
    config = DataConfig(dataset="speech_commands", root=root, partition={"kind": "speaker", "num_clients": None})
    with caplog.at_level(logging.INFO, logger="gptfl_hpc.data.labels"):
        train = match_labels(open_dataset(config, "train"), KEYWORDS)
    # Folders in sorted order: bed, bird (dropped), go, no, stop, yes, yes, zero (dropped).
    kept_files = ["go/dddd0004_nohash_0.wav", "no/aaaa0001_nohash_0.wav", "stop/bbbb0002_nohash_1.wav",
                  "yes/aaaa0001_nohash_0.wav", "yes/bbbb0002_nohash_0.wav"]
    assert len(train) == 5 and train.labels == KEYWORDS
    assert list(train.targets) == [9, 1, 8, 0, 0]
    assert list(train.speakers) == ["dddd0004", "aaaa0001", "bbbb0002", "aaaa0001", "bbbb0002"]
    assert [train.dataset.files[j] for j in train.indices] == kept_files
    for i, relative in enumerate(kept_files):
        x, y = train[i]
        assert np.array_equal(x, read_wav(root / relative)) and KEYWORDS[y] == relative.split("/")[0]
    assert caplog.messages == [
        f"the Speech Commands train split at {root}: kept 5 samples of 10 labels, dropped 3 samples of 25 other labels"
    ]
    # The speaker partition runs on the kept samples: one client per remaining speaker.
    partition = make_partition(config, train)
    assert [list(client) for client in partition.clients] == [[1, 3], [2, 4], [0]]
    assert [sorted(set(train.speakers[client])) for client in partition.clients] == [
        ["aaaa0001"], ["bbbb0002"], ["dddd0004"]
    ]
    val = match_labels(open_dataset(config, "val"), KEYWORDS)
    assert list(val.targets) == [2] and list(val.speakers) == ["ffff0006"] and val.selection.dropped == 1
    test = match_labels(open_dataset(config, "test"), KEYWORDS)
    assert list(test.targets) == [3, 4] and list(test.speakers) == ["gggg0007", "hhhh0008"]
    assert (test.selection.kept, test.selection.dropped) == (2, 1)


def test_speech_commands_keyword_partition_report_counts_only_the_keywords(tmp_path):
    config = DataConfig(dataset="speech_commands", root=keyword_spotting_root(tmp_path),
                        partition={"kind": "speaker", "num_clients": None})
    text = partition_report(config, KEYWORDS)
    assert "speaker partition: 5 samples, 3 clients, 10 classes" in text


def test_speech_commands_run_word_missing_is_one_line(tmp_path):
    root = keyword_spotting_root(tmp_path)
    train = open_dataset(DataConfig(dataset="speech_commands", root=root), "train")
    with pytest.raises(UserError) as exc_info:
        match_labels(train, [w if w != "go" else "hello" for w in KEYWORDS])
    assert_one_line_naming(exc_info, f"the Speech Commands train split at {root} has no label 'hello'", "labels.names")


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

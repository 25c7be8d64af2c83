"""Datasets users bring: class folders of images and audio, metadata files, saved Hugging Face
datasets, Food-101's layout; the decoded-sample cache; the natural partition."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fixtures_folders import (
    audio_folder,
    colour,
    expected_pixel,
    image_folder,
    saved_hf_audio,
    saved_hf_images,
    write_image,
    write_metadata,
)

from gptfl_hpc.data.config import DataConfig
from gptfl_hpc.data.factory import make_partition, open_dataset
from gptfl_hpc.data.labels import match_labels
from gptfl_hpc.data.partition import natural_partition
from gptfl_hpc.data.registry import dataset_names, dataset_reader
from gptfl_hpc.errors import UserError

REPO = Path(__file__).resolve().parents[1]
LABELS = ["cat", "dog"]


def folder_config(root: Path, **fields) -> DataConfig:
    return DataConfig.model_validate({"dataset": "folder", "root": str(root), "image_size": 8, **fields})


def test_the_builtins_and_the_new_readers_are_registered():
    assert {"digits", "cifar10", "cifar100", "flowers102", "speech_commands", "esc50", "folder", "food101",
            "hf"} <= set(dataset_names())
    assert dataset_reader("esc50").modality == "audio" and dataset_reader("cifar10").display_name == "CIFAR-10"


def test_an_image_folder_of_every_mode_decodes_to_rgb_squares(tmp_path):
    train = image_folder(tmp_path / "train", LABELS, per_label=4)
    test = image_folder(tmp_path / "test", LABELS, per_label=1)
    config = folder_config(tmp_path)
    ds = open_dataset(config, "train")
    assert ds.labels == LABELS and ds.modality == "image" and len(ds) == len(train)
    assert ds.source == f"the image/audio folder train split at {tmp_path}"
    for index, (path, label, mode) in enumerate(train):
        x, y = ds[index]
        assert y == label and x.shape == (8, 8, 3) and x.dtype == np.uint8
        lossy = path.suffix in (".jpg", ".jpeg", ".webp")
        rgb = colour(label, int(path.stem))
        expected = expected_pixel(rgb, mode)
        assert np.abs(x.astype(np.int64) - expected).max() <= (6 if lossy else 0), (path, mode)
    assert len(open_dataset(config, "test")) == len(test)


def test_class_folders_without_splits_hold_out_a_seeded_stratified_test_split(tmp_path):
    image_folder(tmp_path, ["a", "b", "c"], per_label=5)
    config = folder_config(tmp_path, test_fraction=0.4, split_seed=7)
    train, test = open_dataset(config, "train"), open_dataset(config, "test")
    assert np.bincount(test.targets).tolist() == [2, 2, 2] and np.bincount(train.targets).tolist() == [3, 3, 3]
    assert open_dataset(config, "test").sources.names == test.sources.names  # seeded: the same files again
    assert not set(train.sources.names) & set(test.sources.names)


def test_an_audio_folder_is_16khz_mono_of_fixed_length(tmp_path):
    written = audio_folder(tmp_path / "train", ["no", "yes"])
    audio_folder(tmp_path / "test", ["no", "yes"], per_label=1)
    ds = open_dataset(folder_config(tmp_path, audio={"seconds": 1.0}), "train")
    assert ds.modality == "audio" and ds.labels == ["no", "yes"]
    for index, (_, label, mono) in enumerate(written):
        x, y = ds[index]
        assert y == label and x.shape == (16_000,) and x.dtype == np.float32
        assert np.allclose(x[2000:6000], mono, atol=2e-3)  # the clip (0.5 s), resampled, away from its edges
        assert np.all(x[8200:] == 0)  # padded to one second


def test_metadata_names_labels_and_clients_and_a_run_may_use_a_subset(tmp_path):
    audio_folder(tmp_path / "train", ["no", "yes", "up"], per_label=4, speakers=["s1", "s2", "s3"])
    audio_folder(tmp_path / "test", ["no", "yes", "up"], per_label=1)
    config = folder_config(tmp_path, columns={"client": "speaker"}, partition={"kind": "natural", "num_clients": None,
                                                                                "min_client_size": 1})
    assert getattr(open_dataset(config, "test"), "client_ids", None) is None  # only the train split is partitioned
    ds = match_labels(open_dataset(config, "train"), ["yes", "no"])
    assert ds.labels == ["yes", "no"] and len(ds) == 8
    assert sorted(set(ds.client_ids)) == ["s1", "s2", "s3"]
    partition = make_partition(config, ds)
    assert partition.kind == "natural" and partition.num_clients == 3
    for client in partition.clients:
        assert len(set(ds.client_ids[client])) == 1


def test_natural_clients_are_the_distinct_values_and_a_cap_merges_them_by_seed():
    ids = np.array(["w3", "w1", "w2", "w1", "w4", "w3", "w2", "w5"])
    every = natural_partition(ids, seed=0)
    assert [sorted(set(ids[c])) for c in every.clients] == [["w1"], ["w2"], ["w3"], ["w4"], ["w5"]]
    capped = natural_partition(ids, seed=4, num_clients=2)
    again = natural_partition(ids, seed=4, num_clients=2)
    assert [c.tolist() for c in capped.clients] == [c.tolist() for c in again.clients]
    assert capped.num_clients == 2 and sorted(np.concatenate(capped.clients).tolist()) == list(range(len(ids)))
    groups = [set(ids[c]) for c in capped.clients]
    assert not groups[0] & groups[1] and sorted(map(len, groups)) == [2, 3]  # whole writers merged
    merges = {tuple(tuple(sorted(set(ids[c]))) for c in natural_partition(ids, seed, 2).clients) for seed in range(8)}
    assert len(merges) > 1  # the seed decides which writers share a client
    with pytest.raises(UserError, match="num_clients 6 must be between 1 and the 5 client ids"):
        natural_partition(ids, seed=0, num_clients=6)


def test_a_saved_hugging_face_dataset_reads_images_labels_and_clients(tmp_path):
    rows = saved_hf_images(tmp_path / "hf", ["ant", "bee"], ["w1", "w2", "w3"])
    config = DataConfig.model_validate({"dataset": "hf", "root": str(tmp_path / "hf"), "image_size": 8,
                                        "columns": {"client": "writer"}})
    assert dataset_reader("hf").modality_of(config) == "image"
    for split in ("train", "test"):
        ds = open_dataset(config, split, cache=tmp_path / "cache")
        assert ds.labels == ["ant", "bee"] and len(ds) == len(rows[split])
        for index, (rgb, label, writer) in enumerate(rows[split]):
            x, y = ds[index]
            assert y == label and ds.client_ids[index] == writer and (x == np.array(rgb)).all()
    with pytest.raises(UserError, match=r"data.columns.client 'speaker' is not a column of the hf dataset"):
        open_dataset(config.model_copy(update={"columns": config.columns.model_copy(update={"client": "speaker"})}))


def test_a_saved_hugging_face_audio_dataset_without_splits_holds_out_its_test_split(tmp_path):
    rows = saved_hf_audio(tmp_path / "hf", ["go", "stop"])
    config = DataConfig.model_validate({"dataset": "hf", "root": str(tmp_path / "hf"), "test_fraction": 0.4,
                                        "audio": {"seconds": 0.5}})
    assert dataset_reader("hf").modality_of(config) == "audio"
    train, test = open_dataset(config, "train"), open_dataset(config, "test")
    assert len(train) == 6 and len(test) == 4 and train.labels == ["go", "stop"]
    x, y = train[0]
    value = [v for v, k in rows if k == y]
    assert x.shape == (8000,) and any(np.allclose(x[1000:3000], v, atol=2e-3) for v in value)


def test_food101_reads_its_published_lists(tmp_path):
    for name, k in (("apple_pie/1", 0), ("apple_pie/2", 0), ("baklava/7", 1), ("baklava/9", 1)):
        write_image(tmp_path / "images" / f"{name}.jpg", colour(k, 0), "RGB")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "train.txt").write_text("apple_pie/1\nbaklava/7\nbaklava/9\n")
    (tmp_path / "meta" / "test.txt").write_text("apple_pie/2\n")
    config = DataConfig(dataset="food101", root=tmp_path, image_size=8)
    train = open_dataset(config, "train")
    assert train.labels == ["apple pie", "baklava"] and train.targets.tolist() == [0, 1, 1]
    assert len(match_labels(open_dataset(config, "test"), ["apple pie"])) == 1


# --------------------------------------------------------------------------- the cache


@pytest.fixture
def counted_opens(monkeypatch):
    """The real ``PIL.Image.open``, counting the files it opens."""
    from PIL import Image

    opened = []
    real = Image.open

    def counting(fp, *args, **kwargs):
        opened.append(fp)
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)
    return opened


def test_a_second_open_reads_no_file_and_touching_one_rebuilds(tmp_path, counted_opens):
    written = image_folder(tmp_path / "data", LABELS, per_label=2, kinds=(("RGB", ".png"),))
    config, cache = folder_config(tmp_path / "data"), tmp_path / "run" / "data-cache"
    first = open_dataset(config, "train", cache=cache)
    assert len(counted_opens) == len(written)
    counted_opens.clear()
    second = open_dataset(config, "train", cache=cache)
    assert counted_opens == [] and isinstance(second.samples, np.memmap)
    assert all((first[i][0] == second[i][0]).all() for i in range(len(first)))
    stat = written[0][0].stat()
    os.utime(written[0][0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    open_dataset(config, "train", cache=cache)
    assert len(counted_opens) == len(written)  # a changed folder is decoded again
    assert len([p for p in cache.iterdir() if p.name != "locks"]) == 2


OPEN_TOGETHER = """
import sys, time
from pathlib import Path
from PIL import Image
from gptfl_hpc.data.config import DataConfig
from gptfl_hpc.data.factory import open_dataset

root, cache, me, other = map(Path, sys.argv[1:])
opened = []
real = Image.open
Image.open = lambda fp, *a, **k: (opened.append(fp), real(fp, *a, **k))[1]
me.touch()
while not other.exists():  # both processes start decoding at the same moment
    time.sleep(0.01)
ds = open_dataset(DataConfig(dataset="folder", root=root, image_size=8), "train", cache=cache)
print(len(opened), len(ds))
"""


def test_two_processes_opening_together_decode_once(tmp_path):
    written = image_folder(tmp_path / "data", LABELS, per_label=20, kinds=(("RGB", ".png"),))
    script = tmp_path / "open.py"
    script.write_text(textwrap.dedent(OPEN_TOGETHER))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    a, b = tmp_path / "a", tmp_path / "b"
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "data"), str(tmp_path / "cache"),
                               str(me), str(other)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me, other in ((a, b), (b, a))]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err[-2000:] for _, err in results]
    opened = sorted(int(out.split()[0]) for out, _ in results)
    train_size = round(0.8 * len(written))  # the default held-out test split is 20 %
    assert opened == [0, train_size] and all(int(out.split()[1]) == train_size for out, _ in results)


def test_an_unreadable_file_is_named_or_skipped_and_counted(tmp_path, caplog):
    image_folder(tmp_path, LABELS, per_label=3, kinds=(("RGB", ".png"),))
    good = (tmp_path / "cat" / "00.png").read_bytes()
    (tmp_path / "cat" / "01.png").write_bytes(good[: len(good) // 2])  # truncated
    (tmp_path / "dog" / "02.png").write_bytes(b"not an image")
    config = folder_config(tmp_path)
    with pytest.raises(UserError, match=r"cannot be decoded.*data.skip_unreadable=true"):
        open_dataset(config, "train")
    skipping = folder_config(tmp_path, skip_unreadable=True)
    with caplog.at_level("WARNING"):
        ds = open_dataset(skipping, "train", cache=tmp_path.parent / "cache")
    assert "left out" in caplog.text
    assert len(ds) + len(ds.skipped) == 4 and len(ds.skipped) >= 1  # the held-out split: 4 of 6 files


# --------------------------------------------------------------------------- the example configs

#: The dataset examples (the generator-*.yaml ones are checked with the generators).
EXAMPLES = sorted(p for p in (REPO / "configs" / "examples").glob("*.yaml") if not p.name.startswith("generator-"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_configs_validate_once_their_placeholders_are_filled(path, monkeypatch, capsys):
    from gptfl_hpc.cli import main
    from gptfl_hpc.config import load_config, placeholder_paths

    monkeypatch.chdir(REPO)  # labels.path is relative to the repository
    filled = [f"{key}=/data/{key.rsplit('.', 1)[-1]}" for key, _ in placeholder_paths(load_config(path))]
    assert any(item.startswith("data.root=") for item in filled)
    assert main(["validate", str(path), *filled]) == 0, capsys.readouterr().err


def test_speaker_is_the_natural_partition_over_speakers_with_its_first_bytes():
    from gptfl_hpc.data.partition import speaker_partition

    speakers = np.array(["b", "a", "c", "a", "b", "d"])
    for clients in (None, 2):
        speaker = speaker_partition(speakers, seed=3, num_clients=clients)
        natural = natural_partition(speakers, seed=3, num_clients=clients)
        assert [c.tolist() for c in speaker.clients] == [c.tolist() for c in natural.clients]
        assert speaker.kind == "speaker" and speaker.params == {"num_speakers": 4}
    assert speaker_partition(speakers, seed=0).to_json() == (
        '{"format":"gptfl-partition/1","kind":"speaker","seed":0,"num_samples":6,"params":{"num_speakers":4},'
        '"clients":{"0":[1,3],"1":[0,4],"2":[2],"3":[5]}}\n')


def test_metadata_jsonl_with_writers_and_a_flac_file(tmp_path):
    import json

    from fixtures_folders import write_wav

    rows = []
    for k, (label, writer) in enumerate([("a", "w1"), ("a", "w2"), ("b", "w1"), ("b", "w3"), ("a", "w3"),
                                         ("b", "w2")] * 2):
        name = f"clip{k:02d}.flac" if k % 4 == 0 else f"clip{k:02d}.wav"
        write_wav(tmp_path / name, 0.1 * (k % 5), 22_050, 1, seconds=0.25)
        rows.append({"file_name": name, "label": label, "writer": writer, "note": "extra columns are kept out"})
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = folder_config(tmp_path, columns={"client": "writer"}, test_fraction=0.5,
                           audio={"seconds": 0.25}, partition={"kind": "natural", "num_clients": 2, "min_client_size": 1})
    train, test = open_dataset(config, "train"), open_dataset(config, "test")
    assert train.labels == ["a", "b"] and len(train) == 6 and len(test) == 6
    assert all(train[i][0].shape == (4000,) for i in range(len(train)))
    partition = make_partition(config, train)
    assert partition.num_clients == 2
    writers = [set(train.client_ids[c]) for c in partition.clients]
    assert not writers[0] & writers[1] and writers[0] | writers[1] == set(train.client_ids)  # whole writers

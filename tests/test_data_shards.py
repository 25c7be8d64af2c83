"""The dataset over synthesis shards."""

from __future__ import annotations

import logging
import os

import h5py
import numpy as np
import pytest
import torch
from fixtures_data import write_shard
from fixtures_shards import pretrain_settings, write_config, write_digit_shards
from torch.utils.data import DataLoader

from gptfl_hpc.config import load_config
from gptfl_hpc.data.digits import DIGIT_LABELS
from gptfl_hpc.data.images import collate_images
from gptfl_hpc.errors import UserError
from gptfl_hpc.pretrain import inputs
from gptfl_hpc.shards.reader import BlockBatchSampler, ShardDataset, find_complete_shards

RUN_LABELS = ["cat", "dog", "frog"]


def image_shards(tmp_path, sizes=(5, 7), labels=RUN_LABELS):
    """Shards whose pixel (0, 0, 0) holds the global sample number, labels cycling."""
    paths, start = [], 0
    for k, n in enumerate(sizes):
        x = np.zeros((n, 4, 4, 3), np.uint8)
        x[:, 0, 0, 0] = np.arange(start, start + n)
        y = np.arange(start, start + n) % len(labels)
        paths.append(write_shard(tmp_path / f"shard_{k:05d}.h5", x, y, labels, first_index=start))
        start += n
    return paths


def test_directory_reads_only_complete_shards_in_order(tmp_path):
    image_shards(tmp_path)
    write_shard(tmp_path / "shard_00002.h5", np.zeros((3, 4, 4, 3), np.uint8), [0, 1, 2], RUN_LABELS, complete=False)
    (tmp_path / "shard_00003.h5.tmp").write_bytes(b"partial")
    (tmp_path / "shard_00004.h5").write_bytes(b"truncated by a crash")
    assert [p.name for p in find_complete_shards(tmp_path)] == ["shard_00000.h5", "shard_00001.h5"]
    ds = ShardDataset(tmp_path, RUN_LABELS)
    assert len(ds) == 12 and ds.modality == "image" and ds.labels == RUN_LABELS
    assert [int(ds[i][0][0, 0, 0]) for i in range(12)] == list(range(12))
    assert list(ds.targets) == [i % 3 for i in range(12)]
    x, y = ds[6]
    assert x.dtype == np.uint8 and x.shape == (4, 4, 3) and y == 0


def test_labels_are_matched_by_name(tmp_path):
    # The shard lists its labels in another order: sample i has shard label i % 3.
    image_shards(tmp_path, sizes=(6,), labels=["frog", "cat", "dog"])
    ds = ShardDataset(tmp_path, RUN_LABELS)
    assert [ds.labels[ds[i][1]] for i in range(6)] == ["frog", "cat", "dog"] * 2
    assert list(ds.targets) == [2, 0, 1, 2, 0, 1]
    with pytest.raises(UserError, match="'bird'"):
        ShardDataset(tmp_path, ["cat", "dog", "bird"])


def test_opens_lazily_and_reopens_in_a_new_process(tmp_path):
    image_shards(tmp_path)
    ds = ShardDataset(tmp_path, RUN_LABELS)
    assert ds._files == [] and ds._pid is None  # building it opened nothing for reading samples
    ds[0]
    assert ds._pid == os.getpid() and len(ds._files) == 2
    assert ds._files[0].id.get_access_plist().get_cache()[2] == 0  # uncompressed: no chunk cache
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_images, multiprocessing_context="fork")
    seen = torch.cat([x[:, 0, 0, 0] for x, _ in loader])
    assert seen.tolist() == list(range(12))
    ds.close()
    assert ds._files == []


def test_getitems_merges_consecutive_reads_and_matches_getitem(tmp_path):
    image_shards(tmp_path)
    ds = ShardDataset(tmp_path, RUN_LABELS)
    indices = [3, 4, 5, 6, 11, 0, 1]  # crosses the shard boundary at 5
    assert list(ds._runs(indices)) == [(0, 3, 5), (1, 0, 2), (1, 6, 7), (0, 0, 2)]
    batch = ds.__getitems__(indices)
    for index, (x, y) in zip(indices, batch):
        x_single, y_single = ds[index]
        assert np.array_equal(x, x_single) and y == y_single


def test_compressed_shards_keep_a_chunk_cache(tmp_path):
    x = np.arange(10 * 48, dtype=np.uint8).reshape(10, 4, 4, 3)
    write_shard(tmp_path / "z.h5", x, np.arange(10) % 3, RUN_LABELS, compression="gzip", chunk=4)
    ds = ShardDataset(tmp_path, RUN_LABELS)
    assert [h.compressed for h in ds.headers] == [True]
    assert all(np.array_equal(ds[i][0], x[i]) for i in (7, 2, 9))
    assert ds._files[0].id.get_access_plist().get_cache()[2] > 0


def test_block_batch_sampler_covers_every_index_once():
    sampler = BlockBatchSampler(100, batch_size=16, block_size=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 7
    assert sorted(i for b in batches for i in b) == list(range(100))
    assert all(len(b) == 16 for b in batches[:-1])
    assert batches == list(BlockBatchSampler(100, batch_size=16, block_size=4, seed=3))
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_audio_shards_yield_float_waveforms_at_16k(tmp_path):
    pcm = np.full((2, 8000), 16384, np.int16)
    write_shard(tmp_path / "a.h5", pcm, [0, 1], ["yes", "no"], modality="speech", sample_rate=8000)
    ds = ShardDataset(tmp_path / "a.h5", ["no", "yes"])
    x, y = ds[0]
    assert ds.modality == "speech" and y == 1
    assert x.dtype == np.float32 and x.shape == (16000,) and abs(float(np.median(x)) - 0.5) < 1e-3


def test_shard_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="no complete shards"):
        ShardDataset(tmp_path, RUN_LABELS)
    path = write_shard(tmp_path / "s.h5", np.zeros((2, 4, 4, 3), np.uint8), [0, 1], RUN_LABELS, complete=False)
    with pytest.raises(UserError, match="not complete"):
        ShardDataset([path], RUN_LABELS)
    with h5py.File(path, "a") as handle:
        handle.attrs["complete"] = True
        del handle["y"]
    with pytest.raises(UserError) as exc_info:
        ShardDataset([path], RUN_LABELS)
    assert "\n" not in str(exc_info.value) and str(path) in str(exc_info.value)


# --------------------------------------------------------------------------- shards with more labels than the run

SHARD_LABELS = ["cat", "dog", "frog", "bird", "ship"]


def paired_label_shards(tmp_path):
    """Shards of 5 and 7 samples; pixel (0, 0, 0) is the sample number, labels in pairs: cat cat dog dog ..."""
    x = np.zeros((12, 4, 4, 3), np.uint8)
    x[:, 0, 0, 0] = np.arange(12)
    y = (np.arange(12) // 2) % len(SHARD_LABELS)  # cat cat dog dog frog frog bird bird ship ship cat cat
    write_shard(tmp_path / "shard_00000.h5", x[:5], y[:5], SHARD_LABELS)
    write_shard(tmp_path / "shard_00001.h5", x[5:], y[5:], SHARD_LABELS, first_index=5)


def test_shards_with_more_labels_keep_only_the_run_labels(tmp_path, caplog):
    paired_label_shards(tmp_path)
    with caplog.at_level(logging.INFO, logger="gptfl_hpc.data.labels"):
        ds = ShardDataset(tmp_path, ["frog", "cat"])
    assert len(ds) == 6
    assert [int(ds[i][0][0, 0, 0]) for i in range(6)] == [0, 1, 4, 5, 10, 11]
    assert [ds[i][1] for i in range(6)] == [1, 1, 0, 0, 1, 1]
    assert list(ds.targets) == [1, 1, 0, 0, 1, 1]
    selection = ds.selection
    assert (selection.kept, selection.dropped, selection.run_labels, selection.other_labels) == (6, 6, 2, 3)
    assert caplog.messages == [
        f"the shards in {tmp_path}: kept 6 samples of 2 labels, dropped 6 samples of 3 other labels"
    ]
    # Kept neighbours still merge into slice reads; a dropped sample or a shard boundary splits them.
    assert list(ds._runs(range(6))) == [(0, 0, 2), (0, 4, 5), (1, 0, 1), (1, 5, 7)]
    batch = ds.__getitems__([5, 4, 0, 1, 2, 3])
    assert [(int(x[0, 0, 0]), y) for x, y in batch] == [(11, 1), (10, 1), (0, 1), (1, 1), (4, 0), (5, 0)]
    with pytest.raises(IndexError):
        ds[6]


def test_kept_shard_samples_are_read_per_sample_in_workers(tmp_path):
    paired_label_shards(tmp_path)
    ds = ShardDataset(tmp_path, ["frog", "cat"])
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_images, multiprocessing_context="fork")
    pixels, targets = zip(*((x[:, 0, 0, 0], y) for x, y in loader))
    assert torch.cat(pixels).tolist() == [0, 1, 4, 5, 10, 11]
    assert torch.cat(targets).tolist() == [1, 1, 0, 0, 1, 1]


def test_a_run_label_no_shard_has_is_one_line_naming_it(tmp_path):
    paired_label_shards(tmp_path)
    with pytest.raises(UserError) as exc_info:
        ShardDataset(tmp_path, ["frog", "horse"])
    message = str(exc_info.value)
    assert "\n" not in message and "labels.names" in message
    assert message.startswith(f"shard {tmp_path / 'shard_00000.h5'} has no label 'horse'")


def shard_y(path):
    with h5py.File(path, "r") as handle:
        return handle["y"][:]


def test_pretrain_plan_counts_only_samples_of_the_run_labels(tmp_path):
    files = write_digit_shards(tmp_path / "synth", shards=2, limit=300)  # shard label k is "digit {9 - k}"
    run_labels = DIGIT_LABELS[:5]
    config = load_config(write_config(tmp_path / "config.yaml", tmp_path / "run",
                                      labels={"source": "list", "names": run_labels},
                                      pretrain={**pretrain_settings(), "shards": [str(tmp_path / "synth")]}))
    raw_y = np.concatenate([shard_y(path) for path in files])
    kept = np.flatnonzero(raw_y >= 5)  # shard classes 5..9 are digits 4..0
    assert len(kept) == 155  # of the 300 digits train samples written
    plan = inputs.plan_training(config)
    assert plan.labels == tuple(run_labels) and plan.num_samples == 155
    assert plan.micro_steps_per_epoch == 155 // 64 and plan.steps_per_epoch == 2
    selection = plan.label_selection
    assert (selection.kept, selection.dropped, selection.run_labels, selection.other_labels) == (155, 145, 5, 5)
    data = inputs.train_dataset(config, plan)
    assert len(data) == 155 and list(data.targets) == list(9 - raw_y[kept])
    assert [data[i][1] for i in (0, 154)] == [9 - raw_y[kept[0]], 9 - raw_y[kept[154]]]
    test = inputs.test_dataset(config, plan.labels, plan.modality)  # the digits test split loses digits 5..9 too
    assert test.selection is not None and set(test.targets.tolist()) == {0, 1, 2, 3, 4}
    assert len(test) == 180 and (test.selection.kept, test.selection.dropped) == (180, 179)

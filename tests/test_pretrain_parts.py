"""The pretrain stage's parts, without starting DeepSpeed: data order, augmentation, scores, config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from gptfl_hpc.pretrain.augment import batch_seed, mask_time_frequency, random_resized_crop_flip
from gptfl_hpc.pretrain.config import PretrainConfig
from gptfl_hpc.pretrain.engine import deepspeed_config
from gptfl_hpc.models.export import load_model, read_metadata, save_model
from gptfl_hpc.pretrain.evaluate import confusion_matrix, scores
from gptfl_hpc.pretrain.sampler import RankBatchSampler


def rank_batches(num_samples, micro, world, seed, epoch, position=0, block=1):
    """Each rank's micro-batches for one epoch, as lists."""
    per_rank = []
    for rank in range(world):
        sampler = RankBatchSampler(num_samples, micro, rank, world, seed, read_block=block)
        sampler.set_position(epoch, position)
        per_rank.append(list(sampler))
    return per_rank


def test_ranks_split_each_global_batch_and_cover_an_epoch_once():
    batches = rank_batches(num_samples=103, micro=4, world=3, seed=5, epoch=0)
    assert [len(b) for b in batches] == [103 // 12] * 3  # full global batches only
    seen = [i for rank in batches for batch in rank for i in batch]
    assert len(seen) == len(set(seen)) == 8 * 12 and set(seen) <= set(range(103))
    assert all(len(batch) == 4 for rank in batches for batch in rank)


def test_order_is_a_pure_function_of_seed_and_epoch():
    first = rank_batches(64, 4, 2, seed=1, epoch=3)
    assert first == rank_batches(64, 4, 2, seed=1, epoch=3)
    assert first != rank_batches(64, 4, 2, seed=1, epoch=4)
    assert first != rank_batches(64, 4, 2, seed=2, epoch=3)


def test_resuming_at_a_position_yields_the_rest_of_the_epoch():
    whole = rank_batches(80, 5, 2, seed=0, epoch=1)
    rest = rank_batches(80, 5, 2, seed=0, epoch=1, position=3)
    assert rest == [batches[3:] for batches in whole]
    sampler = RankBatchSampler(80, 5, 0, 2, 0)
    sampler.set_position(1, 3)
    assert len(sampler) == len(whole[0]) - 3


def test_read_blocks_keep_consecutive_indices_together():
    (batches,) = rank_batches(64, 8, 1, seed=0, epoch=0, block=4)
    for batch in batches:
        for start in range(0, 8, 4):
            block = batch[start : start + 4]
            assert block == list(range(block[0], block[0] + 4))


def test_crop_flip_is_seeded_per_batch_and_keeps_shape():
    images = torch.rand(6, 3, 16, 16)
    a = random_resized_crop_flip(images, torch.Generator().manual_seed(1), (0.5, 1.0))
    b = random_resized_crop_flip(images, torch.Generator().manual_seed(1), (0.5, 1.0))
    c = random_resized_crop_flip(images, torch.Generator().manual_seed(2), (0.5, 1.0))
    assert a.shape == images.shape and torch.equal(a, b) and not torch.equal(a, c)
    # A crop of a flat image is flat: the crop never leaves the image.
    flat = torch.full((4, 3, 8, 8), 0.25)
    assert torch.allclose(random_resized_crop_flip(flat, torch.Generator().manual_seed(0)), flat)


def test_full_crop_is_the_image_or_its_mirror():
    # Columns of random values, constant down each column: a crop of the full width, of whatever
    # height, is then exactly the image or its mirror.
    columns = torch.rand(32, 1, 1, 8)
    images = columns.expand(32, 1, 8, 8).contiguous()
    out = random_resized_crop_flip(images, torch.Generator().manual_seed(3), (1.0, 1.0))
    same = [torch.allclose(o, i, atol=1e-5) for o, i in zip(out, images)]
    mirror = [torch.allclose(o, i.flip(-1), atol=1e-5) for o, i in zip(out, images)]
    # Aspect ratios >= 1 keep the full width (about half of the draws); flips are a coin toss.
    assert sum(same) + sum(mirror) >= 8 and any(same) and any(mirror)


def test_masks_stay_within_limits_and_real_frames():
    features = torch.ones(16, 50, 12)
    lengths = torch.tensor([50, 10] * 8)
    out = mask_time_frequency(features, lengths, torch.Generator().manual_seed(0), max_time=6, max_freq=3)
    masked = out == 0
    for clip, length in zip(masked, lengths):
        full_rows = clip.all(dim=1)  # frames masked across every bin: the time mask
        full_cols = clip.all(dim=0)  # bins masked across every frame: the frequency mask
        assert full_rows.sum() <= 6 and full_cols.sum() <= 3
        assert not full_rows[int(length):].any()  # the time mask stays inside the real frames
    assert masked.any()
    assert torch.equal(out, mask_time_frequency(features, lengths, torch.Generator().manual_seed(0), 6, 3))


def test_batch_seed_separates_every_part():
    seeds = {batch_seed(0, e, m, r) for e in range(3) for m in range(20) for r in range(4)}
    assert len(seeds) == 3 * 20 * 4 and all(0 <= s < 2**63 for s in seeds)


def test_scores_match_sklearn():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 6, 300)
    predictions = np.where(rng.random(300) < 0.6, targets, rng.integers(0, 7, 300))
    predictions[predictions == 6] = 5
    matrix = confusion_matrix(torch.from_numpy(predictions), torch.from_numpy(targets), 7)
    result = scores(matrix)
    assert result["accuracy"] == pytest.approx(accuracy_score(targets, predictions))
    assert result["macro_f1"] == pytest.approx(f1_score(targets, predictions, average="macro"))


def test_deepspeed_config_holds_the_recipe():
    settings = PretrainConfig(micro_batch_size=8, grad_accum_steps=3, zero_stage=1, warmup_fraction=0.1,
                              precision="fp32", lr=2e-4, weight_decay=0.2, min_lr_ratio=0.05)
    config = deepspeed_config(settings, total_steps=200, world_size=4)
    assert config["train_batch_size"] == 8 * 3 * 4
    assert config["zero_optimization"] == {"stage": 1}
    params = config["optimizer"]["params"]
    assert config["optimizer"]["type"] == "AdamW" and params["torch_adam"] and params["adam_w_mode"]
    assert (params["lr"], params["weight_decay"]) == (2e-4, 0.2)
    schedule = config["scheduler"]["params"]
    assert (schedule["warmup_num_steps"], schedule["total_num_steps"], schedule["cos_min_ratio"]) == (20, 200, 0.05)
    assert "torch_autocast" not in config
    bf16 = deepspeed_config(settings.model_copy(update={"precision": "bf16"}), 200, 4)
    assert bf16["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}


def test_defaults_are_the_synthetic_data_recipe():
    settings = PretrainConfig()
    assert settings.zero_stage == 2 and settings.lr < 1e-3 and settings.weight_decay > 0.01 and settings.augment


def test_exported_files_are_byte_reproducible(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    labels = ["b", "a"]
    config = {"name": "toy", "width": 4}
    files = []
    for k in range(6):
        path = tmp_path / f"model{k}.safetensors"
        save_model(path, model, labels, config)
        files.append(path.read_bytes())
    assert all(data == files[0] for data in files)
    assert read_metadata(tmp_path / "model0.safetensors") == {"labels": labels, "model": config}
    copy = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    load_model(tmp_path / "model0.safetensors", copy, labels)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), copy.state_dict().values()))


@pytest.mark.parametrize("fraction, steps, start", [(0.1, 2, 0.0), (0.0, 50, 1.0)])
def test_warmup_is_at_least_one_step(fraction, steps, start):
    schedule = deepspeed_config(PretrainConfig(warmup_fraction=fraction), steps, 1)["scheduler"]["params"]
    assert schedule["warmup_num_steps"] == 1 and schedule["warmup_min_ratio"] == start

"""Shard files: committed blocks, atomic assembly, identical bytes, verification."""

from __future__ import annotations

import numpy as np
import pytest

from gptfl_hpc.shards.manifest import check_shard, sha256_file, shard_path, write_record
from gptfl_hpc.shards.reader import ShardDataset
from gptfl_hpc.shards.writer import PartialShard, read_arrays, write_shard
from gptfl_hpc.synth.plan import make_plan

LABELS = ["cat", "dog", "bird"]

def block(start: int, stop: int) -> dict[str, np.ndarray]:
    n = stop - start
    rng = np.random.default_rng(start)
    return {
        "x": rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8),
        "y": np.arange(start, stop) % 3,
        "index": np.arange(start, stop),
        "seed": np.arange(start, stop) * 7,
        "guidance": np.linspace(1, 5, n),
        "prompt": np.array([f"a photo of a {LABELS[i % 3]} — №{i}" for i in range(start, stop)]),
    }

def test_partial_shard_commits_blocks_and_stops_at_a_gap(tmp_path):
    partial = PartialShard(tmp_path, 0, 0, 20)
    assert partial.committed() == 0
    assert partial.commit(block(0, 8)) == 8
    assert partial.commit(block(8, 16)) == 16
    with pytest.raises(ValueError, match="must start at sample 16"):
        partial.commit(block(17, 20))
    # A block after a gap (here: a lost 16-18) is not committed work.
    (partial.folder / "000000018-000000020.npz").write_bytes(b"x")
    assert partial.committed() == 16
    loaded = partial.load()
    np.testing.assert_array_equal(loaded["index"], np.arange(16))
    assert loaded["prompt"][9] == "a photo of a cat — №9"

def test_same_samples_give_the_same_bytes(tmp_path):
    arrays = {key: np.concatenate([block(0, 5)[key], block(5, 12)[key]]) for key in block(0, 1)}
    attrs = {"labels": LABELS, "modality": "image", "generator": "stable_diffusion", "shard": 0}
    for name in ("a", "b"):
        write_shard(tmp_path / name / "shard-00000.h5", arrays, attrs)
    assert sha256_file(tmp_path / "a" / "shard-00000.h5") == sha256_file(tmp_path / "b" / "shard-00000.h5")
    back = read_arrays(tmp_path / "a" / "shard-00000.h5")
    for key, value in arrays.items():
        np.testing.assert_array_equal(back[key], value)
    assert not list((tmp_path / "a").glob(".*tmp"))  # no temporary left behind
    dataset = ShardDataset(tmp_path / "a", ["bird", "cat", "dog"])  # matched by name, not position
    x, y = dataset[4]
    np.testing.assert_array_equal(x, arrays["x"][4])
    assert ["bird", "cat", "dog"][y] == LABELS[arrays["y"][4]]

def test_check_shard_names_truncation_and_bit_flips(tmp_path):
    plan = make_plan(run_seed=0, num_labels=3, total=12, samples_per_shard=12, tasks=1, guidance=(1, 5))
    write_shard(shard_path(tmp_path, 0), block(0, 12), {"labels": LABELS, "modality": "image"})
    record = write_record(tmp_path, 0, plan, LABELS)
    assert record["count"] == 12 and record["histogram"] == [4, 4, 4]
    assert check_shard(tmp_path, 0, plan, LABELS) is None
    assert "other labels" in check_shard(tmp_path, 0, plan, ["a", "b", "c"])
    path = shard_path(tmp_path, 0)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert "sha256" in check_shard(tmp_path, 0, plan, LABELS)
    path.write_bytes(bytes(data[: len(data) // 3]))
    assert "sha256" in check_shard(tmp_path, 0, plan, LABELS)
    (tmp_path / "shard-00000.json").unlink()
    assert "no record" in check_shard(tmp_path, 0, plan, LABELS)

"""Atomic writes, the latest pointer, RNG capture, and loading without arbitrary unpickling."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from gptfl_hpc.durable import (
    atomic_path,
    atomic_write_json,
    capture_rng_state,
    load_checkpoint,
    load_tensors,
    read_latest,
    restore_rng_state,
    save_checkpoint,
    save_tensors,
    write_latest,
)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_json(target, {"done": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_latest_pointer(tmp_path):
    assert read_latest(tmp_path) is None
    save_checkpoint(tmp_path / "step_10.pt", {"step": 10})
    write_latest(tmp_path, "step_10.pt")
    assert read_latest(tmp_path) == tmp_path / "step_10.pt"
    write_latest(tmp_path, "step_20.pt")  # points at a checkpoint that never got written
    assert read_latest(tmp_path) is None


def test_rng_roundtrip_through_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state()})
    expected = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == expected


class Evil:
    pass


def test_checkpoint_refuses_arbitrary_objects(tmp_path):
    torch.save({"obj": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_checkpoint(tmp_path / "evil.pt")


def test_safetensors_roundtrip(tmp_path):
    tensors = {"w": torch.arange(6.0).reshape(2, 3).t(), "b": torch.ones(2)}
    save_tensors(tmp_path / "m.safetensors", tensors, metadata={"model": "convnet"})
    loaded = load_tensors(tmp_path / "m.safetensors")
    assert torch.equal(loaded["w"], tensors["w"]) and torch.equal(loaded["b"], tensors["b"])

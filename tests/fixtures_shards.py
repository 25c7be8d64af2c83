"""Tiny synthesis shards and pretrain configs for the pretrain tests.

The learnable image fixture is scikit-learn's digits *train* split written as synthesis shards
(the format of ``gptfl_hpc/shards/``), with the label list in another order than the run's
so that classes must be matched by name. The run's real test split (digits *test*) is then a
held-out set the trained model must score well above chance on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import yaml
from fixtures_data import write_shard

from gptfl_hpc.data.digits import DIGIT_LABELS, load_digits

IMAGE_SIZE = 16


def write_digit_shards(
    synth_dir: Path, shards: int = 2, image_size: int = IMAGE_SIZE, limit: Optional[int] = None
) -> list[Path]:
    """The digits train split as ``shards`` complete shards ``shard-00000.h5`` ... in ``synth_dir``."""
    train = load_digits("train", image_size)
    count = len(train) if limit is None else min(limit, len(train))
    shard_labels = list(reversed(DIGIT_LABELS))  # class k of the shard is run class 9 - k
    order = np.random.default_rng(0).permutation(len(train))[:count]  # plan order mixes the classes
    x = train.samples[order]
    y = len(DIGIT_LABELS) - 1 - train.targets[order]
    synth_dir.mkdir(parents=True, exist_ok=True)
    paths, bounds = [], np.linspace(0, count, shards + 1).astype(int)
    for k, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        paths.append(write_shard(synth_dir / f"shard-{k:05d}.h5", x[start:stop], y[start:stop], shard_labels,
                                 first_index=int(start)))
    return paths


def add_scores(paths: list[Path], scores: np.ndarray) -> list[Path]:
    """Give shards a ``score`` per sample (as ``synth.score`` would), ``scores`` over all their samples in order."""
    import h5py

    start = 0
    for path in paths:
        with h5py.File(path, "a") as handle:
            count = len(handle["y"])
            handle.create_dataset("score", data=np.asarray(scores[start : start + count], dtype=np.float32))
            start += count
    return paths


def write_audio_shard(synth_dir: Path, count: int = 8, rate: int = 16_000) -> Path:
    """One complete shard of short int16 clips with the digit labels (modality ``audio``)."""
    rng = np.random.default_rng(1)
    clips = (rng.uniform(-0.3, 0.3, size=(count, rate // 10)) * 32767).astype(np.int16)
    synth_dir.mkdir(parents=True, exist_ok=True)
    return write_shard(synth_dir / "shard-00000.h5", clips, np.arange(count) % len(DIGIT_LABELS), DIGIT_LABELS,
                       modality="audio", sample_rate=rate)


def write_tone_shard(path: Path, count: int, seed: int, rate: int = 16_000) -> Path:
    """A learnable audio shard: class ``k`` is a 0.1 s tone at ``400 (k + 1)`` Hz in noise (int16)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(DIGIT_LABELS), count)
    t = np.arange(rate // 10) / rate
    phase = rng.uniform(0, 2 * np.pi, (count, 1))
    clips = 0.5 * np.sin(2 * np.pi * 400 * (y[:, None] + 1) * t + phase) + rng.normal(0, 0.05, (count, len(t)))
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (clips * 32767 * 0.5).astype(np.int16)
    return write_shard(path, pcm, y, DIGIT_LABELS, modality="audio", sample_rate=rate)


def pretrain_settings(**overrides: Any) -> dict[str, Any]:
    """A pretrain section that trains the digits fixture in seconds on two CPU cores."""
    settings = {
        "ranks": 2,
        "zero_stage": 2,
        "epochs": 2,
        "micro_batch_size": 32,
        "lr": 0.003,
        "weight_decay": 0.01,
        "warmup_fraction": 0.1,
        "crop_scale": [0.7, 1.0],
        "workers": 0,
        "eval_batch_size": 128,
        "checkpoint_every": 10,
        "log_every": 5,
    }
    settings.update(overrides)
    return settings


def write_config(path: Path, run_dir: Path, pretrain: Optional[dict[str, Any]] = None, **top: Any) -> Path:
    """A whole config for a digits run with a small ConvNet, executor inline."""
    config: dict[str, Any] = {
        "run_dir": str(run_dir),
        "seed": 0,
        "labels": {"source": "list", "names": DIGIT_LABELS},
        "launcher": {"executor": "inline"},
        "data": {"dataset": "digits", "image_size": IMAGE_SIZE},
        "model": {"name": "convnet", "width": 16, "depth": 2},
        "pretrain": pretrain_settings() if pretrain is None else pretrain,
    }
    config.update(top)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


#: Three shards of 12 tiny generated images; a one-epoch pretrain and a one-round federation.
TINY_RUN = """\
run_dir: {run_dir}
seed: 3
labels:
  names: [digit zero, digit one, digit two]
launcher: {launcher}
prompts:
  per_class: 2
data:
  dataset: digits
  image_size: 16
model: {{name: convnet, width: 8, depth: 1}}
synth:
  count: 36
  samples_per_shard: 12
  flush_every: 4
  model: {{kind: stable_diffusion, weights: tiny, steps: 2, batch_size: 4, num_threads: 1}}
pretrain: {{ranks: 1, epochs: 1, micro_batch_size: 8, workers: 0, evaluate: false, checkpoint_every: 100}}
federate: {{rounds: 1, clients_per_round: 2, baseline: false, eval_every: 1, eval_batch_size: 64}}
"""


def tiny_run_yaml(run_dir: Path, launcher: str = "{executor: inline}") -> str:
    """The YAML of a whole tiny run in ``run_dir``; ``launcher`` is its launcher section (flow style)."""
    return TINY_RUN.format(run_dir=run_dir, launcher=launcher)


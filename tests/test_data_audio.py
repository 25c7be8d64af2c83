"""Log-mel features and the padding collate."""

from __future__ import annotations

import numpy as np
import torch

from gptfl_hpc.data.audio_features import LogMel, collate_padded
from gptfl_hpc.data.waveforms import pcm_to_float, to_mono_rate


def test_logmel_shape_and_normalisation():
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 16_000).astype(np.float32)
    features = LogMel()(wave)
    assert features.shape == (1 + 16_000 // 160, 128)
    assert features.dtype == torch.float32
    assert abs(float(features.mean())) < 1e-4 and abs(float(features.std()) - 1) < 1e-3
    assert torch.equal(LogMel()(torch.from_numpy(wave)), features)  # numpy and tensor input agree


def test_logmel_pads_clips_shorter_than_a_window():
    features = LogMel()(np.zeros(300, np.float32) + 0.1)
    assert features.shape[1] == 128 and torch.isfinite(features).all()


def test_collate_pads_to_the_longest_and_returns_lengths():
    batch = [(torch.ones(3, 4), 1), (torch.ones(5, 4), 0)]
    x, y, lengths = collate_padded(batch)
    assert x.shape == (2, 5, 4) and y.tolist() == [1, 0] and lengths.tolist() == [3, 5]
    assert x[0, 3:].abs().sum() == 0 and x[1].sum() == 20
    waves, _, wave_lengths = collate_padded([(np.ones(7, np.float32), 0), (np.ones(2, np.float32), 0)])
    assert waves.shape == (2, 7) and wave_lengths.tolist() == [7, 2]


def test_waveform_conversions():
    assert pcm_to_float(np.array([-32768, 16384], np.int16)).tolist() == [-1.0, 0.5]
    assert to_mono_rate(np.zeros(44_100, np.float32), 44_100).shape == (16_000,)

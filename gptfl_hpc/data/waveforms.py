"""Read WAV files into the shared audio format: float32 mono waveform at 16 kHz.

Decoding goes through soundfile (libsndfile); torchaudio is used only for resampling, which
needs no file I/O backend.
"""

from __future__ import annotations

from pathlib import Path

from typing import BinaryIO, Union

import numpy as np
import soundfile

from gptfl_hpc.data.base import SAMPLE_RATE


def read_wav(path: Union[Path, BinaryIO], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode ``path``, mix to mono, resample to ``sample_rate``; float32 in [-1, 1]."""
    samples, rate = soundfile.read(path if hasattr(path, "read") else str(path), dtype="float32", always_2d=True)
    return to_mono_rate(samples.mean(axis=1), rate, sample_rate)


def to_mono_rate(waveform: np.ndarray, rate: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A 1-D waveform resampled from ``rate`` to ``sample_rate`` (float32)."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if rate == sample_rate:
        return waveform
    import torch  # only here, so the readers load without torch
    import torchaudio

    resampled = torchaudio.functional.resample(torch.from_numpy(waveform), int(rate), int(sample_rate))
    return resampled.numpy()


def pcm_to_float(samples: np.ndarray) -> np.ndarray:
    """Integer PCM (int16/int32) to float32 in [-1, 1); float input is returned as float32."""
    if np.issubdtype(samples.dtype, np.integer):
        return samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
    return samples.astype(np.float32, copy=False)

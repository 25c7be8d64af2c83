"""Audio features as in FedAudio: 128-bin log-mel at 16 kHz, normalised per utterance.

``LogMel`` turns a float32 waveform (the shared audio sample format) into a ``frames x n_mels``
float32 tensor: power mel spectrogram (n_fft 1024, Hann window, hop 160 = 10 ms), decibels,
then ``(x - mean) / std`` over the whole utterance. Real and synthetic audio go through the same
transform. ``collate_padded`` pads a batch of such features to its longest member and returns
the true lengths, which ``AudioConvGRU`` uses to pool over real frames only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torchaudio

from gptfl_hpc.data.base import SAMPLE_RATE


class LogMel:
    """Waveform ``T`` (numpy or tensor) -> normalised log-mel ``frames x n_mels`` tensor."""

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_mels: int = 128,
        n_fft: int = 1024,
        hop_length: int = 160,
        normalize: bool = True,
    ):
        self.n_fft = n_fft
        self.normalize = normalize
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            window_fn=torch.hann_window,
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power")

    def __call__(self, waveform: "np.ndarray | torch.Tensor") -> torch.Tensor:
        wave = torch.as_tensor(waveform).float().reshape(-1)
        if wave.numel() < self.n_fft:
            # The centred STFT reflects n_fft/2 samples at each end; very short clips need padding.
            wave = torch.nn.functional.pad(wave, (0, self.n_fft - wave.numel()))
        with torch.no_grad():
            features = self.to_db(self.mel(wave)).transpose(0, 1).contiguous()  # frames x n_mels
        if self.normalize:
            features = (features - features.mean()) / (features.std() + 1e-5)
        return features


def collate_padded(batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[(T_i x F features, y), ...]`` -> (``B x T_max x F`` zero-padded, targets, lengths ``T_i``).

    Also accepts 1-D waveforms (``T_i``), padded to ``B x T_max``.
    """
    items = [torch.as_tensor(x) for x, _ in batch]
    lengths = torch.tensor([item.shape[0] for item in items], dtype=torch.int64)
    padded = torch.zeros((len(items), int(lengths.max())) + tuple(items[0].shape[1:]), dtype=items[0].dtype)
    for row, item in enumerate(items):
        padded[row, : item.shape[0]] = item
    targets = torch.tensor([y for _, y in batch], dtype=torch.int64)
    return padded, targets, lengths

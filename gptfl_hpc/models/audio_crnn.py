"""FedAudio's conv + bidirectional-GRU model on log-mel features (``audio_conv_rnn``).

Input ``B x T x F`` (frames x mel bins, F = 128). Two Conv1d blocks over time (kernel 3, the
mel bins as channels: F -> 64 -> 128, each ReLU then MaxPool1d(2)), dropout, one bidirectional
GRU (128 -> 2 x 128), mean over time, then Linear(256, 128) -> ReLU -> Linear(128, classes).
With F = 128: 285,028 parameters for 36 classes (FedAudio's Speech Commands: 35 words +
silence), 286,834 for 50 (ESC-50). Parameter names follow FedAudio (``conv``, ``rnn``,
``pred_layer``), so its state dicts load as they are.

Given ``lengths`` (true frame counts of a padded batch), padding is masked after each block,
the GRU runs on packed sequences and the mean covers real steps only: a clip's prediction does
not depend on how much padding its batch needed.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class AudioConvGRU(nn.Module):
    def __init__(self, num_classes: int, n_mels: int = 128, hidden_size: int = 128, dropout: float = 0.1):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(n_mels, hidden_size // 2, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(hidden_size // 2, hidden_size, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Dropout(dropout),
        )
        self.rnn = nn.GRU(hidden_size, hidden_size, num_layers=1, batch_first=True, bidirectional=True)
        self.pred_layer = nn.Sequential(
            nn.Linear(2 * hidden_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, num_classes),
        )

    def forward(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = features.float().transpose(1, 2)  # B x F x T: mel bins are the conv channels
        if lengths is None:
            x, _ = self.rnn(self.conv(x).transpose(1, 2))
            return self.pred_layer(x.mean(dim=1))
        steps = lengths.to(x.device)
        x = _mask_time(x, steps)
        for layer in self.conv:
            x = layer(x)
            if isinstance(layer, nn.MaxPool1d):
                steps = steps // 2
                x = _mask_time(x, steps)
        steps = steps.clamp(min=1, max=x.shape[2])
        packed = pack_padded_sequence(x.transpose(1, 2), steps.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=x.shape[2])
        pooled = out.sum(dim=1) / steps.unsqueeze(1).to(out.dtype)
        return self.pred_layer(pooled)


def _mask_time(x: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Zero every time step at or beyond ``steps`` (``x`` is ``B x C x T``)."""
    keep = torch.arange(x.shape[2], device=x.device)[None, :] < steps[:, None]
    return x * keep.unsqueeze(1).to(x.dtype)

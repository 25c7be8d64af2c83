"""The demo generator's training recipe as numbers (torch-free, so the command line reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 4000  # denoiser (UNet + text encoder) steps
    vae_steps: int = 400
    glyphs: int = 20000  # rendered training images, classes in turn
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    prompt_dropout: float = 0.1
    ema_decay: float = 0.995
    seed: int = 0
    threads: int = 2  # pinned: CPU reductions split by thread count
    log_every: int = 100

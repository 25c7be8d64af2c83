"""The ``pretrain`` config section: centralized DeepSpeed training on the synthesis shards.

Defaults are the synthetic-data recipe of GPT-FL (paper §3.3): synthetic samples are patterned and
over-fit easily, so AdamW runs with a weight decay ten times torch's default (0.1 instead of 0.01),
a learning rate ten times below Adam's usual 1e-3, a short linear warmup, a cosine decay, and
augmentation (random resized crops and flips for images, time and frequency masks for audio).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from gptfl_hpc.identity import sha256_json
from gptfl_hpc.schema import Section, added, operational
from gptfl_hpc.stage_reads import unread_by, without_keys

#: ZeRO stage 3 also partitions the parameters themselves; see ``_check_zero_stage``.
SUPPORTED_ZERO_STAGES = (0, 1, 2)


#: Config parts pretraining never reads: runs that differ only in these share one pretrained model.
UNREAD_BY_PRETRAIN = unread_by("pretrain")


def pretrain_identity(science: dict[str, Any]) -> str:
    """sha256 of what decides the pretrained model: a config's science part (``Config.science()``)
    without the keys pretraining never reads."""
    return sha256_json(without_keys(science, UNREAD_BY_PRETRAIN))


class PretrainConfig(Section):
    """Centralized training on the synthesis shards."""

    shards: Optional[list[Path]] = Field(
        None, description="shard directories or .h5 files; null = RUN/synth (list it too to mix runs)"
    )
    ranks: int = Field(1, ge=1, description="data-parallel ranks: one per GPU, or one per CPU core")
    zero_stage: int = Field(2, description="DeepSpeed ZeRO stage 0, 1 or 2")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto = bf16 on GPU, fp32 on CPU")
    epochs: int = Field(30, ge=1)
    micro_batch_size: int = Field(64, ge=1, description="samples per rank per forward pass")
    grad_accum_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(1e-4, gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.1, ge=0, description="decoupled (AdamW) weight decay")
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="share of all steps with a linear warmup")
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="the cosine ends at lr x this")
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 = no clipping")
    augment: bool = True
    crop_scale: tuple[float, float] = Field((0.5, 1.0), description="images: area share of the random crop")
    time_mask: int = Field(20, ge=0, description="audio: widest masked run of frames")
    freq_mask: int = Field(16, ge=0, description="audio: widest masked run of mel bins")
    read_block: int = Field(1, ge=1, description="consecutive shard samples per random read (1 = full shuffle)")
    workers: int = operational(4, ge=0, description="DataLoader worker processes per rank")
    evaluate: bool = Field(True, description="accuracy and macro-F1 on the real test split each epoch")
    eval_batch_size: int = Field(256, ge=1)
    checkpoint_every: int = operational(500, ge=1, description="optimizer steps between checkpoints")
    keep_checkpoints: int = operational(2, ge=1, description="newest checkpoints kept on disk")
    log_every: int = Field(50, ge=1, description="optimizer steps between metrics lines")
    min_score: Optional[float] = added(
        None, description="train only on samples whose synth.score is at least this (shards made with synth.score)"
    )
    keep_fraction: Optional[float] = added(
        None, gt=0, le=1, description="train only on the best-scoring share of each class: ceil(share x class size) "
        "samples, ties to the earlier sample (shards made with synth.score)"
    )

    @field_validator("zero_stage")
    @classmethod
    def _check_zero_stage(cls, value: int) -> int:
        if value == 3:
            # Stage 3 shards the weights across ranks: evaluation and export would need every
            # parameter gathered first, and the downstream models (at most ResNet50's 25M
            # parameters) fit on one device, so it would only add communication.
            raise ValueError(
                "pretrain.zero_stage 3 partitions the model weights, which this trainer neither needs "
                "(the downstream models fit on one device) nor gathers for evaluation and export; use 0, 1 or 2"
            )
        if value not in SUPPORTED_ZERO_STAGES:
            raise ValueError(f"pretrain.zero_stage {value} is not a ZeRO stage; use 0, 1 or 2")
        return value

    @field_validator("shards")
    @classmethod
    def _check_shards(cls, value: Optional[list[Path]]) -> Optional[list[Path]]:
        if value is not None and not value:
            raise ValueError("pretrain.shards is an empty list; list shard directories or files, or null for RUN/synth")
        return value

    @model_validator(mode="after")
    def _check_ranges(self) -> "PretrainConfig":
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"pretrain.crop_scale [{low}, {high}] must satisfy 0 < low <= high <= 1")
        for beta in self.betas:
            if not 0 <= beta < 1:
                raise ValueError(f"pretrain.betas {list(self.betas)} must each lie in [0, 1)")
        if self.min_score is not None and self.keep_fraction is not None:
            raise ValueError(
                f"pretrain.min_score {self.min_score} and pretrain.keep_fraction {self.keep_fraction} are both set; "
                "keep samples by one rule: set the other to null"
            )
        return self

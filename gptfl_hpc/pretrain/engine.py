"""The DeepSpeed engine for the pretrain stage: environment, config dict, construction.

Facts measured on these machines that shape this module:

* On CPU, ``DS_ACCELERATOR=cpu`` must be in the environment before ``deepspeed`` is imported (it
  picks its accelerator at import); collectives go through gloo.
* The optimizer is torch's own AdamW (``"torch_adam": true``): no DeepSpeed op is compiled, the
  same code runs on CPU and GPU, and a resumed run updates bit-identically on CPU.
* DeepSpeed builds a shared-memory C++ kernel when it starts its CPU communication backend (about
  45 s with a compiler, a failure without one). It serves only ``inference_all_reduce``, never
  training, so it is switched off; any op that is still built lands in the run's ``.cache/``.
* bf16 is torch autocast (DeepSpeed's ``torch_autocast``) with fp32 master weights, not DeepSpeed's
  bf16 mode, which casts the module to bf16 and breaks models that cast their input to float.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gptfl_hpc.pretrain.config import PretrainConfig

log = logging.getLogger(__name__)

#: Never reached: DeepSpeed's own step log stays quiet, the stage writes its own metrics.
_QUIET_STEPS = 2**31 - 1


def configure_environment(cache_dir: Path) -> None:
    """Set DeepSpeed's environment; call before the first ``import deepspeed`` in a process."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(cache_dir) / "torch_extensions"))


def use_bf16(settings: PretrainConfig) -> bool:
    return settings.precision == "bf16" or (settings.precision == "auto" and torch.cuda.is_available())


def deepspeed_config(settings: PretrainConfig, total_steps: int, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config dict of a run: batch shape, AdamW, warmup + cosine, ZeRO, precision."""
    # DeepSpeed wants at least one warmup step; with no warmup asked for it starts at full rate.
    warmup = max(1, int(round(settings.warmup_fraction * total_steps)))
    warmup_start = 0.0 if settings.warmup_fraction > 0 else 1.0
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": settings.micro_batch_size,
        "gradient_accumulation_steps": settings.grad_accum_steps,
        "train_batch_size": settings.micro_batch_size * settings.grad_accum_steps * world_size,
        "gradient_clipping": settings.grad_clip,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": settings.lr,
                "betas": list(settings.betas),
                "eps": settings.eps,
                "weight_decay": settings.weight_decay,
                "torch_adam": True,
                "adam_w_mode": True,
            },
        },
        "scheduler": {
            "type": "WarmupCosineLR",
            "params": {
                "total_num_steps": max(total_steps, 1),
                "warmup_num_steps": warmup,
                "warmup_min_ratio": warmup_start,
                "cos_min_ratio": settings.min_lr_ratio,
                "warmup_type": "linear",
            },
        },
        "zero_optimization": {"stage": settings.zero_stage},
        "steps_per_print": _QUIET_STEPS,
        "wall_clock_breakdown": False,
        "dump_state": False,
    }
    if use_bf16(settings):
        config["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    return config


def create_engine(model: nn.Module, config: dict[str, Any]) -> Any:
    """``deepspeed.initialize`` on the already-initialised process group; returns the engine."""
    import deepspeed

    from gptfl_hpc.pretrain.checkpoints import DurableCheckpointEngine

    # Looked up by name when the communication backend starts; see the module docstring.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    # DeepSpeed caches its groups per process, and torch's destroy_process_group does not clear
    # them: a second pretraining in this process (an inline sweep) would meet the destroyed ones.
    from deepspeed.utils import groups

    groups._release_process_group_references()
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), config=config, dist_init_required=False
    )
    engine.checkpoint_engine = DurableCheckpointEngine(engine._config)
    return engine


def autocast(engine: Any):
    """The engine's autocast context, for forward passes outside ``engine(...)`` (evaluation)."""
    enabled = bool(engine.torch_autocast_enabled())
    device_type = "cuda" if engine.device.type == "cuda" else "cpu"
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=enabled)

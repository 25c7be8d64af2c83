"""What every generator shares: device and dtype choice, threads, per-sample RNG, output checks."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators.base import SampleSpec
from gptfl_hpc.synth.generators.config import GeneratorConfig
from gptfl_hpc.synth.generators.guidance import GuidanceScales

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(config: GeneratorConfig) -> torch.device:
    """``auto`` is the GPU when there is one; asking for CUDA without one is an error, not a fallback."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "synth.model.device is cuda but no CUDA device is visible; set synth.model.device=auto or cpu"
        )
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def resolve_dtype(config: GeneratorConfig, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on GPU (fp16's range overflows in some VAEs), fp32 on CPU."""
    if config.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[config.dtype]


def apply_threads(config: GeneratorConfig) -> None:
    """Pin torch's intra-op threads: CPU reductions split by thread count, so bit-identical CPU
    output across runs needs the same count."""
    if config.num_threads is not None and torch.get_num_threads() != config.num_threads:
        torch.set_num_threads(config.num_threads)


def sample_generators(specs: Sequence[SampleSpec]) -> list[torch.Generator]:
    """One CPU generator per sample, seeded from its spec: its noise never depends on its batch
    and is the same on every device (CPU noise is then moved to the GPU by the pipelines)."""
    return [torch.Generator(device="cpu").manual_seed(spec.seed) for spec in specs]


@contextmanager
def global_rng_seeded(seed: int, device: torch.device) -> Iterator[None]:
    """The block runs with torch's global RNG of the CPU and of ``device`` seeded with ``seed``; the
    caller's streams are restored afterwards. Only those two are seeded: ``torch.manual_seed`` also
    queues a seed, with a stack trace, for every accelerator backend not started yet (0.3 ms a
    call on a CPU host, a visible share of a small VITS's time per sample)."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        for index in devices:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def flag(flagged: list[tuple[int, str]], spec: SampleSpec, problem: str) -> None:
    flagged.append((spec.index, problem))
    logger.warning("sample %d (label %d, seed %d): %s", spec.index, spec.label, spec.seed, problem)


def nan_rows(values: torch.Tensor) -> torch.Tensor:
    """A boolean per sample: does it contain any NaN or infinity?"""
    return ~torch.isfinite(values.reshape(values.shape[0], -1)).all(dim=1)


def to_pcm16(
    waveforms: Sequence[torch.Tensor], length: int, specs: Sequence[SampleSpec], flagged: list[tuple[int, str]]
) -> np.ndarray:
    """Float waveforms in [-1, 1] of any length -> int16 PCM ``(N, length)``: trimmed, or padded
    with silence. Non-finite samples are flagged and written as silence."""
    out = np.zeros((len(waveforms), length), dtype=np.int16)
    for row, (wave, spec) in enumerate(zip(waveforms, specs)):
        wave = wave.detach().reshape(-1)[:length].to(device="cpu", dtype=torch.float32)
        if not torch.isfinite(wave).all():
            flag(flagged, spec, "non-finite audio (NaN or inf); written as silence")
            continue
        pcm = torch.round(wave.clamp(-1.0, 1.0) * 32767.0).to(torch.int16).numpy()
        out[row, : pcm.shape[0]] = pcm
        if not pcm.any():
            flag(flagged, spec, "silent audio (all zeros)")
    return out


def use_dpm_solver(pipeline: Any, device: torch.device) -> Any:
    """A diffusers pipeline with DPM-Solver++ (good samples in 20-25 steps), quiet, on ``device``."""
    from diffusers import DPMSolverMultistepScheduler

    pipeline.scheduler = DPMSolverMultistepScheduler.from_config(pipeline.scheduler.config, algorithm_type="dpmsolver++")
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def diffusion_arguments(config: GeneratorConfig, specs: Sequence[SampleSpec]) -> dict[str, Any]:
    """The per-batch arguments every diffusion pipeline call shares: prompts, per-sample guidance
    and per-sample seeded generators."""
    negative = [config.negative_prompt] * len(specs) if config.negative_prompt else None
    return {
        "prompt": [spec.prompt for spec in specs],
        "negative_prompt": negative,
        "num_inference_steps": config.steps,
        "guidance_scale": GuidanceScales([spec.guidance for spec in specs]),
        "generator": sample_generators(specs),
        "output_type": "pt",
    }



def compile_denoiser(pipeline: Any, name: str, config: GeneratorConfig, device: torch.device) -> None:
    """``synth.model.compile``: ``torch.compile`` the pipeline's denoiser (its UNet or transformer),
    the module every step runs; channels_last first on CUDA, where convolutions prefer it."""
    if not config.compile:
        return
    module = getattr(pipeline, name)
    if device.type == "cuda" and name == "unet":
        module.to(memory_format=torch.channels_last)
    module.compile(dynamic=False)  # in place: the pipeline keeps its module and its config

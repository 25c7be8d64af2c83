"""DeepSpeed's training step over a plain PyTorch loop on the same model and data (goal on CPU: <= 1.10).

Both loops do the stage's work per step on the same pre-built uint8 batches: move to the device,
normalise, random-resized-crop + flip, forward, cross-entropy, backward, gradient clipping, AdamW
and the warmup + cosine schedule. The plain loop uses ``torch.optim.AdamW`` and ``LambdaLR``; the
DeepSpeed loop is the stage's own engine (``pretrain.engine``) for each ZeRO stage asked for, in a
one-rank world (gloo on CPU, NCCL on GPU). Repetitions alternate between the loops so that drift
in machine load hits both alike; the ratio compares median step times of one run.

Usage: ``python benchmarks/bench_pretrain.py [--steps 30] [--repeats 5] [--zero 0 2] [--batch 64]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from gptfl_hpc.models.convnet import ConvNet
from gptfl_hpc.pretrain.augment import batch_seed
from gptfl_hpc.pretrain.batches import BatchPreparer
from gptfl_hpc.pretrain.config import PretrainConfig
from gptfl_hpc.pretrain.engine import configure_environment, create_engine, deepspeed_config, use_bf16
from gptfl_hpc.ranks import rank_device, run_on_ranks

CACHE = Path(__file__).resolve().parents[1] / ".cache"


def make_batches(count: int, batch: int, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        (torch.randint(0, 256, (batch, 3, size, size), generator=generator, dtype=torch.uint8),
         torch.randint(0, 10, (batch,), generator=generator))
        for _ in range(count)
    ]


def plain_step_fn(model: torch.nn.Module, settings: PretrainConfig, total_steps: int, bf16: bool) -> Callable:
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=settings.betas, eps=settings.eps,
                                  weight_decay=settings.weight_decay)
    warmup = max(1, round(settings.warmup_fraction * total_steps))

    def ratio(step: int) -> float:
        if step < warmup:
            return step / warmup
        progress = min(1.0, (step - warmup + 1) / max(1, total_steps - warmup))
        return settings.min_lr_ratio + (1 - settings.min_lr_ratio) * (1 + math.cos(math.pi * progress)) / 2

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, ratio)
    device_type = "cuda" if torch.cuda.is_available() else "cpu"

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        schedule.step()
        return loss

    return step


def deepspeed_step_fn(model: torch.nn.Module, settings: PretrainConfig, total_steps: int) -> Callable:
    engine = create_engine(model, deepspeed_config(settings, total_steps, world_size=1))

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(engine(x).float(), y)
        engine.backward(loss)
        engine.step()
        return loss

    return step


def time_steps(step: Callable, prepare: BatchPreparer, batches: list, start: int) -> float:
    """Seconds per step over ``batches`` (the loss is read at the end, so the device finished)."""
    began = time.perf_counter()
    loss = None
    for k, raw in enumerate(batches):
        (x,), y = prepare(raw, batch_seed(0, 0, start + k, 0))
        loss = step(x, y)
    float(loss.detach())
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - began) / len(batches)


def benchmark(rank: int, world_size: int, args: argparse.Namespace) -> dict[str, Any]:
    settings = PretrainConfig(micro_batch_size=args.batch, zero_stage=0, precision=args.precision)
    device = rank_device()
    batches = make_batches(args.steps, args.batch, args.image_size)
    prepare = BatchPreparer("image", device, args.image_size, settings)
    total_steps = (args.repeats + 1) * args.steps
    bf16 = use_bf16(settings)

    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        return ConvNet(10, width=args.width, depth=args.depth, image_size=args.image_size).to(device)

    loops = {"plain": plain_step_fn(model(), settings, total_steps, bf16)}
    for stage in args.zero:
        loops[f"deepspeed-zero{stage}"] = deepspeed_step_fn(
            model(), settings.model_copy(update={"zero_stage": stage}), total_steps
        )
    for name, step in loops.items():  # warm up: allocator, autotuning, first-call costs
        time_steps(step, prepare, batches[: min(5, len(batches))], start=0)
    times: dict[str, list[float]] = {name: [] for name in loops}
    for repeat in range(args.repeats):
        for name, step in loops.items():
            times[name].append(time_steps(step, prepare, batches, start=repeat * args.steps))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "precision": "bf16" if bf16 else "fp32",
        "threads": torch.get_num_threads(),
        "model": f"ConvNet width {args.width} depth {args.depth}, {args.image_size}x{args.image_size}",
        "batch": args.batch,
        "step_ms": {name: round(1000 * value, 2) for name, value in medians.items()},
        "ratio_to_plain": {
            name: round(value / medians["plain"], 3) for name, value in medians.items() if name != "plain"
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="steps per timed repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--zero", type=int, nargs="+", default=[0, 2], help="ZeRO stages to time")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    args = parser.parse_args()
    configure_environment(CACHE)
    os.environ.setdefault("LOCAL_RANK", "0")
    result = run_on_ranks(benchmark, 1, (args,))
    print(json.dumps(result, indent=2))
    for name, ratio in result["ratio_to_plain"].items():
        print(f"{name}: {result['step_ms'][name]:.2f} ms/step vs plain {result['step_ms']['plain']:.2f} ms/step "
              f"-> ratio {ratio:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    main()

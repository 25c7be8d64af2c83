#!/usr/bin/env python
"""Overhead of the whole synthesis path over raw pipeline calls, measured side by side.

    .venv/bin/python benchmarks/bench_synth.py [--kind all] [--samples 192] [--steps 25] [--repeats 3]

Both sides use the same loaded-from-disk weights of one generator family (``--kind``, each
registered family with ``all``: a tiny random model of the real classes, or ``--weights DIR`` for
real ones), the same prompts, seeds, guidance, batch size and steps:

* raw: load the pipeline, then the generator's bare pipeline call(s) per batch (``raw_call``),
  nothing else -- what a bare generation script does;
* path: ``run_task`` -- prepare the run, load the pipeline, plan, generate, convert, commit blocks,
  assemble HDF5 shards, checksum, record and manifest.

Runs alternate (raw, path, raw, path, ...) so drift in machine load hits both; the ratio of the
medians is printed. Goal: path / raw <= 1.03.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gptfl_hpc.config import validate_config
from gptfl_hpc.prompts.stage import run as make_prompts
from gptfl_hpc.synth.generators import load_generator
from gptfl_hpc.synth.generators.base import DISTILLED, EMBEDDED
from gptfl_hpc.synth.generators.registry import GENERATORS
from gptfl_hpc.synth.stage import prepare, run_task
from gptfl_hpc.synth.tiny import VOCODER_SUBDIR, ensure_tiny

#: The private dataset and model a family's samples are for (speech and sound need audio ones).
DATA = {"image": {"image_size": 32}, "speech": {"dataset": "speech_commands"}, "audio": {"dataset": "esc50"}}
AUDIO_SECONDS = 1.0  # every tiny audio model can make 1 s


def make_config(run_dir: Path, kind: str, weights: Path, args: argparse.Namespace):
    generator = GENERATORS[kind]
    model = {"kind": kind, "weights": str(weights), "steps": args.steps, "batch_size": args.batch,
             "num_threads": args.threads}
    if generator.modality == "image":
        model["resolution"] = args.resolution
    else:
        model["seconds"] = AUDIO_SECONDS
    if generator.needs_vocoder and args.weights is None:
        model["vocoder"] = str(weights / VOCODER_SUBDIR)  # the tiny SpeechT5 keeps its HiFi-GAN inside
    guidance = [1.0, 5.0]
    if generator.guidance_mode(None if args.weights is None else weights) in (DISTILLED, EMBEDDED):
        guidance = None  # the model's own value
    return validate_config(
        {
            "run_dir": str(run_dir),
            "seed": 0,
            "labels": {"names": [f"digit {n}" for n in ("zero", "one", "two", "three", "four",
                                                       "five", "six", "seven", "eight", "nine")]},
            "launcher": {"executor": "inline"},
            "data": DATA[generator.modality],
            "model": {"name": "convnet" if generator.modality == "image" else "audio_crnn"},
            "synth": {
                "count": args.samples,
                "samples_per_shard": args.samples // 2,
                "flush_every": 64,
                "guidance": guidance,
                "model": model,
            },
        }
    )


def time_raw(config) -> float:
    """What a bare script does: load the pipeline, call it once per batch."""
    job = prepare(config)
    batches = [
        job.plan.specs(start, min(start + config.synth.model.batch_size, job.plan.total), job.prompts)
        for start in range(0, job.plan.total, config.synth.model.batch_size)
    ]
    began = time.perf_counter()
    generator = load_generator(config.synth.model, config.data.image_size, job.weights_dir, job.vocoder_dir)
    for specs in batches:
        generator.raw_call(specs)
    return time.perf_counter() - began


def time_path(config) -> float:
    began = time.perf_counter()
    result = run_task(config, 0)
    elapsed = time.perf_counter() - began
    assert result["samples"] == prepare(config).plan.total, result
    return elapsed


def bench(kind: str, root: Path, args: argparse.Namespace) -> float:
    """The path/raw ratio of one family; prints its timings."""
    weights = args.weights or ensure_tiny(kind, root / f"weights-{kind}")
    raw_config = make_config(root / f"raw-{kind}", kind, weights, args)
    make_prompts(raw_config)
    raw, path = [], []
    for repeat in range(args.repeats):
        raw.append(time_raw(raw_config))
        config = make_config(root / f"path-{kind}-{repeat}", kind, weights, args)
        make_prompts(config)
        path.append(time_path(config))
        print(f"{kind} repeat {repeat}: raw {raw[-1]:.2f} s, path {path[-1]:.2f} s", flush=True)
    raw_s, path_s = statistics.median(raw), statistics.median(path)
    print(f"{kind}: samples {args.samples}, batch {args.batch}, steps {args.steps}, threads {args.threads}")
    print(f"{kind}: raw pipeline calls: {raw_s:.2f} s ({args.samples / raw_s:.1f} samples/s)")
    print(f"{kind}: whole synthesis path: {path_s:.2f} s ({args.samples / path_s:.1f} samples/s)")
    print(f"{kind}: overhead ratio path/raw: {path_s / raw_s:.3f} (goal <= 1.03)", flush=True)
    return path_s / raw_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="stable_diffusion", choices=["all", *GENERATORS])
    parser.add_argument("--samples", type=int, default=200, help="rounded to whole classes (10 labels)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=32, help="image generation side")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--weights", type=Path, help="a weights directory of --kind (default: tiny)")
    args = parser.parse_args()
    kinds = list(GENERATORS) if args.kind == "all" else [args.kind]
    if args.weights is not None and len(kinds) > 1:
        parser.error("--weights needs one --kind")

    root = Path(tempfile.mkdtemp(prefix="bench-synth-"))
    try:
        ratios = {kind: bench(kind, root, args) for kind in kinds}
        print("path/raw per family: " + ", ".join(f"{kind} {ratio:.3f}" for kind, ratio in ratios.items()))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

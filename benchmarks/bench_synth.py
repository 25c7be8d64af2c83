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
medians is printed, of wall-clock time and of this process's CPU time (steadier on a shared
machine with ``--threads 1``; it leaves out time spent waiting for the disk). Goal: path / raw <= 1.03.

``--batch-invariant`` runs the path with ``synth.model.batch_invariant`` (one sample per pipeline
call) while raw keeps its batched calls: the ratio is then what making each sample alone costs.
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


def make_config(run_dir: Path, kind: str, weights: Path, args: argparse.Namespace, batch_invariant: bool = False):
    generator = GENERATORS[kind]
    model = {"kind": kind, "weights": str(weights), "steps": args.steps, "batch_size": args.batch,
             "num_threads": args.threads, "batch_invariant": batch_invariant}
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


def timed(work) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def time_raw(config) -> tuple[float, float]:
    """What a bare script does: load the pipeline, call it once per batch."""
    job = prepare(config)
    batches = [
        job.plan.specs(start, min(start + config.synth.model.batch_size, job.plan.total), job.prompts)
        for start in range(0, job.plan.total, config.synth.model.batch_size)
    ]

    def calls() -> None:
        generator = load_generator(config.synth.model, config.data.image_size, job.weights_dir, job.vocoder_dir)
        for specs in batches:
            generator.raw_call(specs)

    return timed(calls)


def time_path(config) -> tuple[float, float]:
    results = []
    elapsed = timed(lambda: results.append(run_task(config, 0)))
    assert results[0]["samples"] == prepare(config).plan.total, results
    return elapsed


def bench(kind: str, root: Path, args: argparse.Namespace) -> tuple[float, float]:
    """The path/raw ratios (wall, cpu) of one family; prints its timings."""
    weights = args.weights or ensure_tiny(kind, root / f"weights-{kind}")
    raw_config = make_config(root / f"raw-{kind}", kind, weights, args)
    make_prompts(raw_config)
    raw, path = [], []
    for repeat in range(args.repeats):
        raw.append(time_raw(raw_config))
        config = make_config(root / f"path-{kind}-{repeat}", kind, weights, args, args.batch_invariant)
        make_prompts(config)
        path.append(time_path(config))
        print(f"{kind} repeat {repeat}: raw {raw[-1][0]:.2f} s (cpu {raw[-1][1]:.2f}), "
              f"path {path[-1][0]:.2f} s (cpu {path[-1][1]:.2f})", flush=True)
    (raw_s, raw_cpu), (path_s, path_cpu) = ([statistics.median(t[i] for t in runs) for i in (0, 1)]
                                            for runs in (raw, path))
    mode = ", path batch_invariant" if args.batch_invariant else ""
    print(f"{kind}: samples {args.samples}, batch {args.batch}, steps {args.steps}, threads {args.threads}{mode}")
    print(f"{kind}: raw pipeline calls: {raw_s:.2f} s ({args.samples / raw_s:.1f} samples/s), cpu {raw_cpu:.2f} s")
    print(f"{kind}: whole synthesis path: {path_s:.2f} s ({args.samples / path_s:.1f} samples/s), cpu {path_cpu:.2f} s")
    print(f"{kind}: overhead ratio path/raw: {path_s / raw_s:.3f}, cpu {path_cpu / raw_cpu:.3f} (goal <= 1.03)",
          flush=True)
    return path_s / raw_s, path_cpu / raw_cpu


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
    parser.add_argument("--batch-invariant", action="store_true",
                        help="the path makes each sample alone (synth.model.batch_invariant); raw stays batched")
    args = parser.parse_args()
    kinds = list(GENERATORS) if args.kind == "all" else [args.kind]
    if args.weights is not None and len(kinds) > 1:
        parser.error("--weights needs one --kind")

    root = Path(tempfile.mkdtemp(prefix="bench-synth-"))
    try:
        ratios = {kind: bench(kind, root, args) for kind in kinds}
        print("path/raw per family (wall, cpu): "
              + ", ".join(f"{kind} {wall:.3f} {cpu:.3f}" for kind, (wall, cpu) in ratios.items()))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

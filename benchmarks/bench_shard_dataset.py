"""How fast ShardDataset serves 32 x 32 x 3 images through a DataLoader (target: >= 30,000/s on 2 cores).

Writes synthetic shards as the synthesize stage does (uncompressed, chunked along samples) into a
temporary directory, then times one epoch for each way of reading, side by side in one run:

- per-sample: a shuffled sampler, every sample one ``x[j]`` read;
- block: ``BlockBatchSampler`` (random blocks of consecutive samples), one slice read per block.

Usage: ``python benchmarks/bench_shard_dataset.py [--samples 100000] [--workers 2] [--batch-size 256]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from torch.utils.data import DataLoader

from gptfl_hpc.data.images import collate_images
from gptfl_hpc.shards.reader import BlockBatchSampler, ShardDataset

LABELS = [f"class {k}" for k in range(10)]


def write_shards(folder: Path, samples: int, per_shard: int) -> None:
    rng = np.random.default_rng(0)
    for k, start in enumerate(range(0, samples, per_shard)):
        n = min(per_shard, samples - start)
        with h5py.File(folder / f"shard_{k:05d}.h5", "w") as handle:
            handle.create_dataset(
                "x", data=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), chunks=(64, 32, 32, 3)
            )
            handle.create_dataset("y", data=rng.integers(0, 10, n, dtype=np.int64))
            handle.create_dataset("index", data=np.arange(start, start + n))
            handle.create_dataset("seed", data=np.arange(start, start + n))
            handle.create_dataset("guidance", data=rng.uniform(1, 5, n).astype(np.float32))
            handle.create_dataset("prompt", data=["a photo"] * n, dtype=h5py.string_dtype("utf-8"))
            handle.attrs.update(labels=json.dumps(LABELS), complete=True, modality="image")


def samples_per_second(loader: DataLoader) -> float:
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    count, start = 0, time.perf_counter()
    for x, _ in iterator:
        count += len(x)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--per-shard", type=int, default=25_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--block-size", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_shards(folder, args.samples, args.per_shard)
        dataset = ShardDataset(folder, LABELS)
        common = dict(num_workers=args.workers, collate_fn=collate_images, persistent_workers=False)
        per_sample = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, **common)
        blocks = DataLoader(
            dataset, batch_sampler=BlockBatchSampler(len(dataset), args.batch_size, args.block_size), **common
        )
        print(
            f"{len(dataset)} samples of 32x32x3 uint8 in {len(dataset.paths)} shards; "
            f"batch {args.batch_size}, {args.workers} workers, {os.cpu_count()} CPUs"
        )
        for name, loader in (("per-sample reads", per_sample), (f"block reads ({args.block_size})", blocks)):
            print(f"{name:>24}: {samples_per_second(loader):>10,.0f} samples/s")


if __name__ == "__main__":
    main()

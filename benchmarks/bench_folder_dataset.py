"""How fast a ``folder`` dataset opens and serves images, beside torchvision's ``ImageFolder``.

Writes a class-per-folder tree of JPEGs (default 20,000 images of 64 x 64 in 10 classes) into a
temporary directory, then times, side by side in one run:

- first open: listing plus decoding every file into the decoded-sample cache (threads);
- cached open: a second open (it maps the cache) plus one pass over every sample;
- ImageFolder: torchvision's ``ImageFolder`` with PIL decoding (``convert("RGB")``, as its default
  loader does, then to a uint8 array), one pass, in this process and through a DataLoader with
  ``--workers`` worker processes (what a training loop would use to decode in parallel).

Usage: ``python benchmarks/bench_folder_dataset.py [--images 20000] [--size 64] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from gptfl_hpc.data.config import DataConfig
from gptfl_hpc.data.factory import open_dataset

CLASSES = [f"class{k}" for k in range(10)]


def write_folder(root: Path, images: int, size: int) -> None:
    """Smooth random pictures (upsampled 8 x 8 noise), as JPEG files would hold photos."""
    rng = np.random.default_rng(0)
    for k in range(images):
        folder = root / "train" / CLASSES[k % len(CLASSES)]
        folder.mkdir(parents=True, exist_ok=True)
        small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        small.resize((size, size), Image.BILINEAR).save(folder / f"{k:06d}.jpg", quality=90)


def timed(work) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def one_pass(dataset) -> int:
    count = 0
    for index in range(len(dataset)):
        dataset[index]
        count += 1
    return count


def to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "data", Path(tmp) / "run" / "data-cache"
        seconds, _ = timed(lambda: write_folder(root, args.images, args.size))
        print(f"{args.images} JPEG images of {args.size}x{args.size} in {len(CLASSES)} class folders "
              f"(written in {seconds:.1f} s); {len(os.sched_getaffinity(0))} CPUs")
        config = DataConfig(dataset="folder", root=root, image_size=args.size)
        rows = []
        # Both splits come from train/ (test held out), so open with test_fraction's train share: all
        # files are decoded once, train and test each into their own cache entry.
        first_s, train = timed(lambda: open_dataset(config, "train", cache=cache))
        first_test_s, test = timed(lambda: open_dataset(config, "test", cache=cache))
        n = len(train) + len(test)
        rows.append(("folder: first open (decode to cache)", first_s + first_test_s, n))
        cached_s, cached = timed(lambda: (open_dataset(config, "train", cache=cache), open_dataset(config, "test", cache=cache)))
        rows.append(("folder: cached open", cached_s, n))
        pass_s, _ = timed(lambda: one_pass(cached[0]) + one_pass(cached[1]))
        rows.append(("folder: cached open + one pass", cached_s + pass_s, n))
        reference = ImageFolder(str(root / "train"), transform=to_array)
        ref_s, _ = timed(lambda: one_pass(reference))
        rows.append(("ImageFolder + PIL: one pass", ref_s, len(reference)))
        loader = DataLoader(reference, batch_size=256, num_workers=args.workers, collate_fn=lambda batch: len(batch))
        loader_s, _ = timed(lambda: sum(loader))
        rows.append((f"ImageFolder + PIL: DataLoader, {args.workers} workers", loader_s, len(reference)))
        width = max(len(name) for name, _, _ in rows)
        for name, seconds, count in rows:
            print(f"{name:>{width}}: {seconds:8.2f} s  {count / seconds:>12,.0f} images/s")


if __name__ == "__main__":
    main()

"""Tiny datasets on disk in the layouts users bring: class folders of images or audio, metadata
files, a Hugging Face ``save_to_disk`` folder. Each sample is a solid colour or a constant
level, so the decoded arrays are known exactly."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import soundfile
from PIL import Image

#: (mode, suffix) of the images a folder fixture writes, one per sample in turn.
IMAGE_KINDS = (("RGB", ".png"), ("RGBA", ".png"), ("L", ".jpg"), ("RGB", ".jpeg"), ("P", ".bmp"), ("RGB", ".webp"),
               ("I;16", ".png"))
#: (sample rate, channels) of the audio a folder fixture writes, one per sample in turn.
AUDIO_KINDS = ((16_000, 1), (8_000, 1), (44_100, 2), (16_000, 2))


def colour(label: int, index: int) -> tuple[int, int, int]:
    return (40 * label + 20, 10 * index + 30, 200 - 30 * label)


def solid_image(rgb: tuple[int, int, int], mode: str, size: tuple[int, int] = (20, 12)) -> Image.Image:
    image = Image.new("RGB", size, rgb)
    if mode == "L":
        return image.convert("L")
    if mode == "RGBA":
        return image.convert("RGBA")
    if mode == "P":
        return image.quantize(4)
    if mode == "I;16":  # 16-bit greyscale: the grey level of L, times 257
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
        return Image.fromarray(grey)
    return image


def expected_pixel(rgb: tuple[int, int, int], mode: str) -> np.ndarray:
    """What a solid image of ``rgb`` saved in ``mode`` decodes to (RGB)."""
    if mode == "I;16":
        return np.asarray(solid_image(rgb, "L").convert("RGB"), dtype=np.int64)[0, 0]
    return np.asarray(solid_image(rgb, mode).convert("RGB"), dtype=np.int64)[0, 0]


def write_image(path: Path, rgb: tuple[int, int, int], mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    solid_image(rgb, mode).save(path)


def image_folder(folder: Path, labels: Sequence[str], per_label: int = 3, kinds=IMAGE_KINDS) -> list[tuple[Path, int, str]]:
    """``folder/<label>/<k><suffix>``: (path, label index, mode) of every file, in listing order."""
    written = []
    turn = 0
    for label_index, label in enumerate(labels):
        for k in range(per_label):
            mode, suffix = kinds[turn % len(kinds)]
            turn += 1
            path = folder / label / f"{k:02d}{suffix}"
            write_image(path, colour(label_index, k), mode)
            written.append((path, label_index, mode))
    return written


def level(label: int, index: int) -> float:
    return round(0.1 * label + 0.02 * index + 0.05, 4)


def write_wav(path: Path, value: float, rate: int, channels: int, seconds: float = 0.5) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(rate * seconds)
    data = np.full((frames, channels), value, dtype=np.float32)
    if channels == 2:
        data[:, 1] = value / 2  # the mono mix is the mean: 0.75 * value
    soundfile.write(str(path), data, rate, subtype="FLOAT" if path.suffix == ".wav" else "PCM_24")


def mono_level(value: float, channels: int) -> float:
    return value if channels == 1 else 0.75 * value


def audio_folder(folder: Path, labels: Sequence[str], per_label: int = 2,
                 speakers: Optional[Sequence[str]] = None) -> list[tuple[Path, int, float]]:
    """``folder/<label>/<k>.wav``; with ``speakers``, a ``metadata.csv`` with a speaker column too.
    Returns (path, label index, mono level) per file, in listing order."""
    written = []
    rows = []
    turn = 0
    for label_index, label in enumerate(labels):
        for k in range(per_label):
            rate, channels = AUDIO_KINDS[turn % len(AUDIO_KINDS)]
            path = folder / label / f"{k:02d}.wav"
            write_wav(path, level(label_index, k), rate, channels)
            written.append((path, label_index, mono_level(level(label_index, k), channels)))
            if speakers is not None:
                rows.append({"file_name": f"{label}/{path.name}", "label": label,
                             "speaker": speakers[turn % len(speakers)]})
            turn += 1
    if speakers is not None:
        write_metadata(folder / "metadata.csv", rows)
    return written


def write_metadata(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def png_bytes(rgb: tuple[int, int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    solid_image(rgb, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def saved_hf_images(folder: Path, labels: Sequence[str], writers: Sequence[str], per_label: int = 2,
                    splits: Sequence[str] = ("train", "test")) -> dict[str, list[tuple[tuple, int, str]]]:
    """A ``DatasetDict`` of PNG images with a ClassLabel ``label`` and a ``writer`` column, saved to
    ``folder``; per split, (colour, label, writer) of each row."""
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(labels)),
                                  "writer": datasets.Value("string")})
    parts, rows_of = {}, {}
    for s, split in enumerate(splits):
        rows = [(colour(k, i + 3 * s), k, writers[(i + k) % len(writers)])
                for k in range(len(labels)) for i in range(per_label)]
        parts[split] = datasets.Dataset.from_dict(
            {"image": [{"bytes": png_bytes(c), "path": None} for c, _, _ in rows],
             "label": [k for _, k, _ in rows], "writer": [w for _, _, w in rows]}, features=features)
        rows_of[split] = rows
    datasets.DatasetDict(parts).save_to_disk(str(folder))
    return rows_of


def saved_hf_audio(folder: Path, labels: Sequence[str], rate: int = 8_000) -> list[tuple[float, int]]:
    """A ``Dataset`` (no splits) of WAV bytes with a ClassLabel, saved to ``folder``: (level, label) per row."""
    import datasets

    rows, audio = [], []
    for k in range(len(labels)):
        for i in range(5):
            value = level(k, i)
            buffer = io.BytesIO()
            soundfile.write(buffer, np.full(rate // 4, value, np.float32), rate, format="WAV", subtype="FLOAT")
            audio.append({"bytes": buffer.getvalue(), "path": None})
            rows.append((value, k))
    # Stored as plain bytes, then typed Audio at the Arrow level: encoding through Audio would need torchcodec.
    stored = datasets.Features({"clip": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                                "word": datasets.ClassLabel(names=list(labels))})
    dataset = datasets.Dataset.from_dict({"clip": audio, "word": [k for _, k in rows]}, features=stored)
    dataset.cast_column("clip", datasets.Audio()).save_to_disk(str(folder))
    return rows

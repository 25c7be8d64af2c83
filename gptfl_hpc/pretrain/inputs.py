"""What the trainer reads: the shards to train on, the real test split, and their checks.

``plan_training`` runs before any rank starts, so every bad input -- no shards, a shard missing,
incomplete or not matching its recorded sha256, shards of another modality than the model, too few
samples for one optimizer step, shards or a test split lacking one of the run's labels -- is one
``UserError`` line and nothing is written. Samples of labels the run does not use are dropped, from
shards and test split alike. The resulting ``TrainingPlan`` is plain data that every rank receives,
so all ranks train on the same list of shard files even if more appear later.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import h5py

from gptfl_hpc.config import Config
from gptfl_hpc.data.audio_features import collate_padded
from gptfl_hpc.data.base import LabeledDataset
from gptfl_hpc.data.factory import feature_transform, open_dataset
from gptfl_hpc.data.images import collate_images
from gptfl_hpc.data.labels import LabelSelection, match_labels
from gptfl_hpc.errors import UserError
from gptfl_hpc.layout import RunLayout
from gptfl_hpc.modality import input_kind, model_input_kind
from gptfl_hpc.pretrain.selection import ScoreSelection, select_by_score
from gptfl_hpc.shards.reader import ShardDataset, checked_shard_files


@dataclass(frozen=True)
class TrainingPlan:
    """Everything the ranks need to agree on before training starts."""

    shard_files: tuple[Path, ...]
    labels: tuple[str, ...]
    modality: str
    num_samples: int
    image_size: Optional[int]  # side of the shards' square images; None for audio
    micro_steps_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    evaluate: bool
    fingerprint: str  # shard names and sizes: a resume refuses to continue on other data
    label_selection: Optional[LabelSelection] = None  # set when shard samples of other labels were dropped
    score_selection: Optional[ScoreSelection] = None  # set when pretrain.min_score or keep_fraction drop samples


def shard_sources(config: Config) -> list[Path]:
    """``pretrain.shards``, or the run's own ``RUN/synth``."""
    return list(config.pretrain.shards) if config.pretrain.shards is not None else [config.layout.synth]


def resolve_shard_files(sources: Sequence[Path]) -> list[Path]:
    """Shard files of every source, in source order then name order, each checked against its
    record (``checked_shard_files``): a synthesis folder with a planned shard missing, partial or
    damaged is refused, never trained on with fewer or altered samples. None at all is an error."""
    files: list[Path] = []
    for source in map(Path, sources):
        if not source.exists():
            raise UserError(
                f"shard source {source} does not exist; run `gptfl synth` first or fix pretrain.shards"
            )
        found = checked_shard_files(source)
        if not found:
            raise UserError(
                f"no complete shards in {source}; run `gptfl synth` first or point pretrain.shards at shards"
            )
        files.extend(found)
    return files


def plan_training(config: Config) -> TrainingPlan:
    """Check the inputs of a pretrain run and fix its shape; raises ``UserError`` on bad input."""
    settings = config.pretrain
    labels = config.labels.load()
    files = resolve_shard_files(shard_sources(config))
    # Reads headers (labels by name, complete, one modality), and every y of shards with other labels.
    dataset = ShardDataset(files, labels)
    model_kind = model_input_kind(config.model.name)
    if input_kind(dataset.modality) != model_kind:
        raise UserError(
            f"the shards hold {dataset.modality} but model '{config.model.name}' takes {model_kind} input; "
            f"use {'audio_crnn' if model_kind == 'image' else 'an image model'} for model.name "
            f"or train on {model_kind} shards"
        )
    image_size = _image_size(files) if dataset.modality == "image" else None
    selection = select_by_score(dataset, labels, settings)
    if selection is not None:
        dataset.keep_only(selection.kept)
    global_batch = settings.micro_batch_size * settings.ranks
    micro_steps = len(dataset) // global_batch
    steps_per_epoch = micro_steps // settings.grad_accum_steps
    if steps_per_epoch < 1:
        step_samples = global_batch * settings.grad_accum_steps
        raise UserError(
            f"the {len(dataset)} shard samples do not fill one optimizer step of {step_samples} "
            f"(micro_batch_size x ranks x grad_accum_steps); lower pretrain.micro_batch_size or make more samples"
        )
    if settings.evaluate:
        try:
            test_dataset(config, labels, dataset.modality, decode=False)  # fails now, not after the first epoch
        except UserError as exc:
            raise UserError(f"{exc} (or set pretrain.evaluate false to train without the real test split)") from None
    return TrainingPlan(
        shard_files=tuple(files),
        labels=tuple(labels),
        modality=dataset.modality,
        num_samples=len(dataset),
        image_size=image_size,
        micro_steps_per_epoch=micro_steps,
        steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * settings.epochs,
        evaluate=settings.evaluate,
        fingerprint=_fingerprint(dataset, selection),
        label_selection=dataset.selection,
        score_selection=selection,
    )


def _image_size(files: Sequence[Path]) -> int:
    shapes = set()
    for path in files:
        with h5py.File(path, "r", locking=False) as handle:
            shapes.add(tuple(handle["x"].shape[1:]))
    if len(shapes) != 1:
        raise UserError(f"the shards hold images of several shapes {sorted(shapes)}; use shards of one size")
    height, width, *_ = shapes.pop()
    if height != width:
        raise UserError(f"the shards hold {height}x{width} images; the models take square images")
    return int(height)


def _fingerprint(dataset: ShardDataset, selection: Optional[ScoreSelection] = None) -> str:
    parts: list[Any] = [[header.path.name, header.length] for header in dataset.headers]
    if selection is not None:  # only then, so runs without a score rule keep their fingerprint
        parts.append(selection.summary())
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- datasets


def train_dataset(config: Config, plan: TrainingPlan) -> ShardDataset:
    transform = feature_transform(config.data, plan.modality)
    dataset = ShardDataset(list(plan.shard_files), list(plan.labels), transform=transform)
    if plan.score_selection is not None:
        dataset.keep_only(plan.score_selection.kept)
    return dataset


def test_dataset(config: Config, labels: Sequence[str], modality: str, decode: bool = True) -> LabeledDataset:
    """The configured real dataset's test split, classes matched to the run's labels by name.

    Samples of labels the run does not use are dropped, as from the train split. Decoded samples
    are kept in the run's data cache; ``decode=False`` only lists and checks them.
    """
    cache = RunLayout(config.run_dir).data_cache
    dataset = match_labels(open_dataset(config.data, "test", cache=cache, decode=decode), labels)
    if input_kind(dataset.modality) != input_kind(modality):
        raise UserError(
            f"the test split of {config.data.dataset} holds {dataset.modality} but the shards hold {modality}; "
            "set data.dataset to a dataset of the shards' kind"
        )
    dataset.transform = feature_transform(config.data, dataset.modality)
    return dataset


def collate_for(modality: str) -> Callable[[Sequence[tuple[Any, int]]], tuple]:
    """Images: (uint8 NCHW, targets); audio: (padded features, targets, lengths)."""
    return collate_images if modality == "image" else collate_padded

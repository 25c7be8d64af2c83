"""Where everything of one run lives inside its run directory: the one place that names the folders.

    RUN/config.yaml, config.sha256   the run's identity (``rundir``)
    RUN/prompts.json                 stage 1
    RUN/synth/                       stage 2: plan, shards, manifest
    RUN/pretrain/                    stage 3: model, metrics, checkpoints
    RUN/federate/                    stage 4: GPT-FL (from the pretrained model)
    RUN/federate-scratch/            stage 4: FL from scratch, the paper's comparison
    RUN/report/                      plots and report.md
    RUN/weights/                     tiny generator weights built for the run
    RUN/logs/<stage>/                job logs and submitit folders
    RUN/jobs.json                    the Slurm jobs each stage submitted last
    RUN/tracking/                    tracked runs' ids and stores (TensorBoard, MLflow, W&B offline)
    RUN/locks/                       who submits the run and who writes each output, while they do
    RUN/.cache/                      build caches (torch extensions), per run
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def hash_file(self) -> Path:
        return self.root / "config.sha256"

    @property
    def prompts(self) -> Path:
        return self.root / "prompts.json"

    @property
    def synth(self) -> Path:
        return self.root / "synth"

    @property
    def synth_manifest(self) -> Path:
        return self.synth / "manifest.json"

    @property
    def synth_stats(self) -> Path:
        """``gptfl synth stats``: the score table and the grid of each class's lowest and highest."""
        return self.synth / "stats"

    @property
    def pretrain(self) -> Path:
        return self.root / "pretrain"

    @property
    def pretrained_model(self) -> Path:
        """The exported downstream model: where GPT-FL starts."""
        return self.pretrain / "model.safetensors"

    @property
    def pretrain_metrics(self) -> Path:
        return self.pretrain / "metrics.jsonl"

    def federation(self, init: str) -> Path:
        """``federate`` for GPT-FL (init ``pretrain``), ``federate-scratch`` for FL from scratch."""
        return self.root / FEDERATION_FOLDERS[init]

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def report_file(self) -> Path:
        return self.report / "report.md"

    @property
    def weights(self) -> Path:
        """Tiny generator weights built for this run."""
        return self.root / "weights"

    def logs(self, stage: str = "") -> Path:
        return self.root / "logs" / stage if stage else self.root / "logs"

    @property
    def jobs_file(self) -> Path:
        return self.root / "jobs.json"

    def lock(self, name: str) -> Path:
        """The lock file of ``name``: ``submit`` (the command submitting the run) or an output
        (``pretrain``, ``synth/shard-00003``); see :mod:`gptfl_hpc.locks`."""
        return self.root / "locks" / f"{name}.lock"

    @property
    def tracking(self) -> Path:
        """Each stage's tracked-run record (``<stage>.json``) and the default local tracking stores."""
        return self.root / "tracking"

    @property
    def cache(self) -> Path:
        return self.root / ".cache"

    @property
    def data_cache(self) -> Path:
        """Decoded samples of folder-like datasets, one folder per fingerprint of their files."""
        return self.root / "data-cache"


#: ``federate.init`` -> the folder (and stage name) of that federation.
FEDERATION_FOLDERS = {"pretrain": "federate", "scratch": "federate-scratch"}

#: Files every finished federation holds.
FEDERATION_MODEL = "model.safetensors"
FEDERATION_SUMMARY = "summary.json"

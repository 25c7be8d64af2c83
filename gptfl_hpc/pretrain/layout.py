"""Where the pretrain stage keeps its files inside the run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gptfl_hpc.layout import RunLayout


@dataclass(frozen=True)
class PretrainPaths:
    run_dir: Path

    @property
    def folder(self) -> Path:
        return RunLayout(self.run_dir).pretrain

    @property
    def model(self) -> Path:
        """The exported downstream model: the federate stage's input."""
        return RunLayout(self.run_dir).pretrained_model

    @property
    def done(self) -> Path:
        """Written after the export; its presence makes a rerun return at once."""
        return self.folder / "done.json"

    @property
    def metrics(self) -> Path:
        """Loss, learning rate and test scores: the same bytes for the same config (on CPU)."""
        return RunLayout(self.run_dir).pretrain_metrics

    @property
    def timing(self) -> Path:
        """Wall-clock seconds and samples/s per logged step, kept apart so the metrics reproduce."""
        return self.folder / "timing.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def inputs(self) -> Path:
        """The shard files a started run trains on; a resume must find the same ones."""
        return self.folder / "inputs.json"

    @property
    def cache(self) -> Path:
        """Build caches (torch extensions), per run so that nodes never share half-built files."""
        return RunLayout(self.run_dir).cache

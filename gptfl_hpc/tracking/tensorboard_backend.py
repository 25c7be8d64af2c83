"""TensorBoard: one event folder per stage, ``<dir>/<group>/<stage>``, with the hparams plugin's
session data so runs and sweep points compare side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from gptfl_hpc.tracking.base import Backend


class TensorBoardBackend(Backend):
    name = "tensorboard"

    def __init__(self, run: Any, record: dict[str, Any]):
        super().__init__(run, record)
        logdir = run.tracking.tensorboard_dir(run.run_dir)
        folder = Path(record.get("folder") or logdir / run.group / run.stage)
        self.created = "folder" not in record
        record.update(logdir=str(logdir), folder=str(folder))
        self.folder = folder
        self.writer: SummaryWriter | None = None

    def _writer(self, purge_after: int | None = None) -> SummaryWriter:
        if self.writer is None:
            # A resumed stage hides events a killed one wrote after its last recorded step, so a
            # step logged again is shown once.
            purge = purge_after + 1 if purge_after is not None else None
            self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=purge, flush_secs=3600)
        return self.writer

    def resume_after(self, last_step: int | None) -> None:
        self._writer(last_step)

    def log_config(self, params: dict[str, str], extra: dict[str, Any]) -> None:
        writer = self._writer()
        writer.add_text("config", "\n".join(f"    {key}: {value}" for key, value in sorted(params.items())))
        if extra.get("hparams") is not None:
            values = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
                      for key, value in extra["hparams"].items()}
            for summary in hparams_summaries(values, {name: 0.0 for name in extra.get("metrics", ())}):
                writer._get_file_writer().add_summary(summary)
        writer.flush()

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        writer = self._writer()
        for key, value in values.items():
            writer.add_scalar(key, value, step)
        writer.flush()  # on disk before the step is recorded as logged

    def log_artifact(self, path: Path) -> None:
        writer = self._writer()
        if path.suffix == ".png":
            import numpy as np
            from PIL import Image

            writer.add_image(path.stem, np.asarray(Image.open(path).convert("RGB")), dataformats="HWC")
        elif path.suffix in (".md", ".txt", ".json", ".csv"):
            writer.add_text(path.name, path.read_text())
        writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

"""What ``gptfl synth stats RUN`` writes: ``RUN/synth/stats/scores.json`` (the per-class table) and
``RUN/synth/stats/score_extremes.png`` (each class's lowest- and highest-scoring samples)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from gptfl_hpc.durable import atomic_write_json
from gptfl_hpc.rundir import load_run
from gptfl_hpc.synth.scoring.config import ScoreConfig
from gptfl_hpc.synth.scoring.plots import plot_extremes
from gptfl_hpc.synth.scoring.stats import ClassScores, as_json, class_scores, read_scored

DEFAULT_THRESHOLD = ScoreConfig.model_fields["duplicate_threshold"].default


@dataclass(frozen=True)
class ScoreStats:
    rows: list[ClassScores]
    threshold: float
    table: Path
    grid: Path


def write_score_stats(run_dir: Path, threshold: Optional[float] = None) -> ScoreStats:
    """The score statistics of a run's shards; ``threshold`` defaults to the run's
    ``synth.score.duplicate_threshold``."""
    config = load_run(Path(run_dir))
    if threshold is None:
        threshold = config.synth.score.duplicate_threshold if config.synth.score is not None else DEFAULT_THRESHOLD
    samples = read_scored(config.layout.synth)
    rows = class_scores(samples, threshold)
    folder = config.layout.synth_stats
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "scores.json"
    atomic_write_json(table, as_json(rows, threshold))
    grid = plot_extremes(folder / "score_extremes.png", samples)
    return ScoreStats(rows, threshold, table, grid)

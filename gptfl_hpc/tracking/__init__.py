"""Experiment tracking: each stage's metrics mirrored to TensorBoard, Weights & Biases and MLflow.

A stage asks :func:`open_tracker` for a :class:`Tracker` (rank 0 only) and calls it from its
metric writers; the files the stage writes never depend on it. Backends are imported only when a
run names them, so the science and the CLI never load a tracking library otherwise. The layout:
``base`` (the interface and the do-nothing tracker), ``registry`` (name -> backend class),
``stage_tracker`` (one stage's tracked run: stored ids, steps already logged, one warning on
failure), ``params`` (what a run logs about itself), ``locations`` (where ``gptfl status`` says
the tracking lives) and one module per backend.
"""

from gptfl_hpc.tracking.base import Tracker
from gptfl_hpc.tracking.stage_tracker import open_tracker

__all__ = ["Tracker", "open_tracker"]

"""What a stage asks of experiment tracking, and the tracker that tracks nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Tracker:
    """The interface the stages call; this base does nothing, so it stands in wherever tracking is
    off (no backends, or a rank other than 0)."""

    def log_config(self, params: dict[str, Any]) -> None:
        """Hyperparameters of the tracked run (logged once, when it is created)."""

    def log_metrics(self, step: int, values: dict[str, Any]) -> None:
        """Scalars at ``step``, a function of the work done (round, optimizer step, samples)."""

    def log_artifact(self, path: Path) -> None:
        """A file the stage made (a plot, a table)."""

    def close(self) -> None:
        """End the tracked run for now; a later run of the same stage resumes it."""

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Backend:
    """One tracking library's view of one stage's tracked run.

    ``record`` is this backend's part of ``RUN/tracking/<stage>.json``: the ids it needs to resume
    the same tracked run, filled in when the run is created. ``created`` says whether it was created
    now (its config is logged then, once).
    """

    name = ""

    def __init__(self, run: "Any", record: dict[str, Any]):
        self.run = run
        self.record = record
        self.created = False

    def last_steps(self, keys: list[str]) -> "dict[str, int] | None":
        """The last step the backend itself holds for each of ``keys``; None where it cannot tell."""
        return None

    def resume_after(self, last_step: "int | None") -> None:
        """Called once before logging with the last step logged so far (None: nothing yet)."""

    def log_config(self, params: dict[str, str], extra: dict[str, Any]) -> None:
        """``params`` as the run's config; ``extra`` may hold ``hparams`` and the ``metrics`` they are judged by."""
        raise NotImplementedError

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def log_artifact(self, path: Path) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

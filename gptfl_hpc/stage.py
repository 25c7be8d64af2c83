"""What a pipeline stage is: the facts the orchestrator needs, declared by the stage's own package.

Each stage package declares its stage in a torch-free ``description.py`` (``prompts``, ``synth``,
``pretrain``, ``fl``; the report in ``report.py``) with the same names: ``run`` (what the job
calls), ``check`` (bad input as one line, before anything is submitted), ``state`` (the one done
test) and ``output``. :mod:`gptfl_hpc.orchestrate` lists them in pipeline order and decides where
and when each runs; this module knows nothing about executors, so the science can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from gptfl_hpc.config import Config
from gptfl_hpc.layout import RunLayout


@dataclass(frozen=True)
class CheckContext:
    """What a stage's check is told about the submission it belongs to."""

    pending: frozenset = frozenset()  # stages that run before this one: their outputs are not on disk yet
    devices_here: bool = False  # the ranks run on this machine, so its devices can be checked now


#: ``check(config, context)``: refuse bad input with one ``UserError`` line; what it returns (the
#: synthesis plan, the training plan...) is handed to ``explain`` for a dry run.
Check = Callable[[Config, CheckContext], Any]
#: ``state(config)``: ``{"state": "done" | "partial" | "missing", details...}``.
State = Callable[[Config], dict[str, Any]]


@dataclass(frozen=True)
class Stage:
    name: str  # the command, the log folder and the key in RUN/jobs.json
    help: str
    run: Callable[..., Any]  # the job's function: run(config); an array stage's: run((config, task))
    check: Check
    state: State
    output: Callable[[RunLayout], Path]
    needs: tuple[str, ...] = ()  # stages whose outputs this one reads
    ranks_key: Optional[str] = None  # the config key with the stage's rank count
    plan: Optional[Callable[[Config], Any]] = None  # an array stage's plan: ``num_tasks`` tasks of the array
    always_rerun: bool = False  # cheap and derived from the others: remade by every `gptfl run`
    prerequisites: tuple[str, ...] = ()  # stages its own command runs first when they are not done
    explain: Optional[Callable[[Config, Any], list[str]]] = None  # dry-run lines from what check returned
    summarize: Optional[Callable[[Config, list], Any]] = None  # what its command prints from the jobs' results
    reuse_note: Optional[Callable[[Config], Optional[str]]] = None  # why a done output may not be what the config asks now

    def ranks(self, config: Config) -> int:
        if self.ranks_key is None:
            return 1
        value: Any = config
        for part in self.ranks_key.split("."):
            value = getattr(value, part)
        return int(value)

    def is_done(self, config: Config) -> bool:
        return self.state(config)["state"] == "done"


def started_state(folder: Path) -> dict[str, Any]:
    """The state of a stage that is not done: partial when its folder holds anything (checkpoints)."""
    return {"state": "partial" if folder.is_dir() and any(folder.iterdir()) else "missing"}


def file_state(path: Path, folder: Optional[Path] = None) -> dict[str, Any]:
    """Done when ``path`` exists, else partial or missing by what ``folder`` holds."""
    if path.is_file():
        return {"state": "done"}
    return started_state(folder) if folder is not None else {"state": "missing"}

"""The run directory's identity: the resolved config and its hash, saved when a stage starts.

A run directory belongs to one config. Running any stage again with the identical config resumes
it; running with a different one is refused, so results of two configs never mix. Output choices
(``federate.init``) are recorded at their default: GPT-FL and FL from scratch share one run.
Where each file lives is :class:`gptfl_hpc.layout.RunLayout`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from gptfl_hpc.config import Config, dump_yaml, load_config, parse_yaml, validate_config
from gptfl_hpc.durable import atomic_write_text
from gptfl_hpc.errors import UserError
from gptfl_hpc.layout import RunLayout
from gptfl_hpc.stage_reads import WHERE_IT_RUNS

CONFIG_FILE = RunLayout(Path()).config_file.name
HASH_FILE = RunLayout(Path()).hash_file.name


def check_run_dir(config: Config) -> None:
    """Refuse a run_dir that cannot be written or that was made by a different config; writes nothing."""
    check_writable(config.run_dir)
    saved = saved_hash(config.run_dir)
    if saved is None or saved == config.hash:
        return
    changed = _changed_keys(_saved_science(config.run_dir), config.science())
    shown = ", ".join(changed[:4]) + (" ..." if len(changed) > 4 else "")
    raise UserError(
        f"run_dir {config.run_dir} was made by a different config (changed: {shown or 'unknown'}); "
        "use a new run_dir or the original config"
    )


def check_writable(run_dir: Path) -> None:
    """Refuse a run_dir that is a file, or that this user cannot write (or make) as a folder."""
    if _exists(run_dir):
        if not run_dir.is_dir():
            raise UserError(f"run_dir {run_dir} is a file, not a folder; choose another run_dir")
        if not os.access(run_dir, os.W_OK | os.X_OK):
            raise UserError(f"run_dir {run_dir} is not writable; fix its permissions or choose another run_dir")
        return
    ancestor = next(parent for parent in run_dir.parents if _exists(parent))
    if not ancestor.is_dir():
        raise UserError(f"run_dir {run_dir} cannot be made: {ancestor} is a file; choose another run_dir")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(
            f"run_dir {run_dir} cannot be made: {ancestor} is not writable; choose a run_dir in a folder you can write"
        )


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except PermissionError:  # inside a folder this user may not search: as good as absent
        return False


def prepare_run_dir(config: Config) -> Path:
    """Check the run_dir, then record the config in it (first stage to start writes it)."""
    check_run_dir(config)
    layout = config.layout
    if saved_hash(layout.root) is None:
        layout.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(layout.config_file, dump_yaml(config.as_run_identity()))
        # The hash goes last: its presence means the config beside it is complete.
        atomic_write_text(layout.hash_file, config.hash + "\n")
    return layout.root


def load_run(run_dir: Path) -> Config:
    """The config a run directory was made with, its ``run_dir`` pointing where the folder is now."""
    run_dir = Path(run_dir)
    path = RunLayout(run_dir).config_file
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run directory (no {CONFIG_FILE}); pass the run_dir of a config")
    return load_config(path).model_copy(update={"run_dir": run_dir.absolute()})


def saved_hash(run_dir: Path) -> Optional[str]:
    path = RunLayout(run_dir).hash_file
    return path.read_text().strip() if path.is_file() else None


def _saved_science(run_dir: Path) -> dict[str, Any]:
    """The saved config's science part, read back through the schema (so defaults and operational
    keys are treated exactly as for the config it is compared with)."""
    saved = parse_yaml(RunLayout(run_dir).config_file.read_text()) or {}
    try:
        return validate_config(saved).science()
    except UserError:  # written by another version of the schema: compare the raw values
        for key in WHERE_IT_RUNS:
            saved.pop(key, None)
        return saved


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [k for key in keys for k in _changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    if json.dumps(old, sort_keys=True) == json.dumps(new, sort_keys=True):
        return []
    return [prefix.rstrip(".")]

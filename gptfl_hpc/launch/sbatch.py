"""The sbatch script of a Slurm stage job, as text: what a dry run prints.

Jobs are submitted through submitit's ``SlurmExecutor``, which writes its own script; this module
renders the same text from the same parameters without submitting, without private submitit calls
and without ``srun`` on this machine. ``tests/test_sbatch_text.py`` pins the text for fixed
configs, and on a Slurm cluster compares it with the script submitit actually submitted, so a
submitit release that writes another script fails there instead of making dry runs lie.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any, Optional

#: The signal Slurm sends ``signal_delay_s`` before the time limit: what ``launch.requeue`` handles.
PREEMPT_SIGNAL = "USR2"
#: submitit's defaults for parameters the project does not set; each is in every script it writes.
SUBMITIT_DEFAULTS = {"wckey": "submitit"}


def render_sbatch(params: dict[str, Any], folder: Path, *, array: Optional[int] = None,
                  python: str = sys.executable) -> str:
    """The script for ``SlurmExecutor.update_parameters(**params)`` with logs in ``folder``; an
    ``array``-task array job when given."""
    flags = {key: value for key, value in params.items() if value is not None}
    setup = flags.pop("setup", None)
    srun_args = list(flags.pop("srun_args", None) or [])
    extra = flags.pop("additional_parameters", None) or {}
    delay = flags.pop("signal_delay_s", 90)
    parallelism = flags.pop("array_parallelism", 256)
    flags = {**SUBMITIT_DEFAULTS, **flags, "signal": f"{PREEMPT_SIGNAL}@{delay}"}
    folder = Path(folder).expanduser().absolute()
    job = "%A_%a" if array else "%j"  # array tasks log as ARRAYID_TASK, others as JOBID
    stdout, stderr = str(folder / f"{job}_%t_log.out"), str(folder / f"{job}_%t_log.err")
    if array:
        flags["array"] = f"0-{array - 1}%{min(array, parallelism)}"
    flags.update({"output": stdout.replace("%t", "0"), "error": stderr.replace("%t", "0"), "open-mode": "append"})
    flags.update(extra)
    lines = ["#!/bin/bash", "", "# Parameters", *(_flag(key, flags[key]) for key in sorted(flags))]
    if setup is not None:
        lines += ["", "# setup", *setup]
    srun = shlex.join(["srun", "--unbuffered", "--output", stdout, "--error", stderr, *srun_args])
    command = f"{shlex.quote(python)} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    lines += ["", "# command", "export SUBMITIT_EXECUTOR=slurm", f"{srun} {command}", ""]
    return "\n".join(lines)


def _flag(key: str, value: Any) -> str:
    key = key.replace("_", "-")
    return f"#SBATCH --{key}" if value is True else f"#SBATCH --{key}={shlex.quote(str(value))}"

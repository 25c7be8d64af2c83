"""Slurm's time formats, as sbatch ``--time`` reads them, in whole minutes.

``launcher.slurm.time`` and the per-stage ``launcher.stages.<stage>.time`` are checked with it at
load, and the launcher passes its minutes to submitit, so a time Slurm would refuse is one line
before any job is submitted.
"""

from __future__ import annotations

from typing import Union


def slurm_time_to_minutes(value: Union[int, str]) -> int:
    """Slurm's time formats in whole minutes (seconds round up).

    ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``, as sbatch ``--time`` reads them.
    """
    text = str(value).strip()
    days, _, clock = text.rpartition("-") if "-" in text else ("", "", text)
    parts = clock.split(":")
    if not all(p.isdigit() for p in parts) or (days and not days.isdigit()) or len(parts) > 3:
        raise ValueError(f"'{text}' is not a Slurm time; use minutes (90), H:MM:SS or D-HH:MM:SS")
    numbers = [int(p) for p in parts]
    if days:
        h, m, s = (numbers + [0, 0])[:3]
    elif len(numbers) == 3:
        h, m, s = numbers
    else:
        h, (m, s) = 0, (numbers + [0])[:2]
    minutes = int(days or 0) * 1440 + h * 60 + m + (1 if s else 0)
    if minutes < 1:
        raise ValueError("must be at least one minute")
    return minutes

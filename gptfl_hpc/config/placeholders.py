"""Settings each user must still fill in: the paper configs mark them ``/path/to/...``.

``gptfl validate`` refuses a config that holds one; loading never does, so ``--dry-run`` works on
the shipped configs.
"""

from __future__ import annotations

from typing import Any

from gptfl_hpc.config.run_config import Config

#: How the shipped paper configs mark what each user must fill in (data roots, weights).
PLACEHOLDER_PREFIX = "/path/to/"


def placeholder_paths(config: Config) -> list[tuple[str, str]]:
    """``(key, value)`` of every setting that still holds a ``/path/to/...`` placeholder."""
    found: list[tuple[str, str]] = []

    def visit(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for name, child in value.items():
                visit(child, f"{key}.{name}" if key else name)
        elif isinstance(value, list):
            for index, child in enumerate(value):
                visit(child, f"{key}[{index}]")
        elif isinstance(value, str) and value.startswith(PLACEHOLDER_PREFIX):
            found.append((key, value))

    visit(config.resolved(), "")
    return found

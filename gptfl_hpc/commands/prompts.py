"""``gptfl prompts CONFIG``: label names -> ``RUN/prompts.json``. Bad templates, labels or LLM
directories fail as one line before any job is submitted."""

from __future__ import annotations

from gptfl_hpc.commands.stage import add_stage_command


def register(subparsers) -> None:
    add_stage_command(subparsers, "prompts")

"""``gptfl prompts CONFIG``: label names -> ``RUN/prompts.json``."""

from __future__ import annotations

from gptfl_hpc.commands.stage import add_stage_command
from gptfl_hpc.config import Config


def check(config: Config) -> None:
    """Bad templates, labels or LLM directories fail here as one line, before any job is submitted."""
    from gptfl_hpc.prompts.stage import check as check_prompts

    check_prompts(config)


def register(subparsers) -> None:
    add_stage_command(subparsers, "prompts", "gptfl_hpc.prompts.stage:run", "label names -> prompts per class",
                      check=check)

"""``gptfl prompts CONFIG``: label names -> ``RUN/prompts.json``."""

from __future__ import annotations

import argparse
import functools
from typing import Callable

from gptfl_hpc.commands.common import config_from_args
from gptfl_hpc.commands.stage import add_stage_command


def register(subparsers) -> None:
    add_stage_command(subparsers, "prompts", "gptfl_hpc.prompts.stage:run", "label names -> prompts per class")
    parser = subparsers.choices["prompts"]
    parser.set_defaults(func=functools.partial(check_then_run, run=parser.get_default("func")))


def check_then_run(args: argparse.Namespace, *, run: Callable[[argparse.Namespace], int]) -> int:
    """Bad templates, labels or LLM directories fail here as one line, before any job is submitted."""
    from gptfl_hpc.prompts.stage import check

    check(config_from_args(args))
    return run(args)

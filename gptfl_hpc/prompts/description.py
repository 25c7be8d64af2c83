"""The prompts stage as the pipeline sees it: label names -> ``RUN/prompts.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gptfl_hpc.config import Config
from gptfl_hpc.layout import RunLayout
from gptfl_hpc.prompts import stage as prompts
from gptfl_hpc.stage import CheckContext, Stage, file_state


def check(config: Config, context: CheckContext) -> Any:
    return prompts.check(config)


def state(config: Config) -> dict[str, Any]:
    return file_state(config.layout.prompts)


def output(layout: RunLayout) -> Path:
    return layout.prompts


STAGE = Stage("prompts", "label names -> prompts per class", run=prompts.run, check=check, state=state, output=output)

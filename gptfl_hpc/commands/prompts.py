"""``gptfl prompts CONFIG``: label names -> ``RUN/prompts.json``."""

from gptfl_hpc.commands.stage import add_stage_command


def register(subparsers) -> None:
    add_stage_command(subparsers, "prompts", "gptfl_hpc.prompts.stage:run", "label names -> prompts per class")

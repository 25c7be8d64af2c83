"""``gptfl pretrain CONFIG``: synthetic shards -> ``RUN/pretrain/model.safetensors``."""

from gptfl_hpc.commands.stage import add_stage_command


def register(subparsers) -> None:
    add_stage_command(subparsers, "pretrain", "gptfl_hpc.pretrain.stage:run", "train the downstream model on the shards")

"""``gptfl synth CONFIG`` (placeholder until the synthesis command lands)."""

from gptfl_hpc.commands.stage import add_stage_command


def register(subparsers) -> None:
    add_stage_command(subparsers, "synth", "gptfl_hpc.synth.stage:run", "prompts -> synthetic shards")

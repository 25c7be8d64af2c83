"""``gptfl federate CONFIG``: federated training -> ``RUN/federate/model.safetensors``."""

from gptfl_hpc.commands.stage import add_stage_command


def register(subparsers) -> None:
    add_stage_command(subparsers, "federate", "gptfl_hpc.fl.stage:run", "federated learning on the clients' data")

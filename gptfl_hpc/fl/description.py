"""The two federations as pipeline stages: GPT-FL from the pretrained model into ``RUN/federate``,
and FL from scratch, the paper's comparison, into ``RUN/federate-scratch``.

Torch loads in the job that federates, never in the command that checks and submits: the
federation modules are imported inside ``run`` and ``check``.
"""

from __future__ import annotations

from typing import Any, Callable

from gptfl_hpc.config import Config
from gptfl_hpc.layout import FEDERATION_FOLDERS, FEDERATION_MODEL, FEDERATION_SUMMARY
from gptfl_hpc.modality import require_same_input
from gptfl_hpc.stage import Check, CheckContext, Stage, State, started_state


def run(config: Config) -> dict[str, Any]:
    """GPT-FL (or FL from scratch when ``federate.init=scratch``)."""
    from gptfl_hpc.fl.stage import run as federate

    return federate(config)


def run_from_scratch(config: Config) -> dict[str, Any]:
    from gptfl_hpc.fl.stage import run_baseline

    return run_baseline(config)


def _check(init: str) -> Check:
    def check(config: Config, context: CheckContext) -> Any:
        from gptfl_hpc.fl.stage import preflight

        require_same_input(config, "model.name", "data.dataset")
        return preflight(config, init, check_local_devices=context.devices_here,
                         model_pending="pretrain" in context.pending)

    return check


def _state(init: str) -> State:
    def state(config: Config) -> dict[str, Any]:
        """Done when the federation wrote both its summary and its model."""
        folder = config.layout.federation(init)
        if (folder / FEDERATION_SUMMARY).is_file() and (folder / FEDERATION_MODEL).is_file():
            return {"state": "done"}
        return started_state(folder)

    return state


def _output(init: str) -> Callable:
    return lambda layout: layout.federation(init)


GPT_FL = Stage(FEDERATION_FOLDERS["pretrain"], "GPT-FL: federated learning from the pretrained model", run=run,
               check=_check("pretrain"), state=_state("pretrain"), output=_output("pretrain"), needs=("pretrain",),
               ranks_key="federate.ranks")
FROM_SCRATCH = Stage(FEDERATION_FOLDERS["scratch"],
                     "FL from scratch: the same federation from the model's own initialisation",
                     run=run_from_scratch, check=_check("scratch"), state=_state("scratch"),
                     output=_output("scratch"), ranks_key="federate.ranks")

"""Backend name -> the class that logs to it, imported only when a run names that backend."""

from __future__ import annotations

from typing import Callable

from gptfl_hpc.config.tracking import BACKEND_LIBRARIES, INSTALL_HINT
from gptfl_hpc.errors import UserError


def _tensorboard() -> type:
    from gptfl_hpc.tracking.tensorboard_backend import TensorBoardBackend

    return TensorBoardBackend


def _wandb() -> type:
    from gptfl_hpc.tracking.wandb_backend import WandbBackend

    return WandbBackend


def _mlflow() -> type:
    from gptfl_hpc.tracking.mlflow_backend import MlflowBackend

    return MlflowBackend


#: name -> a function importing the backend (and with it the library) on first use.
BACKENDS: dict[str, Callable[[], type]] = {"tensorboard": _tensorboard, "wandb": _wandb, "mlflow": _mlflow}


def backend_class(name: str) -> type:
    try:
        return BACKENDS[name]()
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == BACKEND_LIBRARIES[name]:
            raise UserError(f"tracking.backends names {name}, which is not installed; {INSTALL_HINT}") from None
        raise

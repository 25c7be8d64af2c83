"""Backend name -> the class that logs to it, imported only when a run names that backend."""

from __future__ import annotations

import importlib

from gptfl_hpc.config.tracking import BACKEND_LIBRARIES, INSTALL_HINT
from gptfl_hpc.errors import UserError

#: name -> "module:class"; importing the module imports the library.
BACKENDS = {
    "tensorboard": "gptfl_hpc.tracking.tensorboard_backend:TensorBoardBackend",
    "wandb": "gptfl_hpc.tracking.wandb_backend:WandbBackend",
    "mlflow": "gptfl_hpc.tracking.mlflow_backend:MlflowBackend",
}


def backend_class(name: str) -> type:
    module, _, attribute = BACKENDS[name].partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == BACKEND_LIBRARIES[name]:
            raise UserError(f"tracking.backends names {name}, which is not installed; {INSTALL_HINT}") from None
        raise

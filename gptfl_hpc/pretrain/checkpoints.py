"""DeepSpeed checkpoints that survive a kill at any moment and load without running pickled code.

Layout: ``RUN/pretrain/checkpoints/step-000000120/`` (one folder per saved step, DeepSpeed's files
inside: the model states from rank 0, one ZeRO optimizer partition per rank) and ``latest``, which
names the newest complete folder.

* Every rank calls ``save`` (DeepSpeed saves each rank's optimizer partition); DeepSpeed ends the
  save with a barrier, and only then does rank 0 move ``latest`` (``durable.write_latest``). A kill
  mid-save leaves a folder that ``latest`` never named; the next save of that step overwrites it.
* Each file is written by ``DurableCheckpointEngine``: temporary name, fsync, rename.
* Loading uses ``torch.load(weights_only=True)`` with DeepSpeed's few plain data classes allowed,
  so a checkpoint can never execute code.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine
from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
from deepspeed.runtime.zero.config import ZeroStageEnum
from deepspeed.utils.tensor_fragment import fragment_address

from gptfl_hpc import durable

log = logging.getLogger(__name__)

#: Plain data classes DeepSpeed pickles into its optimizer files (scale factors, ZeRO stage, offsets).
CHECKPOINT_DATA_CLASSES = [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]
_TAG = re.compile(r"^step-(\d{9})$")


class DurableCheckpointEngine(TorchCheckpointEngine):
    """DeepSpeed's torch checkpoint engine with atomic writes and ``weights_only`` loads."""

    def save(self, state_dict: dict[str, Any], path: str) -> None:
        durable.atomic_save(path, lambda tmp: torch.save(state_dict, tmp))

    def load(self, path: str, map_location: Any = None) -> Any:
        with torch.serialization.safe_globals(CHECKPOINT_DATA_CLASSES):
            return torch.load(path, map_location=map_location, weights_only=True)


def tag_for(step: int) -> str:
    return f"step-{step:09d}"


def step_of(tag: str) -> Optional[int]:
    match = _TAG.match(tag)
    return int(match.group(1)) if match else None


def save(engine: Any, directory: Path, step: int, client_state: dict[str, Any], keep: int) -> None:
    """Save on every rank, then point ``latest`` at it and drop older checkpoints (rank 0)."""
    tag = tag_for(step)
    engine.save_checkpoint(str(directory), tag=tag, client_state=client_state, save_latest=False)
    if dist.get_rank() == 0:
        durable.write_latest(directory, tag)
        prune(directory, keep)
    dist.barrier()


def load_latest(engine: Any, directory: Path) -> Optional[dict[str, Any]]:
    """Restore the engine from the checkpoint ``latest`` names; its client state, or None."""
    target = durable.read_latest(directory)
    if target is None:
        return None
    path, client_state = engine.load_checkpoint(str(directory), tag=target.name)
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load checkpoint {target}")
    log.debug("rank %d loaded %s", dist.get_rank(), target)
    return client_state


def prune(directory: Path, keep: int) -> None:
    """Keep the ``keep`` newest checkpoints up to ``latest``; newer folders are unfinished saves."""
    latest = durable.read_latest(directory)
    if latest is None:
        return
    newest = step_of(latest.name)
    steps = sorted(s for path in Path(directory).iterdir() if (s := step_of(path.name)) is not None and s <= newest)
    for step in steps[:-keep]:
        shutil.rmtree(Path(directory) / tag_for(step), ignore_errors=True)

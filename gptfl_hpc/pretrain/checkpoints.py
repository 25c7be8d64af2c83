"""DeepSpeed checkpoints that survive a kill at any moment and load without running pickled code.

Layout: ``RUN/pretrain/checkpoints/step-000000120/`` (one folder per saved step, DeepSpeed's files
inside: the model states from rank 0, one ZeRO optimizer partition per rank),
``checksums/step-000000120.sha256`` (their SHA-256) and ``latest``, which names the newest
complete folder.

* Every rank calls ``save`` (DeepSpeed saves each rank's optimizer partition); DeepSpeed ends the
  save with a barrier. Rank 0 then writes the checksums (of every rank's files, hashed as they
  were written), checks the folder against them, and only then moves ``latest`` and prunes older
  folders. A kill mid-save leaves a folder that ``latest`` never named; the next save of that
  step overwrites it.
* Each file is written by ``DurableCheckpointEngine``: temporary name, fsync, rename.
* Resuming, rank 0 takes the newest folder up to ``latest`` that matches its checksums (a folder
  from before checksums: whose files load) and moves damaged ones to ``damaged/``; every rank
  loads the folder it names.
* Loading uses ``torch.load(weights_only=True)`` with DeepSpeed's few plain data classes allowed,
  so a checkpoint can never execute code.
"""

from __future__ import annotations

import logging
import re
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
#: The file every checkpoint folder has (rank 0's model states, DeepSpeed's name for it).
MODEL_STATES = "mp_rank_00_model_states.pt"


class DurableCheckpointEngine(TorchCheckpointEngine):
    """DeepSpeed's torch checkpoint engine with atomic writes and ``weights_only`` loads; it keeps
    the checksum of each file this rank wrote in the current save (``written``)."""

    def __init__(self, config_params: Any = None):
        super().__init__(config_params)
        self.written: dict[str, str] = {}

    def create(self, info: Any) -> None:
        self.written = {}  # DeepSpeed calls this at the start of every save

    def save(self, state_dict: dict[str, Any], path: str) -> None:
        self.written[path] = durable.atomic_save_with_checksum(
            path, lambda tmp: torch.save(state_dict, tmp), durable.payload_bytes(state_dict))

    def load(self, path: str, map_location: Any = None) -> Any:
        return load_file(path, map_location)


def load_file(path: Any, map_location: Any = None) -> Any:
    with torch.serialization.safe_globals(CHECKPOINT_DATA_CLASSES):
        return torch.load(path, map_location=map_location, weights_only=True)


def tag_for(step: int) -> str:
    return f"step-{step:09d}"


def step_of(tag: str) -> Optional[int]:
    match = _TAG.match(tag)
    return int(match.group(1)) if match else None


def save(engine: Any, directory: Path, step: int, client_state: dict[str, Any], keep: int) -> None:
    """Save on every rank; rank 0 writes the checksums, then points ``latest`` at the folder and
    drops older ones, but only once the folder matches its checksums."""
    tag = tag_for(step)
    folder = Path(directory) / tag
    engine.save_checkpoint(str(directory), tag=tag, client_state=client_state, save_latest=False)
    written: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(written, engine.checkpoint_engine.written)
    if dist.get_rank() == 0:
        durable.write_checksums(folder, {path: digest for files in written for path, digest in files.items()})
        durable.commit_checkpoint(folder, step_of, keep)
    dist.barrier()


def load_latest(engine: Any, directory: Path) -> Optional[dict[str, Any]]:
    """Restore the engine from the newest intact checkpoint; its client state, or None."""
    # Rank 0 alone checks and moves damaged folders; every rank then loads the folder it chose.
    chosen = [durable.newest_intact_checkpoint(directory, step_of, folder_problem) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(chosen, src=0)
    target = chosen[0]
    if target is None:
        return None
    path, client_state = engine.load_checkpoint(str(directory), tag=target.name)
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load checkpoint {target}")
    log.debug("rank %d loaded %s", dist.get_rank(), target)
    return client_state


def folder_problem(folder: Path) -> Optional[str]:
    """What is wrong with a checkpoint folder, or None when it is usable."""
    return durable.checkpoint_problem(folder, check_unrecorded=_unrecorded_folder_problem)


def _unrecorded_folder_problem(folder: Path) -> Optional[str]:
    # A folder from before checksums: usable when it has the model states and every file loads.
    if not (folder / MODEL_STATES).is_file():
        return f"{MODEL_STATES} is missing"
    for path in sorted(folder.glob("*.pt")):
        problem = durable.load_problem(path, lambda p: load_file(p, "cpu"))
        if problem is not None:
            return problem
    return None

"""One rank of the pretrain stage: the DeepSpeed training loop, resumable bit for bit.

What makes a resumed run equal the uninterrupted one (on CPU):

* the data order is a pure function of (seed, epoch) and the position in it (``sampler``);
* augmentation is seeded per micro-batch (``augment.batch_seed``), never from the global RNG;
* the checkpoint holds DeepSpeed's model, optimizer and scheduler state plus, as client state,
  the epoch, the step within it and every rank's RNG state (dropout draws from it);
* checkpoints are taken only at optimizer-step boundaries, where nothing else is in flight.

At every step boundary the ranks agree on preemption (one tiny all_reduce); on a request every
rank saves, then raises ``Preempted`` for the launch layer to requeue the job.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from gptfl_hpc import durable, preemption
from gptfl_hpc.config import Config
from gptfl_hpc.models.config import build_from_config
from gptfl_hpc.pretrain.augment import batch_seed
from gptfl_hpc.pretrain.batches import BatchPreparer
from gptfl_hpc.pretrain.engine import autocast, configure_environment, create_engine, deepspeed_config
from gptfl_hpc.pretrain.evaluate import evaluate
from gptfl_hpc.models.export import save_model
from gptfl_hpc.pretrain.inputs import TrainingPlan, collate_for, test_dataset, train_dataset
from gptfl_hpc.pretrain.layout import PretrainPaths
from gptfl_hpc.pretrain.metrics import MetricsLog
from gptfl_hpc.pretrain.sampler import RankBatchSampler
from gptfl_hpc.ranks import any_rank_requested, cpu_threads_per_rank, rank_device

log = logging.getLogger(__name__)

_RNG_STREAM = 1  # separates the per-rank RNG seed from the augmentation seeds


@dataclass
class Position:
    """Where training stands: ``step_in_epoch`` optimizer steps of ``epoch`` are done."""

    epoch: int = 0
    step_in_epoch: int = 0
    resumes: int = 0

    def step(self, steps_per_epoch: int) -> int:
        return self.epoch * steps_per_epoch + self.step_in_epoch


def train_rank(rank: int, world_size: int, config: Config, plan: TrainingPlan) -> dict[str, Any]:
    """Train on this rank; every rank returns the same summary."""
    settings = config.pretrain
    paths = PretrainPaths(config.run_dir)
    configure_environment(paths.cache)
    _share_cores(world_size)
    started = time.perf_counter()

    # DeepSpeed insists on LOCAL_RANK, which a one-rank run in this process may not have.
    os.environ.setdefault("LOCAL_RANK", "0")
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    model = build_from_config(config.model, len(plan.labels), config.data.image_size, config.data.audio.n_mels)
    engine = create_engine(model, deepspeed_config(settings, plan.total_steps, world_size))
    _seed_rank(config.seed, rank)

    from gptfl_hpc.pretrain import checkpoints  # imports deepspeed: only after configure_environment

    position = Position()
    client = checkpoints.load_latest(engine, paths.checkpoints)
    if client is not None:
        position = _restore(client, rank, world_size, plan)
    step = position.step(plan.steps_per_epoch)
    metrics = MetricsLog(paths.metrics, rank == 0, resume_step=step if client is not None else None)

    device = rank_device()
    prepare = BatchPreparer(plan.modality, device, config.data.image_size, settings)
    collate = collate_for(plan.modality)
    data = train_dataset(config, plan)
    test = test_dataset(config, plan.labels, plan.modality) if plan.evaluate else None
    accumulation = settings.grad_accum_steps
    sampler = RankBatchSampler(
        plan.num_samples, settings.micro_batch_size, rank, world_size, config.seed,
        read_block=settings.read_block, micro_steps=plan.steps_per_epoch * accumulation,
    )

    loader = _train_loader(data, sampler, collate, settings.workers, device)
    progress = tqdm(
        total=plan.total_steps, initial=step, desc="pretrain", unit="step", disable=rank != 0,
        mininterval=0.1 if sys.stderr.isatty() else 30.0,  # a batch log gets a line every 30 s, not 10/s
    )
    window = _LossWindow(device)
    last_train: dict[str, float] = {}
    last_eval: Optional[dict[str, float]] = None
    for epoch in range(position.epoch, settings.epochs):
        first_micro = position.step_in_epoch * accumulation if epoch == position.epoch else 0
        sampler.set_position(epoch, first_micro)
        for micro, raw in enumerate(loader, start=first_micro):
            inputs, targets = prepare(raw, batch_seed(config.seed, epoch, micro, rank))
            loss = F.cross_entropy(engine(*inputs).float(), targets)
            engine.backward(loss)
            engine.step()
            window.add(loss)
            if (micro + 1) % accumulation:
                continue
            step += 1
            in_epoch = (micro + 1) // accumulation
            epoch_done = in_epoch == plan.steps_per_epoch
            progress.update(1)
            if step % settings.log_every == 0 or epoch_done:
                last_train = window.flush(settings.micro_batch_size * world_size)
                metrics.add(kind="train", epoch=epoch + 1, step=step, lr=engine.get_lr()[0], **last_train)
                progress.set_postfix(loss=f"{last_train['loss']:.4f}")
            if epoch_done and test is not None:
                last_eval = evaluate(
                    engine.module, test, prepare, collate, settings.eval_batch_size, settings.workers,
                    lambda: autocast(engine),
                )
                metrics.add(kind="eval", epoch=epoch + 1, step=step, **last_eval)
                if rank == 0:
                    log.info("epoch %d: %s", epoch + 1, _describe(last_eval))
            preempted = any_rank_requested()
            if preempted or epoch_done or step % settings.checkpoint_every == 0:
                done_position = Position(epoch + 1, 0) if epoch_done else Position(epoch, in_epoch)
                done_position.resumes = position.resumes
                checkpoints.save(
                    engine, paths.checkpoints, step, _client_state(done_position, step, plan), settings.keep_checkpoints
                )
            if preempted:
                progress.close()
                raise preemption.Preempted(f"pretrain preempted after step {step}; checkpoint saved")
    progress.close()

    summary = {
        "model": str(paths.model),
        "steps": plan.total_steps,
        "epochs": settings.epochs,
        "samples": plan.num_samples,
        "ranks": world_size,
        "resumes": position.resumes,
        # A run resumed after its last step trained nothing itself: its log has the final scores.
        "final_train": last_train or metrics.last("train"),
        "final_eval": last_eval or metrics.last("eval"),
        "seconds": round(time.perf_counter() - started, 3),
        "config_hash": config.hash,
    }
    if rank == 0:
        save_model(paths.model, engine.module, plan.labels, config.model.model_dump(mode="json"))
        durable.atomic_write_json(paths.done, summary)
    dist.barrier()
    return summary


def _train_loader(data: Any, sampler: RankBatchSampler, collate: Any, workers: int, device: torch.device) -> DataLoader:
    # The sampler is read in this process, so persistent workers follow its position each epoch.
    return DataLoader(
        data,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),  # iterator seeds come from here, not from the global RNG
    )


# --------------------------------------------------------------------------- state


def _client_state(position: Position, step: int, plan: TrainingPlan) -> dict[str, Any]:
    """Everything beyond DeepSpeed's own state that the next run needs to continue exactly."""
    rng_states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(rng_states, durable.capture_rng_state())
    return {
        "epoch": position.epoch,
        "step_in_epoch": position.step_in_epoch,
        "step": step,
        "resumes": position.resumes,
        "fingerprint": plan.fingerprint,
        "rng": rng_states,
    }


def _restore(client: dict[str, Any], rank: int, world_size: int, plan: TrainingPlan) -> Position:
    if client.get("fingerprint") != plan.fingerprint or len(client["rng"]) != world_size:
        raise RuntimeError("the checkpoint was made on other shards or another number of ranks")
    durable.restore_rng_state(client["rng"][rank])
    position = Position(int(client["epoch"]), int(client["step_in_epoch"]), int(client["resumes"]) + 1)
    if rank == 0:
        log.info("resuming at epoch %d, step %d", position.epoch + 1, client["step"])
    return position


def _seed_rank(seed: int, rank: int) -> None:
    """Distinct, reproducible RNG streams per rank (dropout masks differ between ranks)."""
    rank_seed = batch_seed(seed, rank, _RNG_STREAM)
    torch.manual_seed(rank_seed)
    random.seed(rank_seed)
    np.random.seed(rank_seed % 2**32)


def _share_cores(world_size: int) -> None:
    """On CPU, split this node's cores between its ranks instead of every rank using them all."""
    if torch.cuda.is_available():
        return
    torch.set_num_threads(cpu_threads_per_rank(int(os.environ.get("LOCAL_WORLD_SIZE", world_size))))


class _LossWindow:
    """Mean training loss and throughput since the last flush, over all ranks."""

    def __init__(self, device: torch.device):
        self.device = device
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.count = 0
        self.since = time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss.detach().double()  # stays on the device: no sync per step
        self.count += 1

    def flush(self, samples_per_micro_batch: int) -> dict[str, float]:
        sums = torch.stack([self.total, torch.tensor(float(self.count), dtype=torch.float64, device=self.device)])
        if dist.get_backend() != "nccl":
            sums = sums.cpu()
        dist.all_reduce(sums)
        elapsed = max(time.perf_counter() - self.since, 1e-9)
        result = {
            "loss": float(sums[0] / sums[1]),
            "samples_per_s": round(self.count * samples_per_micro_batch / elapsed, 2),
        }
        self.total.zero_()
        self.count = 0
        self.since = time.perf_counter()
        return result


def _describe(scores: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in sorted(scores.items()))

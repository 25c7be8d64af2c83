"""One rank of the pretrain stage as a trainer: build, resume, step, evaluate, checkpoint, finish.

What makes a resumed run equal the uninterrupted one (on CPU):

* the data order is a pure function of (seed, epoch) and the position in it (``sampler``);
* augmentation is seeded per micro-batch (``augment.batch_seed``), never from the global RNG;
* the checkpoint holds DeepSpeed's model, optimizer and scheduler state plus, as client state,
  the epoch, the step within it and every rank's RNG state (dropout draws from it);
* checkpoints are taken only at optimizer-step boundaries, where nothing else is in flight.

Files: ``metrics.jsonl`` holds what the run computed (loss, learning rate, test scores) and is
the same bytes for the same config on CPU; wall-clock throughput goes to ``timing.jsonl``.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from gptfl_hpc import durable
from gptfl_hpc.config import Config
from gptfl_hpc.models.config import build_from_config
from gptfl_hpc.models.export import save_model
from gptfl_hpc.pretrain.augment import batch_seed
from gptfl_hpc.pretrain.batches import BatchPreparer
from gptfl_hpc.pretrain.config import pretrain_identity
from gptfl_hpc.pretrain.engine import autocast, configure_environment, create_engine, deepspeed_config
from gptfl_hpc.pretrain.evaluate import evaluate
from gptfl_hpc.pretrain.inputs import TrainingPlan, collate_for, test_dataset, train_dataset
from gptfl_hpc.pretrain.layout import PretrainPaths
from gptfl_hpc.pretrain.metrics import MetricsLog
from gptfl_hpc.pretrain.sampler import RankBatchSampler
from gptfl_hpc.ranks import cpu_threads_per_rank, rank_device
from gptfl_hpc.tracking import Tracker

log = logging.getLogger(__name__)

_RNG_STREAM = 1  # separates the per-rank RNG seed from the augmentation seeds


@dataclass
class Position:
    """Where training stands: ``step_in_epoch`` optimizer steps of ``epoch`` are done."""

    epoch: int = 0
    step_in_epoch: int = 0

    def global_step(self, steps_per_epoch: int) -> int:
        return self.epoch * steps_per_epoch + self.step_in_epoch


class Trainer:
    """The training state of one rank; ``train.train_rank`` drives it step by step.

    Every rank calls every method at the same steps: ``step``, ``log_train``, ``evaluate`` and
    ``checkpoint`` hold collectives. Only rank 0 writes the logs, the model and ``done.json``.
    """

    def __init__(self, rank: int, world_size: int, config: Config, plan: TrainingPlan,
                 tracker: Optional[Tracker] = None):
        self.started = time.perf_counter()
        self.rank, self.world_size = rank, world_size
        self.config, self.plan = config, plan
        self.settings = config.pretrain
        self.paths = PretrainPaths(config.run_dir)
        configure_environment(self.paths.cache)
        _share_cores(world_size)

        # DeepSpeed insists on LOCAL_RANK, which a one-rank run in this process may not have.
        os.environ.setdefault("LOCAL_RANK", "0")
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        model = build_from_config(config.model, len(plan.labels), config.data.image_size, config.data.audio.n_mels)
        self.engine = create_engine(model, deepspeed_config(self.settings, plan.total_steps, world_size))
        _seed_rank(config.seed, rank)

        self.position = Position()
        self.resumes = 0
        self.tracker = tracker or Tracker()
        self.metrics = MetricsLog(self.paths.metrics, rank == 0, resume_step=None, tracker=self.tracker)
        # Step-keyed like the metrics, so a resume trims both logs at the same step.
        self.timing = MetricsLog(self.paths.timing, rank == 0, resume_step=None, tracker=self.tracker)
        self.last_train: dict[str, float] = {}
        self.last_eval: Optional[dict[str, float]] = None

        self.device = rank_device()
        self.prepare = BatchPreparer(plan.modality, self.device, config.data.image_size, self.settings)
        self.collate = collate_for(plan.modality)
        self.test = test_dataset(config, plan.labels, plan.modality) if plan.evaluate else None
        self.sampler = RankBatchSampler(
            plan.num_samples, self.settings.micro_batch_size, rank, world_size, config.seed,
            read_block=self.settings.read_block, micro_steps=plan.steps_per_epoch * self.settings.grad_accum_steps,
        )
        self.loader = _train_loader(train_dataset(config, plan), self.sampler, self.collate, self.settings.workers,
                                    self.device)
        self.window = _LossWindow(self.device)
        self._micro_batches: Optional[Iterator[tuple[int, int, Any]]] = None
        self._progress: Optional[tqdm] = None

    @property
    def global_step(self) -> int:
        """Optimizer steps done, counting those before a resume."""
        return self.position.global_step(self.plan.steps_per_epoch)

    @property
    def finished(self) -> bool:
        return self.global_step >= self.plan.total_steps

    # ------------------------------------------------------------------ the pieces of the loop

    def resume(self) -> None:
        """Continue from the newest intact checkpoint, if any: weights, optimizer, position, RNG.
        Damaged checkpoints are set aside with a warning; with none left the run starts over."""
        from gptfl_hpc.pretrain import checkpoints  # imports deepspeed: only after configure_environment

        client = checkpoints.load_latest(self.engine, self.paths.checkpoints)
        if client is None:
            return
        plan = self.plan
        if client.get("fingerprint") != plan.fingerprint or len(client["rng"]) != self.world_size:
            raise RuntimeError("the checkpoint was made on other shards or another number of ranks")
        durable.restore_rng_state(client["rng"][self.rank])
        self.position = Position(int(client["epoch"]), int(client["step_in_epoch"]))
        self.resumes = int(client["resumes"]) + 1
        # The records after the checkpoint belong to steps this run is about to do again.
        self.metrics = MetricsLog(self.paths.metrics, self.rank == 0, resume_step=self.global_step, tracker=self.tracker)
        self.timing = MetricsLog(self.paths.timing, self.rank == 0, resume_step=self.global_step, tracker=self.tracker)
        if self.rank == 0:
            log.info("resuming at epoch %d, step %d", self.position.epoch + 1, client["step"])

    @contextmanager
    def progress_bar(self) -> Iterator[None]:
        """Rank 0's bar over the steps still to do; the throughput clock starts with it."""
        self._progress = tqdm(
            total=self.plan.total_steps, initial=self.global_step, desc="pretrain", unit="step",
            disable=self.rank != 0,
            mininterval=0.1 if sys.stderr.isatty() else 30.0,  # a batch log gets a line every 30 s, not 10/s
        )
        self.window.restart_clock()
        try:
            yield
        finally:
            self._progress.close()
            self._progress = None

    def step(self) -> bool:
        """One optimizer step (``grad_accum_steps`` micro-batches); True when it ended an epoch."""
        if self.finished:
            raise RuntimeError(f"all {self.plan.total_steps} steps are done")
        if self._micro_batches is None:
            self._micro_batches = self._iterate_micro_batches()
        for _ in range(self.settings.grad_accum_steps):
            epoch, micro, raw = next(self._micro_batches)
            inputs, targets = self.prepare(raw, batch_seed(self.config.seed, epoch, micro, self.rank))
            loss = F.cross_entropy(self.engine(*inputs).float(), targets)
            self.engine.backward(loss)
            self.engine.step()
            self.window.add(loss)
        in_epoch = (micro + 1) // self.settings.grad_accum_steps
        epoch_done = in_epoch == self.plan.steps_per_epoch
        self.position = Position(epoch + 1, 0) if epoch_done else Position(epoch, in_epoch)
        if self._progress is not None:
            self._progress.update(1)
        return epoch_done

    def log_train(self) -> None:
        """Record the mean loss since the last record (metrics) and the throughput (timing)."""
        window = self.window.flush(self.settings.micro_batch_size * self.world_size)
        step, epoch = self.global_step, self._epoch_of_last_step()
        self.last_train = {"loss": window.loss}
        self.metrics.add(kind="train", epoch=epoch, step=step, lr=self.engine.get_lr()[0], **self.last_train)
        self.timing.add(step=step, wall_s=window.wall_s, samples_per_s=window.samples_per_s)
        if self._progress is not None:
            self._progress.set_postfix(loss=f"{window.loss:.4f}")

    def evaluate(self) -> dict[str, float]:
        """Loss, accuracy and macro-F1 on the real test split, recorded in the metrics."""
        if self.test is None:
            raise RuntimeError("this run has no test split to evaluate on (pretrain.evaluate is false)")
        settings = self.settings
        self.last_eval = evaluate(
            self.engine.module, self.test, self.prepare, self.collate, settings.eval_batch_size, settings.workers,
            lambda: autocast(self.engine),
        )
        epoch = self._epoch_of_last_step()
        self.metrics.add(kind="eval", epoch=epoch, step=self.global_step, **self.last_eval)
        if self.rank == 0:
            log.info("epoch %d: %s", epoch, _describe(self.last_eval))
        return self.last_eval

    def checkpoint(self) -> None:
        """Save on every rank at this step boundary; rank 0 then moves ``latest``."""
        from gptfl_hpc.pretrain import checkpoints  # imports deepspeed: only after configure_environment

        checkpoints.save(
            self.engine, self.paths.checkpoints, self.global_step, self._client_state(), self.settings.keep_checkpoints
        )

    def finish(self) -> dict[str, Any]:
        """Export the model and write ``done.json`` (rank 0); every rank returns the same summary."""
        settings, plan = self.settings, self.plan
        summary = {
            "model": str(self.paths.model),
            "steps": plan.total_steps,
            "epochs": settings.epochs,
            "samples": plan.num_samples,
            "ranks": self.world_size,
            "resumes": self.resumes,
            # A run resumed after its last step trained nothing itself: its log has the final scores.
            "final_train": self.last_train or self.metrics.last("train"),
            "final_eval": self.last_eval or self.metrics.last("eval"),
            "seconds": round(time.perf_counter() - self.started, 3),
            "config_hash": self.config.hash,
            "pretrain_identity": pretrain_identity(self.config.science()),
        }
        if self.rank == 0:
            save_model(self.paths.model, self.engine.module, plan.labels, self.config.model.model_dump(mode="json"))
            durable.atomic_write_json(self.paths.done, summary)
        dist.barrier()
        return summary

    # ------------------------------------------------------------------ helpers

    def _iterate_micro_batches(self) -> Iterator[tuple[int, int, Any]]:
        """``(epoch, micro-batch index in the epoch, raw batch)`` from the position onwards."""
        start = self.position
        accumulation = self.settings.grad_accum_steps
        for epoch in range(start.epoch, self.settings.epochs):
            first_micro = start.step_in_epoch * accumulation if epoch == start.epoch else 0
            self.sampler.set_position(epoch, first_micro)
            for micro, raw in enumerate(self.loader, start=first_micro):
                yield epoch, micro, raw

    def _epoch_of_last_step(self) -> int:
        """The 1-based epoch the last step belonged to (an epoch's last step leaves step_in_epoch 0)."""
        return self.position.epoch if self.position.step_in_epoch == 0 else self.position.epoch + 1

    def _client_state(self) -> dict[str, Any]:
        """Everything beyond DeepSpeed's own state that the next run needs to continue exactly."""
        rng_states: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(rng_states, durable.capture_rng_state())
        return {
            "epoch": self.position.epoch,
            "step_in_epoch": self.position.step_in_epoch,
            "step": self.global_step,
            "resumes": self.resumes,
            "fingerprint": self.plan.fingerprint,
            "rng": rng_states,
        }


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


@dataclass(frozen=True)
class WindowStats:
    loss: float  # mean over all ranks' micro-batches: reproducible
    wall_s: float  # this rank's wall-clock seconds: not reproducible
    samples_per_s: float


class _LossWindow:
    """Mean training loss and throughput since the last flush, over all ranks."""

    def __init__(self, device: torch.device):
        self.device = device
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.count = 0
        self.since = time.perf_counter()

    def restart_clock(self) -> None:
        self.since = time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss.detach().double()  # stays on the device: no sync per step
        self.count += 1

    def flush(self, samples_per_micro_batch: int) -> WindowStats:
        sums = torch.stack([self.total, torch.tensor(float(self.count), dtype=torch.float64, device=self.device)])
        if dist.get_backend() != "nccl":
            sums = sums.cpu()
        dist.all_reduce(sums)
        elapsed = max(time.perf_counter() - self.since, 1e-9)
        stats = WindowStats(
            loss=float(sums[0] / sums[1]),
            wall_s=round(elapsed, 6),
            samples_per_s=round(self.count * samples_per_micro_batch / elapsed, 2),
        )
        self.total.zero_()
        self.count = 0
        self.restart_clock()
        return stats


def _describe(scores: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in sorted(scores.items()))

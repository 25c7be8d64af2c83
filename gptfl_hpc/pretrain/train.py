"""One rank of the pretrain stage: the training loop over a ``Trainer`` (``trainer.py``).

At every step boundary the ranks agree on preemption (one tiny all_reduce); on a request every
rank saves, then raises ``Preempted`` for the launch layer to requeue the job. The next run of the
same command resumes from that checkpoint and ends with the uninterrupted run's bytes (on CPU).
"""

from __future__ import annotations

from typing import Any

from gptfl_hpc import preemption
from gptfl_hpc.config import Config
from gptfl_hpc.pretrain.inputs import TrainingPlan
from gptfl_hpc.pretrain.trainer import Trainer
from gptfl_hpc.ranks import any_rank_requested
from gptfl_hpc.tracking import open_tracker


def train_rank(rank: int, world_size: int, config: Config, plan: TrainingPlan) -> dict[str, Any]:
    """Train on this rank; every rank returns the same summary."""
    settings = config.pretrain
    with open_tracker(config, "pretrain", rank) as tracker:
        trainer = Trainer(rank, world_size, config, plan, tracker)
        trainer.resume()
        with trainer.progress_bar():
            while not trainer.finished:
                epoch_done = trainer.step()
                step = trainer.global_step
                if epoch_done or step % settings.log_every == 0:
                    trainer.log_train()
                if epoch_done and plan.evaluate:
                    trainer.evaluate()
                preempted = any_rank_requested()
                if preempted or epoch_done or step % settings.checkpoint_every == 0:
                    trainer.checkpoint()
                if preempted:
                    raise preemption.Preempted(f"pretrain preempted after step {step}; checkpoint saved")
        return trainer.finish()

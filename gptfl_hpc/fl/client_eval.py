"""Per-client evaluation (``federate.client_eval``): how the global model does on each client's own data.

Each client's samples are split once into a training share and a held-out share of
``round(fraction * n)`` samples, picked by a generator of ``(seed, client)`` alone, so the split is the
same on every rank and in every resume; the simulator never trains on a held-out sample. On the
rounds it is due, the global model is scored on every client's holdout:

* The clients are spread over the ranks by holdout size (``sampling.assign_to_ranks``, the same
  for every rank and every round). A rank loads its clients' holdouts once, as one resident batch
  in client order, and runs them through the model in ``eval_batch_size`` batches: one pass over
  all its clients, not one per client.
* Correct predictions are counted per client into a vector over all clients (zero where another
  rank owns the client) and one ``all_reduce(SUM)`` gives every rank all counts in client-id order.

With ``finetune_steps: k`` each client's holdout is also scored by the global model after ``k``
local SGD steps on that client's training share (the client's own optimizer settings, no
algorithm terms, a random stream of ``(seed, round, client)``): the personalised accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from gptfl_hpc.errors import UserError
from gptfl_hpc.fl.client import FlatModel, LocalTrainer
from gptfl_hpc.fl.clientdata import ClientStore, Samples, load_samples
from gptfl_hpc.fl.config import ClientConfig, ClientEvalConfig
from gptfl_hpc.fl.metrics import all_ranks_sum
from gptfl_hpc.fl.sampling import assign_to_ranks, finetune_seed, holdout_rng


def holdout_size(num_samples: int, fraction: float) -> int:
    """``round(fraction * num_samples)``, halves rounded up."""
    return int(np.floor(fraction * num_samples + 0.5))


def split_holdouts(
    clients: Sequence[np.ndarray], fraction: float, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each client's (training share, held-out share) of its sample indices, both in index order."""
    train, held_out = [], []
    for client, indices in enumerate(clients):
        indices = np.asarray(indices, dtype=np.int64)
        chosen = np.zeros(len(indices), dtype=bool)
        chosen[holdout_rng(seed, client).permutation(len(indices))[: holdout_size(len(indices), fraction)]] = True
        train.append(indices[~chosen])
        held_out.append(indices[chosen])
    return train, held_out


def check_holdouts(sizes: Sequence[int], fraction: float) -> None:
    """Refuse, with one line, a fraction that leaves some client without a holdout or without training
    data. The smallest client is the first to fail either way, so it alone is checked and named."""
    if len(sizes) == 0:
        return
    client = int(np.argmin(sizes))
    size = int(sizes[client])
    held = holdout_size(size, fraction)
    key, more = "federate.client_eval.fraction", "(data.partition.min_client_size, or fewer clients)"
    if held == 0:
        lowest = math.ceil(0.5 / size * 1e4) / 1e4
        raise UserError(
            f"{key} {fraction} holds out no sample of client {client}, which has {size}; raise the fraction to at "
            f"least {lowest:g} or give every client {math.ceil(0.5 / fraction)} or more samples {more}"
        )
    if held == size:
        highest = math.floor((size - 0.5) / size * 1e4) / 1e4
        raise UserError(
            f"{key} {fraction} holds out all {size} samples of client {client}, leaving it nothing to train on; "
            f"lower the fraction to at most {highest:g} or give every client more samples {more}"
        )


@dataclass
class ClientScores:
    """One evaluation of every client, in client-id order."""

    round: int
    holdout: np.ndarray  # held-out samples per client
    correct: np.ndarray  # correct predictions of the global model
    finetuned_correct: Optional[np.ndarray] = None  # after the personalisation steps

    @property
    def accuracy(self) -> np.ndarray:
        return self.correct / self.holdout

    def record(self) -> dict[str, float]:
        """The summary statistics a round's ``metrics.jsonl`` record gains."""
        values = _statistics("client_accuracy", self.accuracy)
        if self.finetuned_correct is not None:
            values.update(_statistics("finetuned_accuracy", self.finetuned_correct / self.holdout))
        return values

    def per_client(self) -> list[dict[str, Any]]:
        """``summary.json``'s list: client id, holdout size, accuracy (and the personalised one)."""
        rows = []
        for client, (size, correct) in enumerate(zip(self.holdout, self.correct)):
            row = {"client": client, "holdout": int(size), "accuracy": int(correct) / int(size)}
            if self.finetuned_correct is not None:
                row["finetuned_accuracy"] = int(self.finetuned_correct[client]) / int(size)
            rows.append(row)
        return rows

    def state_dict(self) -> dict[str, Any]:
        state = {"round": self.round, "holdout": self.holdout.tolist(), "correct": self.correct.tolist()}
        if self.finetuned_correct is not None:
            state["finetuned_correct"] = self.finetuned_correct.tolist()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "ClientScores":
        finetuned = state.get("finetuned_correct")
        return cls(int(state["round"]), np.array(state["holdout"], dtype=np.int64), np.array(state["correct"], dtype=np.int64),
                   None if finetuned is None else np.array(finetuned, dtype=np.int64))


def _statistics(name: str, accuracy: np.ndarray) -> dict[str, float]:
    return {
        f"{name}_mean": float(np.mean(accuracy)),
        f"{name}_p10": float(np.percentile(accuracy, 10)),  # linear interpolation between clients
        f"{name}_worst": float(np.min(accuracy)),
    }


class ClientEvaluator:
    """Scores the global model on the holdouts of the clients this rank owns; every rank gets all scores."""

    def __init__(
        self,
        config: ClientEvalConfig,
        client_config: ClientConfig,
        holdouts: ClientStore,
        train: ClientStore,
        rank: int,
        world_size: int,
        batch_size: int,
        seed: int,
    ):
        self.config = config
        self.holdouts, self.train = holdouts, train
        self.batch_size, self.seed = batch_size, seed
        self.sizes = np.array([holdouts.size(c) for c in range(len(holdouts.clients))], dtype=np.int64)
        clients = list(range(len(self.sizes)))
        self.owned = assign_to_ranks(clients, self.sizes.tolist(), world_size)[rank]
        self.client_config = client_config  # the local SGD of the personalisation steps
        self._samples: Optional[Samples] = None
        self._owner: Optional[torch.Tensor] = None
        self._finetuner: Optional[LocalTrainer] = None

    def is_due(self, round_number: int, last_round: int) -> bool:
        return round_number % self.config.every == 0 or round_number == last_round

    def evaluate(self, flat: FlatModel, global_state: torch.Tensor, round_number: int) -> ClientScores:
        """Score ``global_state`` on every client's holdout; ``flat`` is left holding ``global_state``."""
        flat.load(global_state)
        samples, owner = self._resident()
        correct = torch.zeros(len(self.sizes), dtype=torch.int64, device=flat.device)
        right = _correct_predictions(flat, samples, self.batch_size)
        correct.index_add_(0, owner, right.to(torch.int64))
        scores = ClientScores(round_number, self.sizes, all_ranks_sum(correct).cpu().numpy())
        if self.config.finetune_steps > 0:
            scores.finetuned_correct = self._finetuned(flat, global_state, round_number)
        return scores

    def _finetuned(self, flat: FlatModel, global_state: torch.Tensor, round_number: int) -> np.ndarray:
        """Correct predictions per client after ``finetune_steps`` local steps from the global model."""
        if self._finetuner is None:
            self._finetuner = LocalTrainer(flat, self.client_config)  # plain SGD: no proximal or correction term
        samples, _ = self._resident()
        correct = torch.zeros(len(self.sizes), dtype=torch.int64, device=flat.device)
        start = 0
        for client in self.owned:
            end = start + int(self.sizes[client])
            self._finetuner.train(global_state, self.train[client], finetune_seed(self.seed, round_number, client),
                                  max_steps=self.config.finetune_steps)
            correct[client] = _correct_predictions(flat, _rows(samples, start, end), self.batch_size).sum()
            start = end
        flat.load(global_state)
        return all_ranks_sum(correct).cpu().numpy()

    def _resident(self) -> tuple[Samples, torch.Tensor]:
        """This rank's holdouts as one batch in client order (read in one go), and the client of each row."""
        if self._samples is None:
            store = self.holdouts
            indices = [np.asarray(store.clients[c], dtype=np.int64) for c in self.owned]
            if indices:
                self._samples = load_samples(store.dataset, np.concatenate(indices), store.device, store.transform)
            else:  # more ranks than clients
                self._samples = Samples(torch.zeros(0, device=store.device), torch.zeros(0, dtype=torch.int64, device=store.device))
            owner = np.repeat(np.array(self.owned, dtype=np.int64), [len(i) for i in indices])
            self._owner = torch.from_numpy(owner).to(store.device)
        return self._samples, self._owner


def _rows(samples: Samples, start: int, end: int) -> Samples:
    lengths = None if samples.lengths is None else samples.lengths[start:end]
    return Samples(samples.x[start:end], samples.y[start:end], lengths)


def _correct_predictions(flat: FlatModel, samples: Samples, batch_size: int) -> torch.Tensor:
    """A bool per sample: whether the model in ``flat`` predicts its label."""
    flat.model.eval()
    right = torch.zeros(len(samples), dtype=torch.bool, device=flat.device)
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            x = samples.x[start : start + batch_size]
            lengths = None
            if samples.lengths is not None:
                lengths = samples.lengths[start : start + batch_size]
                x = x[:, : int(lengths.max())]
            right[start : start + batch_size] = flat.forward(x, lengths).argmax(dim=1) == samples.y[start : start + batch_size]
    return right

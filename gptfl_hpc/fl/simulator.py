"""The round loop of one rank, with checkpoints and resume.

Every rank holds the same global model and runs the same server update (a replicated server):
per round it trains its share of the sampled clients, adds their updates into one buffer, takes
part in one ``all_reduce``, and applies the server step to identical totals. Rank 0 writes the
files. The client algorithm (``algorithms.py``) supplies each client's local terms and keeps its
own state; the loop never asks which algorithm runs. Checkpoints (every ``checkpoint_every``
rounds, at the end, and on preemption) hold the global model, the server optimizer, the client
algorithm's state (e.g. control variates) and the metric records; each comes with a SHA-256
checksum file, and a resume takes the newest one that matches it, setting damaged ones aside. The
cohort, the client-to-rank assignment and every client's random stream are functions of ``(seed,
round, client)``, so the round number is all the sampler state there is. A run killed at any
moment and started again with the same command therefore ends bit-identical (on CPU) to one that
was never interrupted.

Files in ``OUT`` (``RUN/federate`` or ``RUN/federate-scratch``): ``model.safetensors`` (final
global model), ``metrics.jsonl`` (one deterministic record per round, plus round 0 = the initial
model), ``timing.jsonl`` (wall-clock seconds per round, kept apart so metrics stay reproducible),
``summary.json`` and ``checkpoints/``. Rank 0 mirrors each round's record to the configured trackers
as it writes ``metrics.jsonl`` (``gptfl_hpc.tracking``), keyed by round.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from gptfl_hpc import durable, preemption
from gptfl_hpc.config import Config
from gptfl_hpc.data.factory import feature_transform, make_partition, open_run_dataset
from gptfl_hpc.data.labels import match_labels
from gptfl_hpc.fl.aggregate import RoundAggregator
from gptfl_hpc.fl.algorithms import make_algorithm
from gptfl_hpc.fl.client import FlatModel, LocalResult, LocalTrainer
from gptfl_hpc.fl.client_eval import ClientEvaluator, ClientScores, split_holdouts
from gptfl_hpc.fl.cohort import CohortTrainer
from gptfl_hpc.fl.config import FederateConfig
from gptfl_hpc.fl.clientdata import ClientStore, Samples, load_samples
from gptfl_hpc.fl.metrics import (
    accuracy, all_ranks_sum, confusion_matrix, gradient_diversity, macro_f1, tracked_values,
)
from gptfl_hpc.fl.sampling import assign_to_ranks, client_seed, init_seed, sample_clients
from gptfl_hpc.fl.strategies import make_server_optimizer
from gptfl_hpc.models.config import build_from_config
from gptfl_hpc.models.export import load_model, save_model
from gptfl_hpc.ranks import cpu_threads_per_rank, rank_device
from gptfl_hpc.tracking import Tracker, open_tracker

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2
_CHECKPOINT_NAME = re.compile(r"^round-(\d{6,})\.pt$")
#: Checkpoint key of the client algorithm's state; "control" keeps checkpoints with control variates loadable.
ALGORITHM_STATE = "control"
#: Checkpoint key of the newest per-client evaluation (``federate.client_eval``).
CLIENT_SCORES = "client_scores"


@dataclass(frozen=True)
class FederationSetup:
    """What every rank of one federation needs, decided (and checked) before the ranks start."""

    config: Config
    out_dir: Path
    init_path: Optional[Path]  # None: the model config's own initialisation


def build_global_model(config: Config, labels: list[str], init_path: Optional[Path]) -> torch.nn.Module:
    """The round-0 model, identical on every rank: seeded init (or ImageNet weights), then the export."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(config.seed))
        model = build_from_config(config.model, len(labels), config.data.image_size, config.data.audio.n_mels)
    if init_path is not None:
        load_model(init_path, model, labels)
    return model


def set_threads(config: Config) -> None:
    """Each rank gets its share of the cores unless ``federate.threads_per_rank`` says otherwise."""
    threads = config.federate.threads_per_rank
    if threads is None:
        threads = cpu_threads_per_rank(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(threads)


@dataclass
class FederationData:
    """The clients' resident samples and this rank's share of the test set."""

    clients: ClientStore
    sizes: np.ndarray  # samples per client (its training share)
    test: Samples
    labels: list[str]
    holdouts: Optional[ClientStore] = None  # with federate.client_eval: each client's held-out share


def load_federation_data(config: Config, rank: int, world_size: int, device: torch.device) -> FederationData:
    labels = config.labels.load()
    train = match_labels(open_run_dataset(config, "train"), labels)
    transform = feature_transform(config.data, train.modality)
    partition = make_partition(config.data, train)
    test = match_labels(open_run_dataset(config, "test"), labels)
    shard = test_shard(len(test), config.federate.eval_batch_size, rank, world_size)
    client_eval = config.federate.client_eval
    training, holdouts = partition.clients, None
    if client_eval is not None:
        training, held_out = split_holdouts(partition.clients, client_eval.fraction, config.seed)
        holdouts = ClientStore(train, held_out, device, transform)
    return FederationData(
        ClientStore(train, training, device, transform),
        np.array([len(c) for c in training], dtype=np.int64),
        load_samples(test, shard, device, transform),
        labels,
        holdouts,
    )


def test_shard(n: int, batch: int, rank: int, world_size: int) -> np.ndarray:
    """A rank's test samples: a contiguous run of whole evaluation batches."""
    batches = np.array_split(np.arange((n + batch - 1) // batch), world_size)[rank]
    if len(batches) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.arange(batches[0] * batch, min((batches[-1] + 1) * batch, n))


def simulate(rank: int, world_size: int, setup: FederationSetup) -> dict[str, Any]:
    """One rank of the configured federation; returns the summary (the same on every rank)."""
    config = setup.config
    set_threads(config)
    device = rank_device()
    data = load_federation_data(config, rank, world_size, device)
    model = build_global_model(config, data.labels, setup.init_path)
    with open_tracker(config, setup.out_dir.name, rank) as tracker:
        simulation = Simulation(
            rank, world_size, config.federate, config.seed, model, data, device,
            out_dir=setup.out_dir, model_config=config.model.model_dump(mode="json"), config_hash=config.hash,
            tracker=tracker,
        )
        return simulation.run()


class Simulation:
    """The round loop over any model and resident client data; ``out_dir=None`` writes nothing."""

    def __init__(
        self,
        rank: int,
        world_size: int,
        fed: FederateConfig,
        seed: int,
        model: torch.nn.Module,
        data: FederationData,
        device: torch.device,
        out_dir: Optional[Path] = None,
        model_config: Optional[dict[str, Any]] = None,
        config_hash: str = "",
        tracker: Optional[Tracker] = None,
    ):
        self.rank, self.world_size = rank, world_size
        self.fed, self.seed = fed, seed
        self.out_dir = out_dir
        self.ckpt_dir = out_dir / CHECKPOINTS if out_dir is not None else None
        self.device = device
        self.labels = data.labels
        self.model_config = model_config or {}
        self.config_hash = config_hash
        self.tracker = tracker or Tracker()
        self.sizes = data.sizes
        self.num_clients = len(data.sizes)
        self.clients = data.clients
        self.test = data.test
        self.client_evaluator = None
        if fed.client_eval is not None:
            if data.holdouts is None:
                raise ValueError("federate.client_eval is set but the federation data has no holdouts (split_holdouts)")
            self.client_evaluator = ClientEvaluator(
                fed.client_eval, fed.client, data.holdouts, data.clients, rank, world_size, fed.eval_batch_size, seed
            )
        self.client_scores: Optional[ClientScores] = None  # the newest per-client evaluation

        self.flat = FlatModel(model, self.device)
        self.global_state = self.flat.state.clone()
        self.delta = torch.empty_like(self.global_state)
        self.server = make_server_optimizer(fed)
        self.algorithm = algorithm = make_algorithm(fed)
        algorithm.setup(self.num_clients, self.flat.num_params, self.device)
        self.trainer = LocalTrainer(self.flat, fed.client, algorithm.prox_mu)
        self.cohort_trainer = None
        if fed.vectorize is not None:
            capacity = min(fed.vectorize, fed.clients_per_round)  # no stack rows that no rank could fill
            self.cohort_trainer = CohortTrainer(
                self.flat, fed.client, capacity, algorithm.prox_mu, algorithm.stateful_clients
            )
            if device.type == "cpu" and rank == 0:
                log.warning("federate.vectorize on CPU: batched clients usually train slower than one by one "
                            "there (see docs/federated.md); it pays on GPUs")
        self.aggregator = RoundAggregator(
            self.flat.size,
            self.flat.num_params,
            fed.clients_per_round,
            algorithm.stateful_clients,
            self.device,
            fed.secure.frac_bits if fed.secure.enabled else None,
            seed,
        )
        self.records: list[dict[str, Any]] = []
        self.timings: list[dict[str, Any]] = []
        self.round = 0

    # ------------------------------------------------------------------ the loop

    def run(self) -> dict[str, Any]:
        fed = self.fed
        self._resume()
        if not self.records:
            self.records.append(self._initial_record())
        progress = tqdm(
            total=fed.rounds, initial=self.round, desc=f"federate {self.out_dir.name if self.out_dir else 'simulation'}", unit="round",
            disable=self.rank != 0,
        )
        with progress:
            while self.round < fed.rounds:
                started = time.perf_counter()
                preempt = self._run_round(self.round + 1)
                self.round += 1
                self.timings.append({"round": self.round, "wall_s": round(time.perf_counter() - started, 6)})
                progress.update(1)
                last = self.round == fed.rounds
                if preempt or last or self.round % fed.checkpoint_every == 0:
                    self._checkpoint()
                elif self.round % fed.eval_every == 0:
                    self._write_logs()
                if preempt:
                    log.warning("preempted after round %d; checkpoint saved", self.round)
                    raise preemption.Preempted(f"federate preempted after round {self.round}")
        return self._finish()

    def _run_round(self, round_number: int) -> bool:
        fed, seed = self.fed, self.seed
        cohort = [int(c) for c in sample_clients(seed, round_number, self.num_clients, fed.clients_per_round)]
        weights = {c: float(self.sizes[c]) if fed.weighting == "samples" else 1.0 for c in cohort}
        costs = [int(self.sizes[c]) for c in cohort]
        mine = assign_to_ranks(cohort, costs, self.world_size)[self.rank]
        self.aggregator.begin(round_number, cohort, weights)
        if self.cohort_trainer is None:
            self._train_one_by_one(round_number, mine)
        else:
            self._train_vectorized(round_number, mine)
        sums = self.aggregator.reduce(preemption.requested())
        if sums.weight_total != self.aggregator.weight_total:
            raise RuntimeError(
                f"round {round_number}: client weights add up to {sums.weight_total}, expected "
                f"{self.aggregator.weight_total}; a rank skipped or repeated a client"
            )
        num_params = self.flat.num_params
        self.server.step(self.global_state[:num_params], sums.update[:num_params])
        if self.flat.num_buffers:
            # Floating-point buffers (BatchNorm statistics) are averaged, never optimised.
            self.global_state[num_params:].add_(sums.update[num_params:].to(torch.float32))
        self.algorithm.after_round(cohort, sums)
        self.records.append(self._record(round_number, cohort, sums))
        return sums.preempt

    def _train_one_by_one(self, round_number: int, clients: list[int]) -> None:
        for client in clients:
            result = self.trainer.train(
                self.global_state, self.clients[client], client_seed(self.seed, round_number, client),
                self.algorithm.correction(client),
            )
            self._contribute(client, self.flat.state, result)

    def _train_vectorized(self, round_number: int, clients: list[int]) -> None:
        """Chunks of up to ``federate.vectorize`` clients of similar size (so few steps are padding)."""
        by_size = sorted(clients, key=lambda c: (-int(self.sizes[c]), c))
        capacity = self.cohort_trainer.capacity
        for start in range(0, len(by_size), capacity):
            chunk = by_size[start : start + capacity]
            results = self.cohort_trainer.train(
                self.global_state,
                [self.clients[c] for c in chunk],
                [client_seed(self.seed, round_number, c) for c in chunk],
                self.algorithm.corrections(chunk),
            )
            deltas = self.cohort_trainer.updates(self.global_state)
            steps = [r.steps for r in results]
            state_changes, new_states = self.algorithm.cohort_state_changes(chunk, deltas, steps)
            self.aggregator.add_many(chunk, deltas, [r.mean_loss for r in results], steps, state_changes, new_states)

    def _contribute(self, client: int, state: torch.Tensor, result: LocalResult) -> None:
        """Add the client's trained model ``state`` (its update, and any new client state) to the round."""
        torch.sub(state, self.global_state, out=self.delta)
        num_params = self.flat.num_params
        state_change, new_state = self.algorithm.client_state_change(
            client, self.global_state[:num_params], state[:num_params], result.steps
        )
        self.aggregator.add(client, self.delta, result.mean_loss, result.steps, state_change, new_state)

    # ------------------------------------------------------------------ metrics

    def _communication(self) -> tuple[int, int]:
        """Parameters sent to and from each client per round: the model and the algorithm's extras."""
        per_client = self.flat.size + self.algorithm.extra_traffic(self.flat.num_params)
        return per_client, per_client

    def _record(self, round_number: int, cohort: list[int], sums) -> dict[str, Any]:
        down, up = self._communication()
        k = len(cohort)
        previous = self.records[-1]["params_cumulative"] if self.records else 0
        record: dict[str, Any] = {
            "round": round_number,
            "clients": cohort,
            "samples": int(sum(int(self.sizes[c]) for c in cohort)),
            "local_steps": sums.steps,
            "train_loss": sums.loss,
            "gradient_diversity": gradient_diversity(sums.sq_norm_sum, sums.plain_sq_norm),
            "update_norm": float(torch.linalg.vector_norm(sums.update[: self.flat.num_params])),
            "params_down": down * k,
            "params_up": up * k,
            "params_cumulative": previous + (down + up) * k,
        }
        if round_number % self.fed.eval_every == 0 or round_number == self.fed.rounds:
            record.update(self._evaluate())
        record.update(self._evaluate_clients(round_number))
        return record

    def _initial_record(self) -> dict[str, Any]:
        return {"round": 0, "params_cumulative": 0, **self._evaluate(), **self._evaluate_clients(0)}

    def _evaluate(self) -> dict[str, float]:
        self.flat.load(self.global_state)
        num_classes = len(self.labels)
        confusion = confusion_matrix(self.flat, self.test, num_classes, self.fed.eval_batch_size)
        confusion = all_ranks_sum(confusion).cpu().numpy()
        return {"test_accuracy": accuracy(confusion), "test_macro_f1": macro_f1(confusion)}

    def _evaluate_clients(self, round_number: int) -> dict[str, float]:
        """Per-client accuracy statistics on the rounds ``client_eval`` is due; nothing on the others."""
        evaluator = self.client_evaluator
        if evaluator is None or not evaluator.is_due(round_number, self.fed.rounds):
            return {}
        self.client_scores = evaluator.evaluate(self.flat, self.global_state, round_number)
        return self.client_scores.record()

    # ------------------------------------------------------------------ files

    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "round": self.round,
            "global_state": self.global_state.cpu(),
            "server": {k: v.cpu() for k, v in self.server.state_dict().items()},
            "records": self.records,
            "timings": self.timings,
            "config_hash": self.config_hash,
        }
        algorithm_state = self.algorithm.state_dict()
        if algorithm_state:  # stateless algorithms add no key, so their checkpoints keep their old form
            state[ALGORITHM_STATE] = {k: v.cpu() for k, v in algorithm_state.items()}
        if self.client_scores is not None:  # summary.json's per-client list, if the run ends right after a resume
            state[CLIENT_SCORES] = self.client_scores.state_dict()
        return state

    def _checkpoint(self) -> None:
        if self.out_dir is None:
            return
        if self.rank == 0:
            path = self.ckpt_dir / checkpoint_name(self.round)
            durable.save_checkpoint(path, self._state())
            durable.commit_checkpoint(path, round_of, KEEP_CHECKPOINTS)
            self._write_logs()
        if self._distributed:
            dist.barrier()  # no rank leaves (e.g. on preemption) before the checkpoint is durable

    @property
    def _distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized() and self.world_size > 1

    def _write_logs(self) -> None:
        if self.rank != 0 or self.out_dir is None:
            return
        durable.atomic_write_text(self.out_dir / "metrics.jsonl", _jsonl(self.records))
        durable.atomic_write_text(self.out_dir / "timing.jsonl", _jsonl(self.timings))
        wall = {timing["round"]: timing["wall_s"] for timing in self.timings}
        for record in self.records:  # the tracker skips rounds it logged before
            self.tracker.log_metrics(record["round"], tracked_values(record, wall.get(record["round"])))

    def _resume(self) -> None:
        """Continue from the newest intact checkpoint. Rank 0 alone checks them and sets damaged ones
        aside (one warning line each); every rank loads the one it chose."""
        if self.ckpt_dir is None:
            return
        chosen = [durable.newest_intact_checkpoint(self.ckpt_dir, round_of, durable.checkpoint_problem)
                  if self.rank == 0 else None]
        if self._distributed:
            dist.broadcast_object_list(chosen, src=0)
        path = chosen[0]
        if path is None:
            return
        state = durable.load_checkpoint(path)
        if state.get("config_hash") != self.config_hash:
            raise RuntimeError(f"checkpoint {path} was written by another config; use a new run_dir")
        self.round = int(state["round"])
        self.global_state.copy_(state["global_state"])
        self.server.load_state_dict({k: v.to(self.device) for k, v in state["server"].items()})
        self.algorithm.load_state_dict(state.get(ALGORITHM_STATE, {}))
        if CLIENT_SCORES in state:
            self.client_scores = ClientScores.from_state(state[CLIENT_SCORES])
        self.records = list(state["records"])
        self.timings = list(state["timings"])
        log.info("resuming %s from %s (round %d of %d)", self.out_dir.name, path.name, self.round, self.fed.rounds)

    def _finish(self) -> dict[str, Any]:
        self.flat.load(self.global_state)
        summary = self._summary()
        if self.rank == 0 and self.out_dir is not None:
            save_model(self.out_dir / "model.safetensors", self.flat.model, self.labels, self.model_config)
            self._write_logs()
            durable.atomic_write_json(self.out_dir / "summary.json", summary)
        return summary

    def _summary(self) -> dict[str, Any]:
        evaluated = [r for r in self.records if "test_accuracy" in r]
        final = evaluated[-1]
        summary: dict[str, Any] = {
            "model": str(self.out_dir / "model.safetensors") if self.out_dir else None,
            "metrics": str(self.out_dir / "metrics.jsonl") if self.out_dir else None,
            "rounds": self.round,
            "algorithm": self.fed.algorithm,
            "clients": self.num_clients,
            "initial_test_accuracy": evaluated[0]["test_accuracy"],
            "test_accuracy": final["test_accuracy"],
            "test_macro_f1": final["test_macro_f1"],
            "params_communicated": self.records[-1]["params_cumulative"],
        }
        target = self.fed.target_accuracy
        if target is not None:
            reached = next((r for r in evaluated if r["test_accuracy"] >= target), None)
            summary["target_accuracy"] = target
            summary["target_round"] = reached["round"] if reached else None
            summary["params_to_target"] = reached["params_cumulative"] if reached else None
        if self.client_scores is not None:
            summary["client_eval_round"] = self.client_scores.round
            summary["client_accuracy"] = self.client_scores.per_client()
        return summary


def checkpoint_name(round_number: int) -> str:
    return f"round-{round_number:06d}.pt"


def round_of(name: str) -> Optional[int]:
    match = _CHECKPOINT_NAME.match(name)
    return int(match.group(1)) if match else None


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)

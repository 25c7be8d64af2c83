"""The benchmark workload on pfl-research's simulation API; runs inside the ``pfl`` contender venv.

Built as pfl's own CIFAR-10 benchmark builds it: a ``PyTorchModel`` with ``torch.optim.SGD`` as
local optimizer and a central SGD (lr 1) applying the averaged update, ``FederatedAveraging``,
a ``SimulatedBackend`` weighting users by their number of data points, and a
``FederatedDataset.from_slices`` with pfl's random user sampler (with replacement, as there).
Threads per process: ``OMP_NUM_THREADS`` (ranks default to cores / W).

``--workers W > 1`` uses pfl's native multi-process mode: W copies of this script, each told
``PFL_WORKER_RANK`` and the shared ``PFL_WORKER_ADDRESSES``; on import pfl joins them in a gloo
``torch.distributed`` group, splits every cohort over the ranks and all-reduces the updates.

Prints one JSON line: ``{"contender": "pfl", "workers", "rounds", "loop_s", "setup_s"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

from proc import process_start

RANK_VAR, ADDRESSES_VAR, T0_VAR = "PFL_WORKER_RANK", "PFL_WORKER_ADDRESSES", "BENCH_PFL_T0"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900, help="seconds before the ranks are killed")
    return parser.parse_args()


def launch(workers: int, timeout: float, t0: float) -> int:
    """Start the ranks the way pfl's docs do (one process per PFL_WORKER_RANK) and wait for all."""
    addresses = ",".join(f"127.0.0.1:{_free_port()}" for _ in range(workers))
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, len(os.sched_getaffinity(0)) // workers))
    env = {**os.environ, ADDRESSES_VAR: addresses, T0_VAR: repr(t0), "OMP_NUM_THREADS": threads}
    ranks = [subprocess.Popen([sys.executable, *sys.argv], env={**env, RANK_VAR: str(r)}) for r in range(workers)]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            codes = [p.poll() for p in ranks]
            if any(c not in (None, 0) for c in codes):
                return next(c for c in codes if c not in (None, 0))  # one rank failed: the others would hang
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.05)
        print(f"pfl ranks still running after {timeout:.0f} s", file=sys.stderr)
        return 124
    finally:
        for p in ranks:
            if p.poll() is None:
                p.kill()
                p.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(rounds: int, workers: int, t0: float) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist
    from torch.nn import functional as F

    from pfl.aggregate.simulate import SimulatedBackend
    from pfl.aggregate.weighting import WeightByDatapoints
    from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
    from pfl.data.federated_dataset import FederatedDataset
    from pfl.data.sampling import get_user_sampler
    from pfl.hyperparam import NNTrainHyperParams
    from pfl.metrics import Weighted
    from pfl.model.pytorch import PyTorchModel

    from workload import BATCH, COHORT, LR, SEED, USERS, pfl_cnn, user_slice, user_tensors

    def loss(module, x, y, eval=False):
        module.train(not eval)
        return F.cross_entropy(module(x), y)

    def metrics(module, x, y, eval=True):
        # pfl evaluates every user before and after local training in the first central
        # iteration whatever evaluation_frequency says; the workload has no evaluation.
        return {"loss": Weighted(0.0, len(x))}

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    x, y = user_tensors()
    users = {u: [x[user_slice(u)], y[user_slice(u)]] for u in range(USERS)}
    dataset = FederatedDataset.from_slices(users, get_user_sampler("random", list(range(USERS))))

    module = pfl_cnn()
    module.loss = loss.__get__(module)
    module.metrics = metrics.__get__(module)
    model = PyTorchModel(model=module, local_optimizer_create=torch.optim.SGD,
                         central_optimizer=torch.optim.SGD(module.parameters(), lr=1.0))
    backend = SimulatedBackend(training_data=dataset, val_data=None, postprocessors=[WeightByDatapoints()])
    algorithm_params = NNAlgorithmParams(central_num_iterations=rounds, evaluation_frequency=rounds + 1,
                                         train_cohort_size=COHORT, val_cohort_size=None)
    train_params = NNTrainHyperParams(local_learning_rate=LR, local_num_epochs=1, local_batch_size=BATCH)

    distributed = dist.is_available() and dist.is_initialized()
    if distributed:
        assert dist.get_world_size() == workers, "pfl did not join the ranks it was given"
        dist.barrier()
    started = time.time()
    FederatedAveraging().run(algorithm_params=algorithm_params, backend=backend, model=model,
                             model_train_params=train_params, callbacks=[], send_metrics_to_platform=False)
    if distributed:
        dist.barrier()
    loop = time.time() - started
    if not distributed or dist.get_rank() == 0:
        print(json.dumps({"contender": "pfl", "workers": workers, "rounds": rounds,
                          "loop_s": round(loop, 4), "setup_s": round(started - t0, 4)}), flush=True)
    if distributed:
        dist.destroy_process_group()


def main() -> None:
    args = parse_args()
    # A rank's set-up began when its launcher started.
    t0 = float(os.environ[T0_VAR]) if RANK_VAR in os.environ and T0_VAR in os.environ else process_start()
    if args.workers > 1 and RANK_VAR not in os.environ:
        sys.exit(launch(args.workers, args.timeout, t0))
    train(args.rounds, args.workers, t0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""The FL simulator against a plain PyTorch loop, pfl-research and Flower, all run in one go.

The workload is pfl-research's CIFAR-10 benchmark scaled to a 2-core CPU
(``contenders/workload.py``): its 2-conv CNN (~100 MFLOP per training image), 100 users x 50
random CIFAR-shaped images, 10 users per round, 10 rounds, batch 10, one local epoch, SGD lr 0.1,
FedAvg. Every contender is a separate process on the same data, timed the same way: the whole
process (``process_s``, start-up and imports included) and its round loop (``loop_s``), median
of ``--repeats``:

* ``plain``: idiomatic PyTorch over the cohort (load global weights, SGD, weighted average);
* ``sequential`` / ``vectorized``: ``gptfl_hpc.fl.simulator.Simulation`` training a rank's clients
  one after another, or ``federate.vectorize`` clients at once (1 rank x all threads, and
  2 ranks x 1 thread on a spawned gloo world);
* ``pfl``: pfl-research's own simulation (1 process, and 2 worker processes in pfl's own
  multi-process mode), built as its CIFAR-10 benchmark builds it (users sampled with replacement,
  local batches in order);
* ``flower``: Flower's simulation engine on Ray, 2 client actors (each ClientApp call builds its
  model and a shuffling DataLoader, as Flower's PyTorch quickstart does).

pfl-research and Flower are installed on first use into their own virtualenvs under
``.cache/bench-venvs/`` (pfl pins versions that Flower's do not admit), sharing this venv's torch.

``--gpu`` instead measures rounds/s on CUDA, sequential vs vectorized, at cohorts 10 and 100 (the
first round, which holds CUDA start-up and the layout probe, is left out).

Allocator: glibc's default thresholds return large freed blocks to the OS and map them again on
every step; the script re-executes itself under ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
(printed), which every contender process inherits.

    .venv/bin/python benchmarks/bench_fl.py            # everything: 10 rounds, median of 3
    .venv/bin/python benchmarks/bench_fl.py --quick    # 2 rounds, 1 repeat, no pfl/Flower: a sanity run
    python benchmarks/bench_fl.py --gpu                # on a GPU machine (benchmarks/gpu_check.sh)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024), "MALLOC_TRIM_THRESHOLD_": str(1024**3)}

if __name__ == "__main__" and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})

STARTED = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from contenders import run_contender, run_timed  # noqa: E402
from contenders.workload import BATCH, COHORT, LR, PER_USER, SEED, USERS, pfl_cnn, user_slice, user_tensors  # noqa: E402

from gptfl_hpc.fl.clientdata import Samples  # noqa: E402
from gptfl_hpc.fl.config import ClientConfig, FederateConfig  # noqa: E402
from gptfl_hpc.fl.sampling import sample_clients  # noqa: E402
from gptfl_hpc.fl.simulator import FederationData, Simulation  # noqa: E402
from gptfl_hpc.ranks import rank_device, run_on_ranks  # noqa: E402


# --------------------------------------------------------------------------- contenders of this venv


def plain_loop(rounds: int) -> float:
    """What one would write by hand: resident tensors, one model, torch.optim.SGD, state dicts."""
    x, y = user_tensors()
    model = pfl_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    global_state = {k: v.clone() for k, v in model.state_dict().items()}
    started = time.perf_counter()
    for t in range(1, rounds + 1):
        cohort = sample_clients(SEED, t, USERS, COHORT)
        total = {k: torch.zeros_like(v) for k, v in global_state.items()}
        weight = 0
        for user in cohort:
            model.load_state_dict(global_state)
            ux, uy = x[user_slice(int(user))], y[user_slice(int(user))]
            perm = torch.randperm(len(uy), generator=torch.Generator().manual_seed(int(user) + 1000 * t))
            for idx in perm.split(BATCH):
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(ux[idx]), uy[idx]).backward()
                optimizer.step()
            for k, v in model.state_dict().items():
                total[k].add_(v - global_state[k], alpha=len(uy))
            weight += len(uy)
        for k in global_state:
            global_state[k].add_(total[k] / weight)
    return time.perf_counter() - started


def simulator_rank(rank: int, world_size: int, rounds: int, threads: int, cohort: int, vectorize, skip: int) -> float:
    """Round-loop seconds of one rank (rounds after the first ``skip`` ones)."""
    torch.set_num_threads(threads)
    device = rank_device()
    x, y = user_tensors()
    x, y = x.to(device), y.to(device)
    data = {u: Samples(x[user_slice(u)], y[user_slice(u)]) for u in range(USERS)}
    empty = Samples(torch.zeros(0, 3, 32, 32, device=device), torch.zeros(0, dtype=torch.int64, device=device))
    federation = FederationData(data, np.full(USERS, PER_USER, dtype=np.int64), empty, [str(k) for k in range(10)])
    fed = FederateConfig(
        algorithm="fedavg", init="scratch", rounds=rounds, clients_per_round=cohort, eval_every=10**6,
        checkpoint_every=10**6, vectorize=vectorize, client=ClientConfig(local_epochs=1, batch_size=BATCH, lr=LR),
    )
    simulation = Simulation(rank, world_size, fed, SEED, pfl_cnn(), federation, device)
    if dist.is_initialized():
        dist.barrier()
    simulation.run()  # per-round wall times end on the round's all_reduce, so they include the device work
    return sum(t["wall_s"] for t in simulation.timings[skip:])


def contender_main(args: argparse.Namespace) -> None:
    """``--contender``: run one contender of this venv and print its one JSON line."""
    torch.set_num_threads(args.threads)
    setup_s = time.perf_counter() - STARTED
    if args.contender == "plain":
        loop_s = plain_loop(args.rounds)
    else:
        vectorize = args.cohort if args.contender == "vectorized" else None
        loop_s = run_on_ranks(simulator_rank, args.ranks, (args.rounds, args.threads, args.cohort, vectorize, args.skip))
    print(json.dumps({"contender": args.contender, "workers": args.ranks, "rounds": args.rounds - args.skip,
                      "loop_s": loop_s, "setup_s": setup_s}))


def run_here(name: str, rounds: int, ranks: int, threads: int, cohort: int = COHORT, skip: int = 0) -> dict:
    """One contender of this venv as its own process, timed like pfl-research and Flower."""
    command = [sys.executable, __file__, "--contender", name, "--rounds", str(rounds), "--ranks", str(ranks),
               "--threads", str(threads), "--cohort", str(cohort), "--skip", str(skip)]
    return run_timed(name, command, threads, timeout=1800)


# --------------------------------------------------------------------------- reports


def sgemm_peak(threads: int) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(5):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * 2048**3 / min(times) / 1e9


def train_flops_per_image(model: nn.Module) -> float:
    """Forward multiply-adds x 2 FLOP x 3 (forward, input gradient, weight gradient)."""
    macs, size = 0, 32
    for layer in model:
        if isinstance(layer, nn.Conv2d):
            size = size - layer.kernel_size[0] + 1
            macs += size * size * layer.out_channels * layer.in_channels * layer.kernel_size[0] ** 2
        elif isinstance(layer, nn.MaxPool2d):
            size //= 2
        elif isinstance(layer, nn.Linear):
            macs += layer.in_features * layer.out_features
    return 6.0 * macs


def cpu_comparison(args: argparse.Namespace) -> None:
    threads = args.threads
    print(f"allocator: {' '.join(f'{k}={os.environ.get(k)}' for k in MALLOC_ENV)}")
    print(f"workload: {USERS} users x {PER_USER} images, {COHORT} per round, {args.rounds} rounds, batch {BATCH}, "
          f"lr {LR}; median of {args.repeats}; {threads} threads")
    runs = {
        "plain": lambda: run_here("plain", args.rounds, 1, threads),
        "sequential 1x": lambda: run_here("sequential", args.rounds, 1, threads),
        "vectorized 1x": lambda: run_here("vectorized", args.rounds, 1, threads),
        "sequential 2x1": lambda: run_here("sequential", args.rounds, 2, 1),
        "vectorized 2x1": lambda: run_here("vectorized", args.rounds, 2, 1),
    }
    if not args.quick:
        runs["pfl 1"] = lambda: run_contender("pfl", args.rounds, workers=1)
        runs["pfl 2"] = lambda: run_contender("pfl", args.rounds, workers=2)
        runs["flower"] = lambda: run_contender("flower", args.rounds, workers=2)
    results: dict[str, list[dict]] = {name: [] for name in runs}
    for repeat in range(args.repeats):
        for name, run in runs.items():  # interleaved, so drift of the machine hits every contender alike
            results[name].append(run())
            print(f"  [{repeat + 1}/{args.repeats}] {name:<16s} loop {results[name][-1]['loop_s']:7.3f} s  "
                  f"process {results[name][-1]['process_s']:7.3f} s", flush=True)
    loop = {k: statistics.median(r["loop_s"] for r in v) for k, v in results.items()}
    process = {k: statistics.median(r["process_s"] for r in v) for k, v in results.items()}

    peak = sgemm_peak(threads)
    flops = train_flops_per_image(pfl_cnn()) * COHORT * PER_USER * args.rounds
    labels = {
        "plain": "plain PyTorch loop", "sequential 1x": f"simulator sequential, 1 rank x {threads} threads",
        "vectorized 1x": f"simulator vectorized, 1 rank x {threads} threads",
        "sequential 2x1": "simulator sequential, 2 ranks x 1 thread",
        "vectorized 2x1": "simulator vectorized, 2 ranks x 1 thread",
        "pfl 1": "pfl-research, 1 process", "pfl 2": "pfl-research, 2 worker processes",
        "flower": "Flower + Ray simulation, 2 actors x 1 thread",
    }
    print(f"\nmatrix-multiply peak (2048^3 sgemm, {threads} threads): {peak:.1f} GFLOP/s")
    print(f"  {'contender':<46s} {'loop s':>8s} {'process s':>10s} {'GFLOP/s':>8s} {'of peak':>8s}")
    for key in runs:
        rate = flops / loop[key] / 1e9
        print(f"  {labels[key]:<46s} {loop[key]:8.3f} {process[key]:10.3f} {rate:8.1f} {rate / peak:8.1%}")

    simulators = {
        "sequential, 1 rank": "sequential 1x", "sequential, 2 ranks": "sequential 2x1",
        "vectorized, 1 rank": "vectorized 1x", "vectorized, 2 ranks": "vectorized 2x1",
    }
    others = ["plain"] + ([] if args.quick else ["pfl 1", "pfl 2", "flower"])
    print("\nratios, measured in this run: contender's time / simulator's time (> 1: the simulator is faster)")
    print("round loop, and [whole process]:")
    print(f"  {'simulator':<22s}" + "".join(f"{name:>18s}" for name in others))
    for label, key in simulators.items():
        cells = [f"{loop[o] / loop[key]:7.3f} [{process[o] / process[key]:6.3f}]" for o in others]
        print(f"  {label:<22s}" + "".join(f"{cell:>18s}" for cell in cells))
    seq = min(loop["sequential 1x"], loop["sequential 2x1"])
    vec = min(loop["vectorized 1x"], loop["vectorized 2x1"])
    print("\ngoals (best configuration of each):")
    print(f"  plain loop / simulator sequential 1 rank       {loop['plain'] / loop['sequential 1x']:.3f}  [>= 0.95]")
    print(f"  sequential / vectorized                        {seq / vec:.3f}")
    if not args.quick:
        pfl_best = min(loop["pfl 1"], loop["pfl 2"])
        best_process = min(process[key] for key in simulators.values())
        print(f"  pfl-research / vectorized                      {pfl_best / vec:.3f}  [>= 1.2]")
        print(f"  pfl-research / simulator (either mode)         {pfl_best / min(seq, vec):.3f}")
        print(f"  Flower / simulator, whole process              {process['flower'] / best_process:.3f}  [>= 3.5]")


def gpu_comparison(args: argparse.Namespace) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("bench_fl --gpu: no CUDA device is visible")
    print(f"device: {torch.cuda.get_device_name()}; {args.rounds} timed rounds after 1 warm-up round, "
          f"median of {args.repeats}")
    goals = {10: 5.0, 100: 10.0}
    for cohort in (10, 100):
        rates = {}
        for name in ("sequential", "vectorized"):
            loops = [run_here(name, args.rounds + 1, 1, 1, cohort=cohort, skip=1)["loop_s"] for _ in range(args.repeats)]
            rates[name] = args.rounds / statistics.median(loops)
            print(f"  cohort {cohort:3d} {name:<10s} {rates[name]:8.2f} rounds/s", flush=True)
        print(f"  cohort {cohort:3d} vectorized / sequential: {rates['vectorized'] / rates['sequential']:.2f}x "
              f"[>= {goals[cohort]:g}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--quick", action="store_true", help="2 rounds, 1 repeat, without pfl-research and Flower")
    parser.add_argument("--gpu", action="store_true", help="rounds/s on CUDA, sequential vs vectorized, cohorts 10 and 100")
    parser.add_argument("--contender", choices=["plain", "sequential", "vectorized"], help=argparse.SUPPRESS)
    parser.add_argument("--ranks", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--cohort", type=int, default=COHORT, help=argparse.SUPPRESS)
    parser.add_argument("--skip", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        contender_main(args)
    elif args.gpu:
        gpu_comparison(args)
    else:
        if args.quick:
            args.rounds, args.repeats = 2, 1
        cpu_comparison(args)


if __name__ == "__main__":
    main()

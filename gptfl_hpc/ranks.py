"""Run one function on every rank of a torch.distributed world.

A stage that uses several ranks calls :func:`run_on_ranks`. Under ``srun``/``torchrun`` (``RANK``
and ``WORLD_SIZE`` already in the environment) this process is one rank: it joins the world with
``env://``. Otherwise the world is started here with ``torch.multiprocessing`` (spawn), one
process per rank on this machine, and the caller gets rank 0's result back. Either way the stage
code is the same function, so inline, local and Slurm runs share one code path.

Preemption: each rank sees USR2 as the cooperative flag (:mod:`gptfl_hpc.preemption`); ranks agree
on it with :func:`any_rank_requested` so they all stop at the same safe point. A spawned world whose
rank 0 stopped with ``Preempted`` re-raises ``Preempted`` in the caller, where the launch layer
requeues the task.
"""

from __future__ import annotations

import os
import signal
import socket
from datetime import timedelta
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gptfl_hpc import preemption
from gptfl_hpc.errors import UserError

RankFn = Callable[..., Any]  # fn(rank, world_size, *args) -> result (rank 0's is returned)

_TIMEOUT = timedelta(minutes=30)


def launched_world() -> Optional[tuple[int, int]]:
    """``(rank, world_size)`` when a launcher (srun via the launch layer, torchrun) started several
    ranks. A single scheduled task (one job running the whole pipeline) is not a world: it starts
    its ranks itself."""
    if "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return None


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def rank_device() -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` when GPUs are visible, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    return torch.device("cpu")


def cpu_threads_per_rank(ranks_on_node: int) -> int:
    """CPU threads for one rank: its share of the CPUs Slurm gave the task (``--cpus-per-task``),
    else an even share of the cores this process may use. Under Slurm a job's arithmetic then
    depends on what it asked for, not on how many ranks happen to share a node (the thread count
    changes the order of float sums), so 2 nodes x 1 task and 1 node x 2 tasks train alike."""
    ranks_on_node = max(ranks_on_node, 1)
    allotted = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if allotted.isdigit() and int(allotted) > 0:
        one_task_per_rank = os.environ.get("SLURM_NTASKS", "1") == os.environ.get("WORLD_SIZE", "1")
        return int(allotted) if one_task_per_rank else max(1, int(allotted) // ranks_on_node)
    return max(1, len(os.sched_getaffinity(0)) // ranks_on_node)


def check_devices(world_size: int, ranks_per_node: Optional[int] = None) -> None:
    """One device per rank on GPU machines: refuse more ranks per node than visible GPUs."""
    if not torch.cuda.is_available():
        return
    per_node = ranks_per_node or world_size
    gpus = torch.cuda.device_count()
    if per_node > gpus:
        raise UserError(f"{per_node} ranks per node but {gpus} GPUs visible; use at most {gpus} ranks per node")


def check_rank_devices(ranks_key: str, world_size: int) -> None:
    """One device per rank on this node: a GPU each, or on CPU-only machines a core each.
    ``ranks_key`` (``pretrain.ranks``, ``federate.ranks``) is the setting a refusal names."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world_size)) if launched_world() else world_size
    if torch.cuda.is_available():
        check_devices(world_size, per_node)
        return
    cores = len(os.sched_getaffinity(0))
    if per_node > cores:
        raise UserError(
            f"{ranks_key} puts {per_node} ranks on a node with {cores} CPU cores and no GPU; "
            f"use at most {cores} ranks per node"
        )


def run_on_ranks(fn: RankFn, world_size: int, args: tuple = (), backend: Optional[str] = None) -> Any:
    """``fn(rank, world_size, *args)`` on every rank with the process group up; rank 0's result."""
    backend = backend or default_backend()
    launched = launched_world()
    if launched is not None:
        rank, size = launched
        if size != world_size:
            raise UserError(
                f"the job has {size} tasks but the config asks for {world_size} ranks; make them equal"
            )
        check_devices(world_size, int(os.environ.get("LOCAL_WORLD_SIZE", world_size)))
        return _run_rank(rank, world_size, backend, "env://", fn, args)
    check_devices(world_size)
    init_method = f"tcp://127.0.0.1:{_free_port()}"
    if world_size == 1:
        # Still a real process group, so collectives take the same path as with many ranks.
        return _run_rank(0, 1, backend, init_method, fn, args)
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.start_processes(
        _spawned_rank,
        args=(world_size, backend, init_method, fn, args, results),
        nprocs=world_size,
        join=True,
        start_method="spawn",
    )
    status, value = results.get()
    if status == "preempted":
        raise preemption.Preempted(value)
    return value


def any_rank_requested() -> bool:
    """True on every rank when any rank saw a preemption request (one tiny all_reduce)."""
    flag = preemption.requested()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    device = rank_device() if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def _run_rank(rank: int, world_size: int, backend: str, init_method: str, fn: RankFn, args: tuple) -> Any:
    # NCCL is told its device up front: no "guessing device ID" and no stray context on cuda:0.
    device_id = rank_device() if backend == "nccl" else None
    dist.init_process_group(
        backend, init_method=init_method, rank=rank, world_size=world_size, timeout=_TIMEOUT, device_id=device_id
    )
    try:
        return fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def _die_with_parent() -> None:
    """Linux: end this rank when the process that spawned it dies (a SIGKILLed run leaves no ranks)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the ranks still stop when their collectives time out


def _spawned_rank(rank: int, world_size: int, backend: str, init_method: str, fn: RankFn, args: tuple, results) -> None:
    _die_with_parent()
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size))
    # Slurm signals every process of the step; without a handler USR2 would kill this rank.
    signal.signal(signal.SIGUSR2, lambda signum, frame: preemption.request())
    try:
        result = _run_rank(rank, world_size, backend, init_method, fn, args)
    except preemption.Preempted as exc:
        if rank == 0:
            results.put(("preempted", str(exc)))
        return
    if rank == 0:
        results.put(("ok", result))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

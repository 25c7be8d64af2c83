"""Jobs that check a cluster configuration: where a task landed, and whether its ranks can talk."""

from __future__ import annotations

import os
import platform
import socket
import time


def describe_node() -> dict:
    """What a job sees: host, CPUs it may use, GPUs, library versions, Slurm ids."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "host": socket.gethostname(),
        "cpus": len(os.sched_getaffinity(0)),
        "gpus": gpus,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "partition": os.environ.get("SLURM_JOB_PARTITION"),
    }


def all_reduce_check() -> dict:
    """Join the job's torch.distributed world and all-reduce ``rank + 1`` (NCCL on GPUs, else gloo)."""
    import torch
    import torch.distributed as dist

    use_cuda = torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    started = time.perf_counter()
    dist.init_process_group(backend, init_method="env://")
    try:
        world = dist.get_world_size()
        value = torch.tensor([float(dist.get_rank() + 1)], device=device)
        dist.all_reduce(value)
        return {
            "rank": dist.get_rank(),
            "world_size": world,
            "backend": backend,
            "master": f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
            "ok": value.item() == world * (world + 1) / 2,
            "seconds": round(time.perf_counter() - started, 3),
        }
    finally:
        dist.destroy_process_group()

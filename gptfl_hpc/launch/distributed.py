"""torch.distributed environment for multi-task jobs, read from the scheduler.

Exports ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` so the science calls ``init_process_group(init_method="env://")`` and nothing else.
Works under submitit (local or Slurm) and under a plain ``srun`` from an sbatch script.
"""

from __future__ import annotations

import os
import subprocess

import submitit


def export_distributed_env() -> dict[str, str]:
    """Set the torch.distributed variables for this task; a no-op outside a scheduled job."""
    if "SUBMITIT_EXECUTOR" in os.environ:
        env = _from_submitit()
    elif "SLURM_PROCID" in os.environ:
        env = _from_slurm()
    else:
        return {}
    os.environ.update(env)
    return env


def _from_submitit() -> dict[str, str]:
    # GPU binding is left to Slurm (--gpus-per-task) or to the stage (cuda:LOCAL_RANK).
    env = submitit.helpers.TorchDistributedEnvironment()
    return _as_env(env.rank, env.world_size, env.local_rank, env.local_world_size, env.master_addr, env.master_port)


def _from_slurm() -> dict[str, str]:
    """A task started by plain ``srun`` inside an sbatch script."""
    tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", "1"))
    nodelist = os.environ.get("SLURM_JOB_NODELIST", "127.0.0.1")
    hosts = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
    ).stdout.split()
    # One port per job, the same on every task, away from the ephemeral range.
    port = 20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 30000
    return _as_env(
        int(os.environ["SLURM_PROCID"]),
        tasks,
        int(os.environ.get("SLURM_LOCALID", "0")),
        max(tasks // nodes, 1),
        hosts[0],
        port,
    )


def _as_env(rank, world_size, local_rank, local_world_size, master_addr, master_port) -> dict[str, str]:
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_RANK": str(local_rank),
        "LOCAL_WORLD_SIZE": str(local_world_size),
        "MASTER_ADDR": str(master_addr),
        "MASTER_PORT": str(master_port),
    }

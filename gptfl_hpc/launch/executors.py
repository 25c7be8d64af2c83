"""submitit executors built from the ``launcher`` config section.

The executor is always named explicitly. submitit's ``AutoExecutor`` is never used: it silently
picks Slurm whenever ``srun`` is on PATH, which turns a laptop test into a cluster submission.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

import submitit

from gptfl_hpc.config import LauncherConfig
from gptfl_hpc.launch.sbatch import render_sbatch


def slurm_parameters(
    launcher: LauncherConfig,
    *,
    job_name: Optional[str] = None,
    nodes: Optional[int] = None,
    tasks_per_node: Optional[int] = None,
    dependency: Optional[str] = None,
) -> dict:
    """``SlurmExecutor.update_parameters`` arguments: the config, then what this job needs."""
    slurm = launcher.slurm
    extra: dict = {"requeue": True}
    if dependency:
        # Without this a job whose dependency failed would stay pending forever.
        extra["kill_on_invalid_dep"] = "yes"
    extra.update(slurm.extra)
    params = {
        "job_name": job_name or slurm.job_name,
        "time": slurm.time_min,
        "nodes": nodes or slurm.nodes,
        "ntasks_per_node": tasks_per_node or slurm.tasks_per_node,
        "cpus_per_task": slurm.cpus_per_task,
        "array_parallelism": slurm.array_parallelism,
        "signal_delay_s": slurm.signal_delay_s,
        "setup": list(slurm.setup),
        "srun_args": list(slurm.srun_args),
        "additional_parameters": extra,
    }
    optional = {
        "partition": slurm.partition,
        "account": slurm.account,
        "qos": slurm.qos,
        "mem": slurm.mem,
        "gpus_per_node": slurm.gpus_per_node or None,
        "dependency": dependency,
    }
    params.update({key: value for key, value in optional.items() if value is not None})
    return params


def make_executor(
    launcher: LauncherConfig,
    folder: Path,
    *,
    job_name: Optional[str] = None,
    nodes: Optional[int] = None,
    tasks_per_node: Optional[int] = None,
    dependency: Optional[str] = None,
) -> submitit.Executor:
    """The submitit executor for ``launcher.executor`` (``local``, ``slurm`` or ``debug``)."""
    kind = launcher.executor
    if kind == "slurm":
        # submitit's own timeout counter never decides a requeue: its USR2 handler ends in
        # Preemptible.checkpoint, and launch.requeue counts launcher.slurm.max_requeues.
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
        executor.update_parameters(
            **slurm_parameters(
                launcher, job_name=job_name, nodes=nodes, tasks_per_node=tasks_per_node, dependency=dependency
            )
        )
        return executor
    if kind == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(
            timeout_min=launcher.slurm.time_min,
            tasks_per_node=tasks_per_node or launcher.slurm.tasks_per_node,
            gpus_per_node=launcher.slurm.gpus_per_node,
        )
        return executor
    if kind == "debug":
        return submitit.DebugExecutor(folder=folder)
    raise ValueError(f"executor '{kind}' is not a submitit executor")


def sbatch_script(launcher: LauncherConfig, folder: Path, *, array: Optional[int] = None, **job: Optional[str]) -> str:
    """The sbatch script ``make_executor`` would submit (an ``array``-task array job when given);
    writes and submits nothing."""
    return render_sbatch(slurm_parameters(launcher, **job), folder, array=array)


def max_array_size(default: int = 1001) -> int:
    """The cluster's ``MaxArraySize`` (array indices run 0..MaxArraySize-1); Slurm's default if unknown."""
    try:
        proc = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return default
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and value.strip().isdigit():
            return int(value.strip())
    return default

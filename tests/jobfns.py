"""Functions that tests run as jobs (inline, local, Slurm). Importable by job processes."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from gptfl_hpc import preemption
from gptfl_hpc.durable import atomic_write_json


def add(a: int, b: int) -> int:
    return a + b


def square(x: int) -> int:
    return x * x


def touch_and_return(path: str, value: int) -> int:
    Path(path).write_text(str(value))
    return value


def fail(message: str = "deliberate failure") -> None:
    print("about to fail", flush=True)
    raise ValueError(message)


def kill_self_hard() -> None:
    print("last words before SIGKILL", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def count(state_dir: str, steps: int, step_s: float) -> int:
    """A checkpointed loop: one durable state file, one line per executed step, safe points between.

    Returns the sum of executed step indices; a correct resume executes each step exactly once.
    """
    state_dir_path = Path(state_dir)
    state_dir_path.mkdir(parents=True, exist_ok=True)
    state_file = state_dir_path / "state.json"
    with open(state_dir_path / "starts.log", "a") as log:
        log.write(f"{os.getpid()} {os.environ.get('SLURM_RESTART_COUNT', '0')}\n")
    done = json.loads(state_file.read_text())["done"] if state_file.exists() else 0
    for step in range(done, steps):
        time.sleep(step_s)
        with open(state_dir_path / "steps.log", "a") as log:
            log.write(f"{step}\n")
        atomic_write_json(state_file, {"done": step + 1})
        preemption.raise_if_requested()
    steps_done = [int(line) for line in (state_dir_path / "steps.log").read_text().split()]
    return sum(steps_done)


def all_reduce_ranks() -> dict:
    """Join the job's torch.distributed world (env://) and all-reduce rank + 1."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="env://")
    value = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(value)
    out = {"rank": dist.get_rank(), "world": dist.get_world_size(), "sum": value.item(),
           "local_rank": int(os.environ["LOCAL_RANK"])}
    dist.destroy_process_group()
    return out


def stage_echo(config) -> dict:
    """A stage function: run(config) -> outputs."""
    from gptfl_hpc.rundir import prepare_run_dir

    run_dir = prepare_run_dir(config)
    return {"labels": len(config.labels.names), "seed": config.seed, "run_dir": str(run_dir)}


if __name__ == "__main__":
    # Plain-sbatch entry point: python jobfns.py count STATE_DIR STEPS STEP_S
    from gptfl_hpc.launch.distributed import export_distributed_env
    from gptfl_hpc.launch.requeue import run_preemptible

    export_distributed_env()
    _, name, state_dir, steps, step_s = sys.argv
    task_dir = Path(state_dir) / os.environ.get("SLURM_ARRAY_TASK_ID", "0")
    result = run_preemptible(lambda: count(str(task_dir), int(steps), float(step_s)), grace_s=30, max_requeues=3)
    (task_dir / "result.json").write_text(json.dumps({"sum": result, "rank": os.environ["RANK"]}))


def count_task(task: tuple) -> int:
    """``count`` for ``map_array``, which passes one item per task."""
    return count(*task)


class SlowToSave:
    """A result whose pickling takes ``seconds``: a USR2 then lands after the stage returned, while
    submitit's own signal handler is in place again."""

    def __init__(self, marker: str, seconds: float):
        self.marker, self.seconds = marker, seconds

    def __reduce__(self):
        Path(self.marker).write_text("saving")
        time.sleep(self.seconds)
        return (str, ("saved",))


def slow_to_save(state_dir: str, seconds: float) -> SlowToSave:
    """Logs each start (with SLURM_RESTART_COUNT) and returns a result slow to save on the first run."""
    folder = Path(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    with open(folder / "starts.log", "a") as log:
        log.write(f"{os.getpid()} {restarts}\n")
    return SlowToSave(str(folder / f"saving-{restarts}"), seconds if restarts == "0" else 0.0)

"""Run a contender framework's script in its own venv and collect its timings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from .venvs import REPO, ROOT, ensure_venv

HERE = Path(__file__).resolve().parent
SCRIPTS = {"pfl": HERE / "run_pfl.py", "flower": HERE / "run_flower.py"}
TAIL_LINES = 40


class ContenderError(RuntimeError):
    pass


def run_contender(name: str, rounds: int, workers: int = 1, timeout: float = 900) -> dict:
    """Run contender ``name`` ("pfl" or "flower") for ``rounds`` rounds on ``workers`` processes.

    pfl: ``workers`` ranks of pfl's multi-process mode. Flower: ``workers`` CPUs for Ray, i.e.
    ClientApp actors at once. Each worker gets ``cores // workers`` threads (at least 1), as the
    simulator's ranks do. Returns the script's JSON line (contender, workers, rounds, loop_s,
    setup_s) plus ``process_s``, the wall time of the whole process as seen from here.
    The venv is built on first use and is not counted.
    """
    if name not in SCRIPTS:
        raise ValueError(f"unknown contender {name!r}; known: {sorted(SCRIPTS)}")
    python = ensure_venv(name)
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    # The script's own deadline comes first, so it can stop its ranks or Ray cleanly.
    cmd = [str(python), str(SCRIPTS[name]), "--rounds", str(rounds), "--workers", str(workers),
           "--timeout", str(max(1.0, timeout - 30))]
    return run_timed(name, cmd, threads, timeout)


def run_timed(name: str, cmd: list[str], threads: int, timeout: float = 900) -> dict:
    """Run contender ``name``'s command as a process of its own and time it as a whole.

    The command prints one JSON line with ``"contender": name`` (and its ``loop_s``, ``setup_s``);
    returns that dict plus ``process_s``. Output goes to ``.cache/bench-venvs/<name>-last-run.log``.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    ROOT.mkdir(parents=True, exist_ok=True)
    log = ROOT / f"{name}-last-run.log"
    with open(log, "w") as out:
        started = time.perf_counter()
        # A session of its own: on timeout the whole tree (ranks, Ray's processes) is killed.
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            _kill_group(proc.pid)  # whatever of the tree is still there
            proc.wait()
        process_s = time.perf_counter() - started
    lines = log.read_text(errors="replace").splitlines()
    result = _result_line(lines, name)
    if code != 0 or result is None:
        why = f"timed out after {timeout:.0f} s" if code is None else f"exited {code}"
        if code == 0:
            why = "printed no result line"
        tail = "\n".join(lines[-TAIL_LINES:])
        raise ContenderError(f"contender {name} {why}; last lines of {log}:\n{tail}")
    result["process_s"] = round(process_s, 4)
    return result


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _result_line(lines: list[str], name: str) -> dict | None:
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, dict) and parsed.get("contender") == name:
                return parsed
    return None

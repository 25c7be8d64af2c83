"""The benchmark workload as a Flower simulation on Ray; runs inside the ``flower`` contender venv.

Uses ``flwr.simulation.run_simulation`` (Flower's Python entry to its Simulation Runtime with the
Ray backend) on the apps in ``flower_app``: 100 virtual SuperNodes, FedAvg on 10 of them a round,
no evaluation, 1 CPU per ClientApp. ``--workers W`` is the number of CPUs given to Ray, i.e.
ClientApp actors running at once. ``flwr run``, the CLI that Flower 1.42 points to instead,
starts a detached SuperLink daemon that outlives the run; the Python entry keeps everything in
this process tree and lets the benchmark time the rounds.

Ray stays on this machine: loopback node address, no dashboard, no usage statistics; Flower's
telemetry is off. Prints one JSON line: ``{"contender": "flower", "workers", "rounds", "loop_s",
"setup_s"}``; setup_s includes starting Ray and its actors.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from proc import become_subreaper, process_start, reap_children
from venvs import ROOT

# Ray's home for this run: its head process probes cloud metadata addresses (169.254.169.254,
# metadata.google.internal) unless ~/ray_bootstrap_config.yaml names the provider.
RAY_HOME = ROOT / "flower-home"

# Read by flwr and ray when imported, so set before importing either.
LOCAL_ONLY_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",  # else every run posts an event to Flower's server
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    # Ray otherwise takes the address it reaches 8.8.8.8 from as node address (even when
    # given 127.0.0.1); off, every Ray process talks over loopback.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "HOME": str(RAY_HOME),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPUs given to Ray = ClientApp actors at once (1 CPU each)")
    parser.add_argument("--timeout", type=float, default=900)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    t0 = process_start()
    os.environ.update(LOCAL_ONLY_ENV)
    # Actors inherit it; where unset, Ray would give each 1-CPU actor one thread.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // args.workers)))
    RAY_HOME.mkdir(parents=True, exist_ok=True)
    (RAY_HOME / "ray_bootstrap_config.yaml").write_text("provider:\n  type: local\n")

    import ray
    from flwr.simulation import run_simulation

    import flower_app
    from workload import USERS

    become_subreaper()
    times: dict[str, float] = {}
    backend_config = {
        "init_args": {"num_cpus": args.workers, "include_dashboard": False,
                      "object_store_memory": 512 * 1024**2, "logging_level": logging.WARNING},
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
    }
    try:
        run_simulation(server_app=flower_app.server_app(args.rounds, args.workers, times, args.timeout),
                       client_app=flower_app.client_app, num_supernodes=USERS, backend_config=backend_config)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        killed = reap_children()
        if killed:
            print(f"killed {len(killed)} Ray processes left after ray.shutdown()", file=sys.stderr)
    if "loop_end" not in times:
        raise SystemExit("Flower simulation ended before its rounds finished (see the log above)")
    print(json.dumps({"contender": "flower", "workers": args.workers, "rounds": args.rounds,
                      "loop_s": round(times["loop_end"] - times["loop_start"], 4),
                      "setup_s": round(times["loop_start"] - t0, 4)}), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Submit the federated-learning stage from a login node.

    python jobs/federate.py CONFIG [key=value ...] [--baseline] [--wait]

One job of ``federate.ranks`` tasks (spread over ``launcher.slurm.nodes``) runs GPT-FL from the
pretrain stage's model into ``RUN/federate``; with ``--baseline`` a second job runs the same
federation from scratch into ``RUN/federate-scratch``. Prints the job ids; with ``--wait`` also the
summaries. Bad input fails here, before anything is submitted.
"""

from __future__ import annotations

import argparse
import json
import sys

from gptfl_hpc.commands.stage import job_shape
from gptfl_hpc.config import load_config
from gptfl_hpc.errors import UserError
from gptfl_hpc.fl import stage
from gptfl_hpc.launch import JobFailed, Launcher
from gptfl_hpc.rundir import check_run_dir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="jobs/federate.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--baseline", action="store_true", help="also federate from scratch into RUN/federate-scratch")
    parser.add_argument("--wait", action="store_true", help="wait for the jobs and print their summaries")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        check_run_dir(config)
        slurm = config.launcher.executor == "slurm"
        stage.preflight(config, check_local_devices=not slurm)
        nodes, tasks = job_shape(config, "federate", "federate.ranks")
    except UserError as exc:
        print(f"federate: error: {exc}", file=sys.stderr)
        return 2
    launcher = Launcher(config.launcher, config.run_dir / "logs")
    stages = [("federate", stage.run)] + ([("federate-scratch", stage.run_baseline)] if args.baseline else [])
    jobs = [launcher.submit(fn, config, name=name, nodes=nodes, tasks_per_node=tasks) for name, fn in stages]
    print("submitted " + ", ".join(f"{name} {config.launcher.executor} job {job.job_id}" for (name, _), job in zip(stages, jobs)))
    if not args.wait:
        return 0
    try:
        for summary in launcher.wait(jobs):
            print(json.dumps(summary, sort_keys=True))
    except JobFailed as exc:
        print(f"federate: job failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

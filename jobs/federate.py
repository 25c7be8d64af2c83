#!/usr/bin/env python
"""Submit the federated-learning stage from a login node.

    python jobs/federate.py CONFIG [key=value ...] [--baseline] [--wait]

One job of ``federate.ranks`` tasks (spread over ``launcher.slurm.nodes``) runs GPT-FL from the
pretrain stage's model into ``RUN/federate``; with ``--baseline`` a second job runs the same
federation from scratch into ``RUN/federate-scratch``. Prints the job ids; with ``--wait`` also the
summaries. Bad input fails here, before anything is submitted. The same stage descriptions as
``gptfl federate`` (``gptfl_hpc.orchestrate``).
"""

from __future__ import annotations

import argparse
import sys

from gptfl_hpc.config import load_config
from gptfl_hpc.errors import UserError
from gptfl_hpc.launch import JobFailed
from gptfl_hpc.orchestrate.stages import BASELINE, command_stage
from gptfl_hpc.orchestrate.submit import submit_stage
from gptfl_hpc.rundir import check_run_dir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="jobs/federate.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--baseline", action="store_true", help="also federate from scratch into RUN/federate-scratch")
    parser.add_argument("--wait", action="store_true", help="wait for the jobs and print their summaries")
    args = parser.parse_intermixed_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        check_run_dir(config)
        stages = [command_stage(config, "federate")]
        if args.baseline and BASELINE not in stages:
            stages.append(BASELINE)
        return submit_stage(config, stages, wait=args.wait, prefix="federate")
    except UserError as exc:
        print(f"federate: error: {exc}", file=sys.stderr)
        return 2
    except JobFailed as exc:
        print(f"federate: job failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

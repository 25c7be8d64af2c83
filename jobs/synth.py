#!/usr/bin/env python
"""Submit the synthesis stage from a login node: one submitit array job over the plan's tasks.

    python jobs/synth.py CONFIG [key=value ...] [--wait]

Checks the run (plan, prompts, weights; the prompts are made first on a fresh run), submits the array with the config's
executor and Slurm parameters, prints the array's job ids, and with ``--wait`` the summary.
Equivalent to ``gptfl synth CONFIG``; kept as a script for users who drive submitit directly.
"""

from __future__ import annotations

import sys

from gptfl_hpc.config import load_config
from gptfl_hpc.errors import UserError
from gptfl_hpc.launch import JobFailed
from gptfl_hpc.orchestrate.stages import SYNTH
from gptfl_hpc.orchestrate.submit import submit_stage
from gptfl_hpc.rundir import check_run_dir


def main(argv: list[str]) -> int:
    wait = "--wait" in argv
    args = [arg for arg in argv if arg != "--wait"]
    if not args or args[0].startswith("-"):
        print("usage: python jobs/synth.py CONFIG [key=value ...] [--wait]", file=sys.stderr)
        return 2
    try:
        config = load_config(args[0], args[1:])
        check_run_dir(config)
        return submit_stage(config, [SYNTH], wait=wait)
    except UserError as exc:
        print(f"synth: error: {exc}", file=sys.stderr)
        return 2
    except JobFailed as exc:
        print(f"synth: job failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

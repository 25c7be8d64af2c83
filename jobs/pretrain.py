#!/usr/bin/env python
"""Submit the pretrain stage from a login node.

    python jobs/pretrain.py CONFIG [key=value ...] [--wait]

One job: on Slurm ``pretrain.ranks`` tasks over ``launcher.slurm.nodes`` nodes (one per GPU), each
joining the job's torch.distributed world; on the other executors one task that starts the ranks.
Bad input fails here, before anything is submitted. Prints the job id; with ``--wait`` also the
summary. Equivalent to ``gptfl pretrain CONFIG``; kept for users who drive submitit directly.
"""

from __future__ import annotations

import sys

from gptfl_hpc.config import load_config
from gptfl_hpc.errors import UserError
from gptfl_hpc.launch import JobFailed
from gptfl_hpc.orchestrate.stages import PRETRAIN
from gptfl_hpc.orchestrate.submit import submit_stage
from gptfl_hpc.rundir import check_run_dir


def main(argv: list[str]) -> int:
    wait = "--wait" in argv
    args = [arg for arg in argv if arg != "--wait"]
    if not args or args[0].startswith("-"):
        print("usage: python jobs/pretrain.py CONFIG [key=value ...] [--wait]", file=sys.stderr)
        return 2
    try:
        config = load_config(args[0], args[1:])
        check_run_dir(config)
        return submit_stage(config, [PRETRAIN], wait=wait)
    except UserError as exc:
        print(f"pretrain: error: {exc}", file=sys.stderr)
        return 2
    except JobFailed as exc:
        print(f"pretrain: job failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

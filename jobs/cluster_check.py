#!/usr/bin/env python
"""Check a config's launcher settings on the cluster before spending an allocation on real work.

    python jobs/cluster_check.py CONFIG [key=value ...]

Submits, with the config's executor and Slurm parameters (partition, account, GPUs, ...), one job
that reports where it landed and one job of ``nodes x tasks_per_node`` tasks that all-reduce across
their ranks through the torch.distributed environment every stage uses. Prints the job ids, then
the results; exits 1 with the job's log tail if either fails.
"""

from __future__ import annotations

import json
import sys

from gptfl_hpc.config import load_config
from gptfl_hpc.errors import UserError
from gptfl_hpc.launch import JobFailed, Launcher
from gptfl_hpc.launch.probe import all_reduce_check, describe_node


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: python jobs/cluster_check.py CONFIG [key=value ...]", file=sys.stderr)
        return 2
    try:
        config = load_config(argv[0], argv[1:])
    except UserError as exc:
        print(f"cluster_check: error: {exc}", file=sys.stderr)
        return 2
    launcher = Launcher(config.launcher, config.run_dir / "logs")
    node = launcher.submit(describe_node, name="cluster-check-node", nodes=1, tasks_per_node=1)
    ranks = launcher.submit(all_reduce_check, name="cluster-check-all-reduce")
    print(f"submitted {config.launcher.executor} jobs {node.job_id} (node) and {ranks.job_id} (all_reduce)")
    try:
        (where,) = launcher.wait([node])
        launcher.wait([ranks])
    except JobFailed as exc:
        print(f"cluster_check: job failed: {exc}", file=sys.stderr)
        return 1
    print("node: " + json.dumps(where, sort_keys=True))
    results = ranks.results()
    for result in results:
        print("rank: " + json.dumps(result, sort_keys=True))
    healthy = all(result["ok"] for result in results)
    print(f"all_reduce {'ok' if healthy else 'WRONG SUM'} across {len(results)} ranks")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

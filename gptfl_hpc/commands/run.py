"""``gptfl run CONFIG``: the whole pipeline, prompts -> synthesis array -> pretrain -> federate.

    gptfl run CONFIG [key=value ...] [--executor inline|local|slurm|debug] [--dry-run] [--wait]

Every stage's inputs are checked before anything is submitted. Stages already complete on disk
are skipped, as are stages no later stage reads (``pretrain.shards``, ``federate.init_path``,
``federate.init=scratch``); partial ones are resubmitted and resume from what they saved. On Slurm
every stage is its own job, chained with ``afterok`` (a failed stage cancels the rest); the
from-scratch baseline (``federate.baseline``) needs no synthetic data, so it starts at once.
Locally the stages run one after another. The report is written at the end (``gptfl report RUN``).
"""

from __future__ import annotations

import argparse

from gptfl_hpc.commands.common import add_job_parser, config_from_args
from gptfl_hpc.orchestrate.submit import submit_run
from gptfl_hpc.rundir import check_run_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_job_parser(subparsers, "run", "the whole pipeline: prompts, synthesis, pretrain, federate, report",
                            __doc__)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    check_run_dir(config)
    return submit_run(config, dry_run=args.dry_run, wait=args.wait)

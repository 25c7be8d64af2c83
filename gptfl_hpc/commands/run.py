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
import json

from gptfl_hpc.commands.common import add_job_parser, config_from_args
from gptfl_hpc.commands.pipeline import Pipeline
from gptfl_hpc.config import Config
from gptfl_hpc.locks import submit_lock
from gptfl_hpc.rundir import check_run_dir
from gptfl_hpc.stages import PIPELINE, REPORT


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_job_parser(subparsers, "run", "the whole pipeline: prompts, synthesis, pretrain, federate, report",
                            __doc__)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    check_run_dir(config)
    with submit_lock(config.run_dir, wait=args.wait, dry_run=args.dry_run):
        return run_pipeline(config, args)


def run_pipeline(config: Config, args: argparse.Namespace) -> int:
    pipeline = Pipeline(config, args.dry_run, lenient=True)
    if args.dry_run:
        pipeline.say(f"{config.run_dir}, executor {config.launcher.executor}, config hash {config.hash}")
        pipeline.submit_stages([stage for stage in PIPELINE if stage is not REPORT])
        pipeline.say("nothing submitted")
        return 0
    jobs = pipeline.submit_stages(PIPELINE)
    if pipeline.slurm and not args.wait:
        pipeline.say(f"follow it with `gptfl status {config.run_dir}`")
        return 0
    pipeline.launcher.wait(jobs)
    report = pipeline.submitted.get(REPORT.name)
    written = report and report[0].result()
    if written:
        print(json.dumps(written, indent=2))
    pipeline.say(f"done; report at {config.layout.report / 'report.md'}")
    return 0

"""The one pattern every stage command follows.

``gptfl STAGE CONFIG [overrides] [--executor inline|local|slurm|debug] [--dry-run] [--wait]``:
refuse a run_dir made by another config, check the stage and the stages it runs first (the prompts
before synthesis on a fresh run), then submit it as one job (one array for synthesis) shaped by its
description in ``gptfl_hpc.stages``. A stage already done for this config says so and submits
nothing. Local executors wait for the result; Slurm returns after submitting unless ``--wait``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from typing import Any, Callable, Optional, Sequence

from gptfl_hpc.commands.common import add_job_parser, config_from_args
from gptfl_hpc.commands.pipeline import Pipeline
from gptfl_hpc.config import Config
from gptfl_hpc.locks import submit_lock
from gptfl_hpc.rundir import check_run_dir
from gptfl_hpc.stages import BY_NAME, Stage, federation

#: ``explain(config, checked)``: the lines a dry run adds about the stage, from what its check returned.
Explain = Callable[[Config, Any], list[str]]
#: ``summarize(config, results)``: what the command prints once the stage's jobs finished.
Summarize = Callable[[Config, list], Any]


def add_stage_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    description: Optional[str] = None,
    *,
    explain: Optional[Explain] = None,
    summarize: Optional[Summarize] = None,
) -> argparse.ArgumentParser:
    """``gptfl NAME`` for the stage of that name."""
    parser = add_job_parser(subparsers, name, BY_NAME[name].help, description)
    parser.set_defaults(func=functools.partial(run_stage, name=name, explain=explain, summarize=summarize))
    return parser


def stage_of(config: Config, name: str) -> Stage:
    """The stage a command runs: ``gptfl federate`` runs FL from scratch with ``federate.init=scratch``."""
    return federation(config) if name == "federate" else BY_NAME[name]


def run_stage(args: argparse.Namespace, *, name: str, explain: Optional[Explain] = None,
              summarize: Optional[Summarize] = None) -> int:
    config = config_from_args(args)
    check_run_dir(config)
    return submit_stage(config, [stage_of(config, name)], dry_run=args.dry_run, wait=args.wait, explain=explain,
                        summarize=summarize, prefix=name)


def submit_stage(
    config: Config,
    requested: Sequence[Stage],
    *,
    dry_run: bool = False,
    wait: bool = False,
    explain: Optional[Explain] = None,
    summarize: Optional[Summarize] = None,
    prefix: Optional[str] = None,
) -> int:
    """Run ``requested`` (and their prerequisites) as jobs; prints what happened, returns the exit code.
    Holds the run's submit lock meanwhile: another command on the run is refused, or with ``wait`` waited for."""
    with submit_lock(config.run_dir, wait=wait, dry_run=dry_run):
        return _submit_stage(config, requested, dry_run=dry_run, wait=wait, explain=explain, summarize=summarize,
                             prefix=prefix)


def _submit_stage(config: Config, requested: Sequence[Stage], *, dry_run: bool, wait: bool,
                  explain: Optional[Explain], summarize: Optional[Summarize], prefix: Optional[str]) -> int:
    main = requested[-1]
    pipeline = Pipeline(config, dry_run, prefix=prefix or main.name)
    executor = config.launcher.executor
    if dry_run:
        pipeline.say(f"run_dir {config.run_dir}, executor '{executor}', config hash {config.hash}")
    first = [BY_NAME[name] for stage in requested for name in stage.prerequisites]
    names = [stage.name for stage in requested]
    jobs = pipeline.submit_stages(first + list(requested), requested=names)
    if explain is not None and main.name in pipeline.checked:
        for line in explain(config, pipeline.checked[main.name]):
            pipeline.say(line)
    if dry_run:
        pipeline.say("nothing submitted")
        return 0
    if not jobs:
        for stage in requested:
            pipeline.say(f"{stage.name} already complete for this config: {stage.output(config.layout)}")
        return 0
    if executor == "slurm" and not wait:
        pipeline.say(f"follow it with `gptfl status {config.run_dir}`")
        return 0
    results_of = dict(zip(map(id, jobs), pipeline.launcher.wait(jobs)))
    for stage in requested:
        stage_jobs = pipeline.submitted.get(stage.name, [])
        if not stage_jobs or not _is_rank_zero():
            continue
        results = [results_of[id(job)] for job in stage_jobs]
        shown = summarize(config, results) if summarize is not None and stage is main else results[0]
        if shown is not None:
            print(json.dumps(shown, indent=2, sort_keys=True, default=str))
    return 0


def _is_rank_zero() -> bool:
    """Under ``srun`` every task runs the command; only the first prints the summary."""
    return os.environ.get("SLURM_PROCID", "0") == "0"


def submit_one(config: Config, stage: Stage) -> tuple[Any, Any]:
    """Check ``stage``, then submit it as one job: ``(launcher, job)`` for callers that wait themselves."""
    pipeline = Pipeline(config, prefix=stage.name)
    pipeline.check([stage])
    (job,) = pipeline.submit(stage, after=[])
    return pipeline.launcher, job

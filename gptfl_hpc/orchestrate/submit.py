"""What the commands that start jobs do.

* ``submit_run`` (``gptfl run``): the whole pipeline, every stage's inputs checked before anything
  is submitted; stages done on disk or not needed are skipped, partial ones resume.
* ``submit_stage`` (``gptfl synth``, ``python jobs/synth.py``...): one stage and the stages it runs
  first (the prompts before synthesis on a fresh run), as one job (one array for synthesis); a
  stage already done for this config says so and submits nothing.

With a local executor, or ``wait``, they wait for the jobs and print the results; on Slurm they
return after submitting. Both hold the run directory's submit lock meanwhile (``gptfl_hpc.locks``):
a second command on the same run is refused in one line naming the holder, or with ``wait``
waits for it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from gptfl_hpc.config import Config
from gptfl_hpc.launch.requeue import run_preemptible
from gptfl_hpc.locks import submit_lock
from gptfl_hpc.orchestrate.pipeline import Pipeline
from gptfl_hpc.orchestrate.stages import BY_NAME, PIPELINE, REPORT
from gptfl_hpc.stage import Stage


def submit_run(config: Config, *, dry_run: bool = False, wait: bool = False) -> int:
    """The whole pipeline as jobs: on Slurm each stage its own job chained with ``afterok`` (a failed
    stage cancels the rest; FL from scratch reads no synthetic data, so it starts at once), locally
    one after another. The report is written at the end."""
    with submit_lock(config.run_dir, wait=wait, dry_run=dry_run):
        return _submit_run(config, dry_run=dry_run, wait=wait)


def _submit_run(config: Config, *, dry_run: bool, wait: bool) -> int:
    pipeline = Pipeline(config, dry_run, lenient=True)
    if dry_run:
        pipeline.say(f"{config.run_dir}, executor {config.launcher.executor}, config hash {config.hash}")
        pipeline.submit_stages([stage for stage in PIPELINE if stage is not REPORT])
        pipeline.say("nothing submitted")
        return 0
    jobs = pipeline.submit_stages(PIPELINE)
    if pipeline.slurm and not wait:
        pipeline.say(f"follow it with `gptfl status {config.run_dir}`")
        return 0
    pipeline.launcher.wait(jobs)
    report = pipeline.submitted.get(REPORT.name)
    written = report and report[0].result()
    if written:
        print(json.dumps(written, indent=2))
    pipeline.say(f"done; report at {config.layout.report_file}")
    return 0


def submit_stage(config: Config, requested: Sequence[Stage], *, dry_run: bool = False, wait: bool = False,
                 prefix: str = "") -> int:
    """Run ``requested`` (and their prerequisites) as jobs; prints what happened, returns the exit code.
    The last of ``requested`` is the command's own stage: its ``explain`` and ``summarize`` are used."""
    with submit_lock(config.run_dir, wait=wait, dry_run=dry_run):
        return _submit_stage(config, requested, dry_run=dry_run, wait=wait, prefix=prefix)


def _submit_stage(config: Config, requested: Sequence[Stage], *, dry_run: bool, wait: bool, prefix: str) -> int:
    main = requested[-1]
    pipeline = Pipeline(config, dry_run, prefix=prefix or main.name)
    executor = config.launcher.executor
    if dry_run:
        pipeline.say(f"run_dir {config.run_dir}, executor '{executor}', config hash {config.hash}")
    first = [BY_NAME[name] for stage in requested for name in stage.prerequisites]
    names = [stage.name for stage in requested]
    jobs = pipeline.submit_stages(first + list(requested), requested=names)
    if main.explain is not None and main.name in pipeline.checked:
        for line in main.explain(config, pipeline.checked[main.name]):
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
        shown = main.summarize(config, results) if main.summarize is not None and stage is main else results[0]
        if shown is not None:
            print(json.dumps(shown, indent=2, sort_keys=True, default=str))
    return 0


def _is_rank_zero() -> bool:
    """Under ``srun`` every task runs the command; only the first prints the summary."""
    return os.environ.get("SLURM_PROCID", "0") == "0"


def run_array_task_here(config: Config, stage: Stage, task: int) -> Any:
    """Task ``task`` of an array stage in this process (a plain sbatch array's task), preemptible
    like any job: USR2 -> commit at the next safe point -> requeue this task."""
    return run_preemptible(lambda: stage.run((config, task)), grace_s=config.launcher.preempt_grace_s,
                           max_requeues=config.launcher.slurm.max_requeues)


def submit_one(config: Config, stage: Stage) -> tuple[Any, Any]:
    """Check ``stage``, then submit it as one job: ``(launcher, job)`` for callers that wait themselves."""
    pipeline = Pipeline(config, prefix=stage.name)
    pipeline.check([stage])
    (job,) = pipeline.submit(stage, after=[])
    return pipeline.launcher, job

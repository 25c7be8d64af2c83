"""Every point of an experiment grid as jobs, with the upstream stages shared.

Points share the prompts and synthesis of a shared run when they differ only in keys synthesis
never reads, and its pretrained model when they differ only in keys only federation reads
(``gptfl_hpc.sweep`` plans which). On Slurm: one prompts job and one synthesis array per shared
synthesis run, one pretrain job per shared pretrain run, one chain per point (federate after its
pretrain job, the from-scratch baseline beside it, its report) and the combined report after every
point. Locally the points run one after another, each shared run before the first point that needs
it. Running it again skips what is done, waits for what is queued and resumes the rest.
"""

from __future__ import annotations

import json
from typing import Any

from gptfl_hpc.config import Config
from gptfl_hpc.errors import UserError
from gptfl_hpc.launch import JobFailed, Launcher
from gptfl_hpc.launch.jobs import record_jobs
from gptfl_hpc.layout import RunLayout
from gptfl_hpc.locks import submit_lock
from gptfl_hpc.orchestrate.pipeline import Pipeline
from gptfl_hpc.orchestrate.stages import BASELINE, FEDERATE, PRETRAIN, PROMPTS, REPORT, SYNTH
from gptfl_hpc.report import RUNS
from gptfl_hpc.rundir import check_run_dir, prepare_run_dir
from gptfl_hpc.sweep import Point, Sweep, link_upstream, write_record


def submit_sweep(sweep: Sweep, *, dry_run: bool = False, wait: bool = False) -> int:
    """Check every run directory, then submit (or with ``dry_run`` describe) every point."""
    executor = _one_executor(sweep)
    for config in [run.config for run in sweep.shared.values()] + [point.config for point in sweep.points]:
        check_run_dir(config)  # every refusal before anything is written
    print(f"sweep: {len(sweep.points)} points in {sweep.sweep_dir}; {len(sweep.shared_runs('synth'))} shared "
          f"synthesis and {len(sweep.shared_runs('pretrain'))} shared pretrain runs in {sweep.shared_dir}; "
          f"executor {executor}")
    submitter = SweepSubmitter(sweep, dry_run)
    if dry_run:
        for point in sweep.points:
            submitter.submit_point(point)
        print(f"sweep: would submit the combined report after every point ({RunLayout(sweep.sweep_dir).report})")
        print("sweep: nothing submitted")
        return 0
    # Every run directory of the sweep, in path order, so two sweeps waiting on each other cannot deadlock.
    with submit_lock([sweep.sweep_dir, *(run.config.run_dir for run in sweep.shared.values()),
                      *(point.config.run_dir for point in sweep.points)], wait=wait):
        prepare_sweep(sweep)
        if executor == "slurm":
            return submit_on_slurm(submitter, wait)
        return run_one_after_another(submitter)


def _one_executor(sweep: Sweep) -> str:
    executors = sorted({point.config.launcher.executor for point in sweep.points})
    if len(executors) > 1:
        raise UserError(f"the points use the executors {', '.join(executors)}; run a sweep on one executor")
    return executors[0]


def prepare_sweep(sweep: Sweep) -> None:
    """Record the grid, claim every run directory and link the points to their shared outputs."""
    write_record(sweep)
    for config in [run.config for run in sweep.shared.values()] + [point.config for point in sweep.points]:
        prepare_run_dir(config)
    link_upstream(sweep)


class SweepSubmitter:
    """Submits each shared run once, before the first point that reads it, and each point's chain."""

    def __init__(self, sweep: Sweep, dry_run: bool):
        self.sweep = sweep
        self.dry_run = dry_run
        self.sequential = sweep.points[0].config.launcher.executor != "slurm"
        self.shared_jobs: dict[str, list[Any]] = {}  # shared run -> the jobs its readers wait for
        self.shared_failures: dict[str, str] = {}

    def submit_shared(self, name: str) -> list[Any]:
        if name in self.shared_failures:
            raise JobFailed(f"shared run {name} failed earlier: {self.shared_failures[name]}")
        if name in self.shared_jobs:
            return self.shared_jobs[name]
        run = self.sweep.shared[name]
        after = self.submit_shared(run.reads) if run.reads else []
        print(f"sweep: shared {run.level} run {run.name} ({run.describe}), read by {len(run.points)} point(s)")
        pipeline = Pipeline(run.config, self.dry_run, lenient=True)
        if run.level == "synth":
            jobs = pipeline.submit_stages([PROMPTS, SYNTH])
        else:
            pending = ["synth"] if after or self.dry_run else []  # the shared shards are not made yet
            jobs = pipeline.submit_stages([PRETRAIN], after=after, pending=pending) or after
        if self.sequential and not self.dry_run:
            try:
                pipeline.launcher.wait(jobs)
            except (JobFailed, UserError) as exc:
                self.shared_failures[name] = str(exc).splitlines()[0]
                raise
        self.shared_jobs[name] = jobs
        return jobs

    def submit_point(self, point: Point) -> tuple[Pipeline, list[Any]]:
        """The point's chain after its pretrain run: federate, the baseline and its report."""
        after = self.submit_shared(point.pretrain)
        print(f"sweep: point {point.name}: federate after shared run {point.pretrain}")
        pipeline = Pipeline(point.config, self.dry_run, lenient=True)
        stages = [FEDERATE, BASELINE] + ([] if self.dry_run else [REPORT])
        pending = ["pretrain"] if after or self.dry_run else []  # the shared model is not made yet
        pipeline.submit_stages(stages, after=after, pending=pending)
        return pipeline, pipeline.all_jobs()

    def submit_report(self, after: list[Any]) -> list[Any]:
        """The combined report (``gptfl report SWEEP_DIR``) as a job after ``after``."""
        from gptfl_hpc.sweep_report import make_sweep_report

        launcher_config = self.sweep.points[0].config.launcher
        launcher = Launcher(launcher_config, RunLayout(self.sweep.sweep_dir).logs())
        job = launcher.submit(make_sweep_report, self.sweep.sweep_dir, name="report", after=after)
        record_jobs(self.sweep.sweep_dir, "report", launcher_config.executor, [str(job.job_id)])
        return [job]


def submit_on_slurm(submitter: SweepSubmitter, wait: bool) -> int:
    sweep = submitter.sweep
    point_jobs = [job for point in sweep.points for job in submitter.submit_point(point)[1]]
    report = submitter.submit_report(after=point_jobs)
    print(f"sweep: submitted; the combined report waits for every point ({RunLayout(sweep.sweep_dir).report})")
    if not wait:
        print(f"sweep: follow it with `gptfl status {sweep.sweep_dir}`")
        return 0
    upstream = [job for jobs in submitter.shared_jobs.values() for job in jobs]
    Launcher(sweep.points[0].config.launcher, RunLayout(sweep.sweep_dir).logs()).wait(upstream + point_jobs + report)
    print(f"sweep: done; report at {RunLayout(sweep.sweep_dir).report_file}")
    return 0


def run_one_after_another(submitter: SweepSubmitter) -> int:
    """Each point to its end before the next starts; a failed point is reported and the rest go on."""
    sweep = submitter.sweep
    failed = []
    for number, point in enumerate(sweep.points, 1):
        try:
            pipeline, jobs = submitter.submit_point(point)
            pipeline.launcher.wait(jobs)
        except (JobFailed, UserError) as exc:
            failed.append(point.name)
            print(f"sweep: [{number}/{len(sweep.points)}] {point.name} failed: {str(exc).splitlines()[0]}")
            continue
        print(f"sweep: [{number}/{len(sweep.points)}] {point.name} done{_final_accuracies(point.config)}")
    if len(failed) == len(sweep.points):
        print("sweep: every point failed, so there is no report; fix the cause and run the same command again")
        return 1
    report = submitter.submit_report(after=[])  # every point has ended: report on those that finished
    Launcher(sweep.points[0].config.launcher, RunLayout(sweep.sweep_dir).logs()).wait(report)
    print(f"sweep: report at {RunLayout(sweep.sweep_dir).report_file}")
    if failed:
        print(f"sweep: {len(failed)} of {len(sweep.points)} points failed ({', '.join(failed)}); "
              "the report covers the others; run the same command again to retry them")
        return 1
    return 0


def _final_accuracies(config: Config) -> str:
    shown = []
    for method, init in RUNS:
        summary = config.layout.federation(init) / "summary.json"
        if summary.is_file():
            shown.append(f"{method} {json.loads(summary.read_text())['test_accuracy']:.4f}")
    return f" (final test accuracy: {', '.join(shown)})" if shown else ""

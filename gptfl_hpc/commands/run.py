"""``gptfl run CONFIG``: the whole pipeline, prompts -> synthesis array -> pretrain -> federate.

    gptfl run CONFIG [key=value ...] [--executor inline|local|slurm|debug] [--dry-run] [--wait]

Stages already complete on disk are skipped; partial ones are resubmitted and resume from what
they saved. On Slurm every stage is its own job, chained with ``afterok`` (a failed stage cancels
the rest); the from-scratch baseline (``federate.baseline``) needs no synthetic data, so it starts
at once. Locally the stages run one after another. The report is written at the end
(``gptfl report RUN``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import submitit

from gptfl_hpc.commands.common import add_job_parser, config_from_args
from gptfl_hpc.commands.stage import job_shape, rank_count, resolve_target
from gptfl_hpc.commands.status import synth_status
from gptfl_hpc.config import Config
from gptfl_hpc.errors import UserError
from gptfl_hpc.launch import Launcher
from gptfl_hpc.launch.executors import sbatch_script
from gptfl_hpc.launch.jobs import queued_states, read_jobs, record_jobs
from gptfl_hpc.rundir import check_run_dir


@dataclass(frozen=True)
class Stage:
    """One job of the pipeline."""

    name: str
    target: str  # "module:function" taking the config
    is_done: Callable[[Config], bool]
    ranks: Optional[str] = None  # the config key holding the stage's rank count


def _prompts_done(config: Config) -> bool:
    return (config.run_dir / "prompts.json").is_file()


def _synth_done(config: Config) -> bool:
    return synth_status(config)["state"] == "done"


def _pretrain_done(config: Config) -> bool:
    from gptfl_hpc.pretrain.stage import completed

    return completed(config) is not None


def _federation_done(folder: str) -> Callable[[Config], bool]:
    def done(config: Config) -> bool:
        out = config.run_dir / folder
        return (out / "summary.json").is_file() and (out / "model.safetensors").is_file()

    return done


PROMPTS = Stage("prompts", "gptfl_hpc.prompts.stage:run", _prompts_done)
PRETRAIN = Stage("pretrain", "gptfl_hpc.pretrain.stage:run", _pretrain_done, "pretrain.ranks")
FEDERATE = Stage("federate", "gptfl_hpc.fl.stage:run", _federation_done("federate"), "federate.ranks")
BASELINE = Stage("federate-scratch", "gptfl_hpc.fl.stage:run_baseline", _federation_done("federate-scratch"),
                 "federate.ranks")
REPORT = Stage("report", "gptfl_hpc.report:make_report", lambda config: False)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_job_parser(subparsers, "run", "the whole pipeline: prompts, synthesis, pretrain, federate, report",
                            __doc__)
    parser.set_defaults(func=main)


class Pipeline:
    """Submits the stages that are not done, each after the jobs it needs."""

    def __init__(self, config: Config, dry_run: bool):
        self.config = config
        self.dry_run = dry_run
        self.launcher = Launcher(config.launcher, config.run_dir / "logs")
        self.slurm = config.launcher.executor == "slurm"
        self.submitted: dict[str, list[Any]] = {}

    def queued(self, name: str) -> list[Any]:
        """This run's Slurm jobs for ``name`` still in the queue: wait for them, never start twins."""
        if not self.slurm or self.dry_run:
            return []
        recorded = read_jobs(self.config.run_dir).get(name, {}).get("job_ids", [])
        states = queued_states(recorded)
        ids = [job_id for job_id in recorded if job_id in states]
        if not ids:
            return []
        print(f"run: {name} already queued as Slurm job {ids[0].split('_')[0]}, not submitted again")
        jobs = [submitit.SlurmJob(folder=self.config.run_dir / "logs" / name, job_id=job_id) for job_id in ids]
        self.submitted[name] = jobs
        return jobs

    def submit(self, stage: Stage, after: list[Any]) -> list[Any]:
        if stage.is_done(self.config):
            print(f"run: {stage.name} already done, skipped")
            return []
        if queued := self.queued(stage.name):
            return queued
        nodes, tasks = job_shape(self.config, stage.name, stage.ranks)
        if self.dry_run:
            self._describe(stage.name, f"{stage.target}, {rank_count(self.config, stage.ranks)} rank(s)", nodes, tasks)
            return []
        job = self.launcher.submit(resolve_target(stage.target), self.config, name=stage.name, after=after,
                                   nodes=nodes, tasks_per_node=tasks)
        return self._record(stage.name, [job])

    def submit_synth(self, after: list[Any]) -> list[Any]:
        from gptfl_hpc.synth.stage import compute_plan, run_array_task

        if _synth_done(self.config):
            print("run: synth already done, skipped")
            return []
        if queued := self.queued("synth"):
            return queued
        if self.dry_run:
            try:
                plan = compute_plan(self.config, len(self.config.labels.load()))
            except UserError as exc:  # e.g. a speaker table that is not there yet: say so, go on
                print(f"run: synth: inputs not ready: {exc}")
                self._describe("synth", "the synthesis array", None, None, array=self.config.synth.tasks)
                return []
            self._describe("synth", f"{plan.total} samples in {plan.num_shards} shards", None, None,
                           array=plan.num_tasks)
            return []
        plan = compute_plan(self.config, len(self.config.labels.load()))
        items = [(self.config, task) for task in range(plan.num_tasks)]
        jobs = self.launcher.map_array(run_array_task, items, name="synth", after=after)
        return self._record("synth", jobs)

    def _record(self, name: str, jobs: list[Any]) -> list[Any]:
        self.submitted[name] = jobs
        ids = [str(job.job_id) for job in jobs]
        record_jobs(self.config.run_dir, name, self.config.launcher.executor, ids)
        shown = ids[0].split("_")[0] + f" ({len(ids)} tasks)" if len(ids) > 1 else ids[0]
        print(f"run: {name}: {self.config.launcher.executor} job {shown}")
        return jobs

    def _describe(self, name: str, what: str, nodes, tasks, array: Optional[int] = None) -> None:
        print(f"run: {name}: would submit {what}")
        if self.slurm:
            folder = self.config.run_dir / "logs" / name
            print(sbatch_script(self.config.launcher.for_stage(name), folder, job_name=f"gptfl-{name}", nodes=nodes,
                                tasks_per_node=tasks, array=array), end="")


def submit_federations(pipeline: Pipeline, after: list[Any]) -> list[Any]:
    """GPT-FL after ``after`` (the jobs making its pretrained model), and the from-scratch baseline;
    returns the jobs the report waits for."""
    final = list(pipeline.submit(FEDERATE, after=after))
    if pipeline.config.federate.baseline:
        # The baseline needs no synthetic data: on Slurm it runs beside the chain; locally after it,
        # so two trainings never share the same cores.
        final += pipeline.submit(BASELINE, after=[] if pipeline.slurm else final or after)
    return final


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    check_run_dir(config)
    if args.dry_run:
        print(f"run: {config.run_dir}, executor {config.launcher.executor}, config hash {config.hash}")
    pipeline = Pipeline(config, args.dry_run)
    prompts = pipeline.submit(PROMPTS, after=[])
    synth = pipeline.submit_synth(after=prompts)
    pretrain = pipeline.submit(PRETRAIN, after=synth or prompts)
    final = submit_federations(pipeline, after=pretrain or synth or prompts)
    if args.dry_run:
        print("run: nothing submitted")
        return 0
    report = pipeline.submit(REPORT, after=final)
    if pipeline.slurm and not args.wait:
        print(f"run: follow it with `gptfl status {config.run_dir}`")
        return 0
    pipeline.launcher.wait([job for jobs in pipeline.submitted.values() for job in jobs])
    written = report and report[0].result()
    if written:
        print(json.dumps(written, indent=2))
    print(f"run: done; report at {Path(config.run_dir) / 'report' / 'report.md'}")
    return 0

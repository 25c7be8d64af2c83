"""Check, then submit, the stages of one run: the engine behind every command that starts jobs.

``Pipeline.submit_stages`` takes stage descriptions (``orchestrate.stages``) in pipeline order. It
skips the stages that are done or not needed, runs every remaining stage's checks before it
submits anything (so bad input anywhere costs one line and no job), and submits each stage after
the jobs making what it reads: on Slurm chained with ``afterok``, locally one after another so two
trainings never share the same cores. Slurm jobs of this run still in the queue are waited for,
never submitted twice.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Optional, Sequence

import submitit

from gptfl_hpc.config import Config
from gptfl_hpc.errors import UserError
from gptfl_hpc.launch import Launcher
from gptfl_hpc.launch.executors import max_array_size, sbatch_script
from gptfl_hpc.launch.jobs import queued_states, read_jobs, record_jobs
from gptfl_hpc.orchestrate.stages import job_shape, not_needed
from gptfl_hpc.stage import CheckContext, Stage


class Pipeline:
    """The jobs of one run; ``prefix`` starts every line it prints (the command's name). With
    ``lenient`` a dry run reports a failed check and goes on, so it still shows every job (a paper
    config's dry run before its data and weights are in place)."""

    def __init__(self, config: Config, dry_run: bool = False, prefix: str = "run", lenient: bool = False):
        self.config = config
        self.dry_run = dry_run
        self.lenient = dry_run and lenient
        self.prefix = prefix
        self.launcher = Launcher(config.launcher, config.layout.logs())
        self.slurm = config.launcher.executor == "slurm"
        self.submitted: dict[str, list[Any]] = {}
        self.checked: dict[str, Any] = {}  # what each stage's check returned (the synthesis plan, ...)

    def say(self, line: str) -> None:
        print(f"{self.prefix}: {line}")

    # ------------------------------------------------------------------ choose and check

    def todo(self, stages: Iterable[Stage], requested: Sequence[str] = ()) -> list[Stage]:
        """The stages to submit: not done (``always_rerun`` ones always) and needed, except that a
        ``requested`` stage (the one a stage command names) runs even when no later stage reads it."""
        skipped = not_needed(self.config)
        chosen = []
        for stage in stages:
            if stage.name in skipped and stage.name not in requested:
                self.say(f"{stage.name} not needed: {skipped[stage.name]}")
            elif not stage.always_rerun and stage.is_done(self.config):
                self.say(f"{stage.name} already done, skipped")
                if stage.reuse_note is not None and (note := stage.reuse_note(self.config)):
                    self.say(f"{stage.name}: note: {note}")
            else:
                chosen.append(stage)
        return chosen

    def devices_here(self) -> bool:
        """Whether the ranks will run on this machine, so its devices can be checked now. A Slurm job
        runs elsewhere; under ``srun`` each task checks its own node when the stage starts."""
        return not self.slurm and "SLURM_PROCID" not in os.environ

    def check(self, stages: Sequence[Stage], pending: Iterable[str] = ()) -> None:
        """Every stage's checks, in order, before anything is submitted."""
        ahead = set(pending)
        for stage in stages:
            try:
                if stage.plan is not None and self.slurm:  # before the stage's own notes: it may not run at all
                    self._check_array_size(stage.plan(self.config).num_tasks)
                context = CheckContext(frozenset(ahead), self.devices_here())
                self.checked[stage.name] = stage.check(self.config, context)
            except UserError as exc:
                if not self.lenient:
                    raise
                self.say(f"{stage.name}: inputs not ready: {exc}")
            ahead.add(stage.name)

    @staticmethod
    def _check_array_size(num_tasks: int) -> None:
        limit = max_array_size()
        if num_tasks > limit:
            raise UserError(
                f"the plan needs {num_tasks} array tasks but the cluster's MaxArraySize is {limit}; "
                f"lower synth.tasks to at most {limit}"
            )

    # ------------------------------------------------------------------ submit

    def submit_stages(
        self, stages: Sequence[Stage], after: Sequence[Any] = (), pending: Iterable[str] = (),
        requested: Sequence[str] = (),
    ) -> list[Any]:
        """Check, then submit, those of ``stages`` that are to run; ``after``: jobs (of another run)
        making what the first of them read, ``pending``: the names of those stages. Returns the
        jobs submitted (or found queued)."""
        chosen = self.todo(stages, requested)
        self.check(chosen, pending)
        names = {stage.name for stage in stages}
        jobs: list[Any] = []
        for stage in chosen:
            if self.slurm:
                inside = [job for name in stage.needs if name in names for job in self.submitted.get(name, [])]
                reads_outside = any(name not in names for name in stage.needs)
                waits_for = inside + (list(after) if reads_outside else [])
            else:
                waits_for = jobs or list(after)  # one stage at a time, in order
            jobs += self.submit(stage, waits_for)
        return jobs

    def submit(self, stage: Stage, after: Sequence[Any]) -> list[Any]:
        if queued := self.queued(stage.name):
            return queued
        if stage.plan is not None:
            return self._submit_array(stage, after)
        nodes, tasks = job_shape(stage, self.config)
        if self.dry_run:
            self.describe(stage, f"{stage.run.__module__}.{stage.run.__qualname__}, {self._ranks(stage, nodes, tasks)}",
                          nodes, tasks)
            return []
        job = self.launcher.submit(stage.run, self.config, name=stage.name, after=after,
                                   nodes=nodes, tasks_per_node=tasks)
        return self._record(stage.name, [job])

    def _submit_array(self, stage: Stage, after: Sequence[Any]) -> list[Any]:
        try:
            plan = stage.plan(self.config)
        except UserError as exc:  # a dry run goes on (its check reported the problem); else checked before
            self.describe(stage, f"an array of unknown size ({exc})", None, None, array=1)
            return []
        if self.dry_run:
            self.describe(stage, f"{plan.total} samples in {plan.num_shards} shards", None, None, array=plan.num_tasks)
            return []
        items = [(self.config, task) for task in range(plan.num_tasks)]
        jobs = self.launcher.map_array(stage.run, items, name=stage.name, after=after)
        return self._record(stage.name, jobs)

    def queued(self, name: str) -> list[Any]:
        """This run's Slurm jobs for ``name`` still in the queue: wait for them, never start twins."""
        if not self.slurm or self.dry_run:
            return []
        recorded = read_jobs(self.config.run_dir).get(name, {}).get("job_ids", [])
        states = queued_states(recorded)
        ids = [job_id for job_id in recorded if job_id in states]
        if not ids:
            return []
        self.say(f"{name} already queued as Slurm job {ids[0].split('_')[0]}, not submitted again")
        folder = self.config.layout.logs(name)
        jobs = [submitit.SlurmJob(folder=folder, job_id=job_id) for job_id in ids]
        self.submitted[name] = jobs
        return jobs

    def _record(self, name: str, jobs: list[Any]) -> list[Any]:
        self.submitted[name] = jobs
        ids = [str(job.job_id) for job in jobs]
        if self.slurm:  # for `gptfl status` and the next submission, which look the ids up in the queue
            record_jobs(self.config.run_dir, name, self.config.launcher.executor, ids)
        shown = ids[0].split("_")[0] + f" ({len(ids)} tasks)" if len(ids) > 1 else ids[0]
        self.say(f"{name}: {self.config.launcher.executor} job {shown}, logs under {self.config.layout.logs(name)}")
        return jobs

    def _ranks(self, stage: Stage, nodes: Optional[int], tasks: Optional[int]) -> str:
        ranks = stage.ranks(self.config)
        counted = f"{ranks} rank{'s' if ranks != 1 else ''}"
        return f"{counted} as {nodes} node(s) x {tasks} task(s)" if nodes else f"{counted} started by one task"

    def describe(self, stage: Stage, what: str, nodes: Optional[int], tasks: Optional[int],
                 array: Optional[int] = None) -> None:
        self.say(f"{stage.name}: would submit {what}")
        if self.slurm:
            print(sbatch_script(self.config.launcher.for_stage(stage.name), self.config.layout.logs(stage.name),
                                job_name=f"gptfl-{stage.name}", nodes=nodes, tasks_per_node=tasks, array=array),
                  end="")

    def all_jobs(self) -> list[Any]:
        return [job for jobs in self.submitted.values() for job in jobs]

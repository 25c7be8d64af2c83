"""Every stage of a run, described once: what it runs, what it checks, its job shape, what it makes
and when it is done.

The stage commands (``gptfl prompts|synth|pretrain|federate``), ``gptfl run``, ``gptfl sweep``,
``gptfl status`` and the scripts in ``jobs/`` all read these descriptions, so a stage is started,
checked, shaped and judged finished the same way whichever door it is started from.

A stage that no later stage reads is *not needed*: with ``pretrain.shards`` pretraining reads
external shards, so prompts and synthesis are skipped; with ``federate.init_path`` GPT-FL starts
from an external model, so pretraining is skipped too; ``federate.init=scratch`` runs only FL from
scratch.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from gptfl_hpc.config import Config
from gptfl_hpc.errors import UserError
from gptfl_hpc.layout import FEDERATION_FOLDERS, FEDERATION_MODEL, FEDERATION_SUMMARY, RunLayout

#: ``check(config, pending)``: refuse bad input with one ``UserError`` line before anything is
#: submitted or written; ``pending`` names the stages that will run before this one, whose outputs
#: are therefore not on disk yet.
Check = Callable[[Config, frozenset], Any]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    name: str  # the command, the log folder and the key in RUN/jobs.json
    target: str  # "module:function" the job runs, taking the config
    help: str
    output: Callable[[RunLayout], Path]
    state: Callable[[Config], dict[str, Any]]  # {"state": "done" | "partial" | "missing", details...}
    check: Check
    needs: tuple[str, ...] = ()  # stages whose outputs this one reads
    ranks_key: Optional[str] = None  # the config key with the stage's rank count
    plan: Optional[Callable[[Config], Any]] = None  # an array stage's plan: ``num_tasks`` tasks of the array
    always_rerun: bool = False  # cheap and derived from the others: remade by every `gptfl run`
    prerequisites: tuple[str, ...] = ()  # stages its own command runs first when they are not done

    def ranks(self, config: Config) -> int:
        if self.ranks_key is None:
            return 1
        value: Any = config
        for part in self.ranks_key.split("."):
            value = getattr(value, part)
        return int(value)

    def is_done(self, config: Config) -> bool:
        return self.state(config)["state"] == "done"

    def job_shape(self, config: Config) -> tuple[Optional[int], Optional[int]]:
        """``(nodes, tasks_per_node)``: with Slurm and the local executor one task per rank, so a local
        run has the process layout of a Slurm one; inline and debug jobs run here and start the
        ranks themselves (``(None, None)``)."""
        executor = config.launcher.executor
        if executor not in ("slurm", "local") or self.plan is not None:
            return None, None
        ranks = self.ranks(config)
        if ranks == 1:
            return 1, 1
        if executor == "local":
            return 1, ranks
        nodes = config.launcher.for_stage(self.name).slurm.nodes
        if ranks % nodes:
            raise UserError(
                f"{self.ranks_key} {ranks} does not split evenly over launcher.slurm.nodes {nodes}; "
                f"make {self.ranks_key} a multiple of the node count"
            )
        return nodes, ranks // nodes


# --------------------------------------------------------------------------- states


def _started(folder: Path) -> dict[str, Any]:
    """The state of a stage that is not done: partial when its folder holds anything (checkpoints)."""
    return {"state": "partial" if folder.is_dir() and any(folder.iterdir()) else "missing"}


def _file_state(path: Path, folder: Optional[Path] = None) -> dict[str, Any]:
    """Done when ``path`` exists, else partial or missing by what ``folder`` holds."""
    if path.is_file():
        return {"state": "done"}
    return _started(folder) if folder is not None else {"state": "missing"}


def _prompts_state(config: Config) -> dict[str, Any]:
    return _file_state(config.layout.prompts)


def synth_state(config: Config) -> dict[str, Any]:
    """Done when every planned shard is complete and matches its recorded checksum (a damaged shard
    makes the stage partial, so the next run remakes it); with shard counts and partial progress."""
    from gptfl_hpc.shards.manifest import shard_states
    from gptfl_hpc.synth.stage import PLAN, load_plan

    folder = config.layout.synth
    if not (folder / PLAN).is_file():
        return {"state": "missing"}
    labels = config.labels.load()
    plan = load_plan(config, len(labels))
    states = shard_states(folder, plan, labels, check=True)
    counts = {kind: sum(s.state == kind for s in states) for kind in ("complete", "partial", "missing", "bad")}
    samples = sum(s.committed for s in states)
    state = "done" if counts["complete"] == plan.num_shards else ("partial" if samples else "missing")
    partial = {f"shard-{s.shard:05d}": f"{s.committed}/{s.planned}" for s in states if s.state == "partial"}
    return {"state": state, "shards": counts, "samples": f"{samples}/{plan.total}", "partial": partial}


def _pretrain_state(config: Config) -> dict[str, Any]:
    from gptfl_hpc.pretrain.stage import completed

    if completed(config) is not None:  # the model, and done.json written by this config after it
        return {"state": "done"}
    return _started(config.layout.pretrain)


def _federation_state(init: str) -> Callable[[Config], dict[str, Any]]:
    def state(config: Config) -> dict[str, Any]:
        folder = config.layout.federation(init)
        if (folder / FEDERATION_SUMMARY).is_file() and (folder / FEDERATION_MODEL).is_file():
            return {"state": "done"}
        return _started(folder)

    return state


def _report_state(config: Config) -> dict[str, Any]:
    return _file_state(config.layout.report_file, config.layout.report)


# --------------------------------------------------------------------------- checks


def devices_are_here(config: Config) -> bool:
    """Whether the ranks will run on this machine, so its devices can be checked now. A Slurm job runs
    elsewhere; under ``srun`` each task checks its own node when the stage starts."""
    return config.launcher.executor != "slurm" and "SLURM_PROCID" not in os.environ


def _check_prompts(config: Config, pending: frozenset) -> Any:
    from gptfl_hpc.prompts.stage import check

    return check(config)


def synth_plan(config: Config) -> Any:
    from gptfl_hpc.synth.stage import load_plan

    return load_plan(config, len(config.labels.load()))


#: What each ``data.dataset`` holds, in the words shards use.
DATASET_MODALITY = {"digits": "image", "cifar10": "image", "cifar100": "image", "flowers102": "image",
                    "speech_commands": "speech", "esc50": "audio"}


def _input_choices(key: str, kind: str) -> list[str]:
    """The values of ``key`` (``synth.model.kind``, ``model.name`` or ``data.dataset``) for ``kind`` input."""
    from typing import get_args

    from gptfl_hpc.models.config import ModelName
    from gptfl_hpc.pretrain.inputs import input_kind, model_input_kind
    from gptfl_hpc.synth.generators.config import MODALITY

    if key == "synth.model.kind":
        return [name for name, modality in MODALITY.items() if input_kind(modality) == kind]
    if key == "model.name":
        return [name for name in get_args(ModelName) if model_input_kind(name) == kind]
    return [name for name, modality in DATASET_MODALITY.items() if input_kind(modality) == kind]


def require_same_input(config: Config, first: str, second: str) -> None:
    """Refuse two of ``synth.model.kind``, ``model.name`` and ``data.dataset`` of which one is for
    images and the other for audio (speech and sound both become log-mel features)."""
    from gptfl_hpc.pretrain.inputs import input_kind, model_input_kind

    kinds = {
        "synth.model.kind": (config.synth.model.kind, input_kind(config.synth.model.modality)),
        "model.name": (config.model.name, model_input_kind(config.model.name)),
        "data.dataset": (config.data.dataset, input_kind(DATASET_MODALITY[config.data.dataset])),
    }
    (value, kind), (other, other_kind) = kinds[first], kinds[second]
    if kind != other_kind:
        raise UserError(
            f"{first} {value} is for {_PLURAL[kind]} but {second} {other} is for {_PLURAL[other_kind]}; "
            f"set {first} to {_one_of(_input_choices(first, other_kind))}, "
            f"or {second} to {_one_of(_input_choices(second, kind))}"
        )


_PLURAL = {"image": "images", "audio": "audio"}


def _one_of(names: list[str]) -> str:
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _check_synth(config: Config, pending: frozenset) -> Any:
    from gptfl_hpc.synth.stage import check, rounding_note

    if config.synth.count is None:
        # Sized from the private dataset, the samples stand in for it; an explicit synth.count makes
        # shards of their own (for pretrain.shards elsewhere), of any modality.
        require_same_input(config, "synth.model.kind", "data.dataset")
    plan = check(config, prompts_pending="prompts" in pending)
    if config.launcher.executor == "slurm":
        from gptfl_hpc.launch.executors import max_array_size

        limit = max_array_size()
        if plan.num_tasks > limit:
            raise UserError(
                f"the plan needs {plan.num_tasks} array tasks but the cluster's MaxArraySize is {limit}; "
                f"lower synth.tasks to at most {limit}"
            )
    note = rounding_note(config, plan)
    if note:
        log.info(note)
    return plan


def _check_pretrain(config: Config, pending: frozenset) -> Any:
    from gptfl_hpc.pretrain.inputs import plan_training
    from gptfl_hpc.pretrain.stage import check_rank_devices

    if devices_are_here(config):
        check_rank_devices(config.pretrain.ranks)
    if "synth" in pending:  # the shards are made first: their checks run when the job starts
        require_same_input(config, "synth.model.kind", "model.name")  # but their modality is known now
        return None
    return plan_training(config)


def _check_federation(init: str) -> Check:
    def check(config: Config, pending: frozenset) -> Any:
        from gptfl_hpc.fl.stage import preflight

        require_same_input(config, "model.name", "data.dataset")
        return preflight(config, init, check_local_devices=devices_are_here(config),
                         model_pending="pretrain" in pending)

    return check


def _no_check(config: Config, pending: frozenset) -> None:
    return None


# --------------------------------------------------------------------------- the stages


PROMPTS = Stage("prompts", "gptfl_hpc.prompts.stage:run", "label names -> prompts per class",
                output=lambda layout: layout.prompts, state=_prompts_state, check=_check_prompts)
SYNTH = Stage("synth", "gptfl_hpc.synth.stage:run_array_task", "prompts -> synthetic shards (one array job)",
              output=lambda layout: layout.synth, state=synth_state, check=_check_synth, needs=("prompts",),
              plan=synth_plan, prerequisites=("prompts",))
PRETRAIN = Stage("pretrain", "gptfl_hpc.pretrain.stage:run", "train the downstream model on the shards (DeepSpeed)",
                 output=lambda layout: layout.pretrained_model, state=_pretrain_state, check=_check_pretrain,
                 needs=("synth",), ranks_key="pretrain.ranks")
FEDERATE = Stage("federate", "gptfl_hpc.fl.stage:run", "GPT-FL: federated learning from the pretrained model",
                 output=lambda layout: layout.federation("pretrain"), state=_federation_state("pretrain"),
                 check=_check_federation("pretrain"), needs=("pretrain",), ranks_key="federate.ranks")
BASELINE = Stage(FEDERATION_FOLDERS["scratch"], "gptfl_hpc.fl.stage:run_baseline",
                 "FL from scratch: the same federation from the model's own initialisation",
                 output=lambda layout: layout.federation("scratch"), state=_federation_state("scratch"),
                 check=_check_federation("scratch"), ranks_key="federate.ranks")
REPORT = Stage("report", "gptfl_hpc.report:make_report", "plots and report.md of the run",
               output=lambda layout: layout.report_file, state=_report_state, check=_no_check,
               needs=("federate", "federate-scratch"), always_rerun=True)

#: In the order a run makes them.
PIPELINE = (PROMPTS, SYNTH, PRETRAIN, FEDERATE, BASELINE, REPORT)
BY_NAME = {stage.name: stage for stage in PIPELINE}


def federation(config: Config) -> Stage:
    """The stage ``gptfl federate`` runs: GPT-FL, or FL from scratch with ``federate.init=scratch``."""
    return BASELINE if config.federate.init == "scratch" else FEDERATE


def not_needed(config: Config) -> dict[str, str]:
    """``{stage: why}`` for the stages this config skips: no later stage reads what they make."""
    skipped: dict[str, str] = {}
    fed = config.federate
    if fed.init == "scratch":
        skipped["federate"] = "federate.init=scratch runs FL from scratch only"
    elif not fed.baseline:
        skipped["federate-scratch"] = "federate.baseline is false"
    if "federate" in skipped:
        why = skipped["federate"]
        skipped.update(pretrain=why, synth=why, prompts=why)
    elif fed.init_path is not None:
        why = f"GPT-FL starts from federate.init_path {fed.init_path}"
        skipped.update(pretrain=why, synth=why, prompts=why)
    elif config.pretrain.shards is not None:
        why = "pretraining reads pretrain.shards"
        skipped.update(synth=why, prompts=why)
    return skipped


def stage_states(config: Config, names: Optional[tuple[str, ...]] = None) -> dict[str, dict[str, Any]]:
    """Each stage's state (``not needed`` with the reason for skipped ones), in pipeline order."""
    skipped = not_needed(config)
    states = {}
    for stage in PIPELINE:
        if names is not None and stage.name not in names:
            continue
        states[stage.name] = {"state": "not needed", "why": skipped[stage.name]} if stage.name in skipped \
            else stage.state(config)
    return states

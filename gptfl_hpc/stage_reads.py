"""The stages of a run and the config keys each one reads, declared once.

Each stage reads the outputs of the stages before it, so what it makes depends on the keys it reads
and on every key an earlier stage reads, never on a key first read after it. Every identity that
lets one run reuse another's output is derived from this: the pretrained model's
(``pretrain.config.pretrain_identity``), the shared runs of a sweep and the level of a sweep axis
(``sweep.shared_config``, ``sweep.key_level``), and the keys synthesis leaves out of the shards'
``config_hash``. A stage that starts reading another key is declared here, and all of them follow.
This module imports nothing else of the project, so the schema and every stage package can read it.
"""

from __future__ import annotations

import copy

#: The jobs of a run in the order a run makes them, as ``gptfl run`` names them (log folders, job
#: names, ``launcher.stages`` keys).
STAGE_NAMES = ("prompts", "synth", "pretrain", "federate", "federate-scratch", "report")
#: A stage whose jobs take another stage's ``launcher.stages`` settings under their own; it reads
#: the keys that stage reads.
STAGE_FAMILY = {"federate-scratch": "federate"}

#: Where a run executes, where it is written and which trackers watch it: every stage reads them, no
#: output depends on them.
WHERE_IT_RUNS = ("launcher", "run_dir", "tracking")

#: The config keys each stage is the first to read, in the order the stages run. A key stands for
#: every key below it except those named here themselves; a key named nowhere counts as read by
#: the first stage. ``report`` reads only what the stages before it made.
FIRST_READ_BY = {
    "prompts": ("seed", "labels", "prompts", "synth.model"),  # synth.model: the modality of the prompts
    "synth": ("synth", "data"),  # data: the real training set sizes the samples when synth.count is unset
    "pretrain": ("model", "pretrain"),
    "federate": ("federate", "data.partition"),
}

#: Keys a stage reads only to split and commit its work: they never change what it makes.
EXECUTION_KEYS = {"synth": ("synth.tasks", "synth.flush_every")}

#: Keys read only to summarise a stage's outputs afterwards (``gptfl synth stats``): they never change
#: what the stage makes, so the outputs' own identity (the shards' ``config_hash``) leaves them out.
SUMMARY_KEYS = {"synth": ("synth.score.duplicate_threshold",)}


def _covers(key: str, inner: str) -> bool:
    """Whether ``inner`` is ``key`` or a key below it."""
    return inner == key or inner.startswith(key + ".")


def _position(stage: str) -> int:
    return STAGE_NAMES.index(STAGE_FAMILY.get(stage, stage))


def first_reader(key: str) -> str:
    """The first stage that reads ``key`` or any key below it."""
    declared = [(stage, name) for stage, names in FIRST_READ_BY.items() for name in names]
    above = [(stage, name) for stage, name in declared if _covers(name, key)]
    readers = [max(above, key=lambda pair: len(pair[1]))[0] if above else STAGE_NAMES[0]]
    readers += [stage for stage, name in declared if name.startswith(key + ".")]
    return min(readers, key=_position)


def unread_by(stage: str) -> tuple[str, ...]:
    """The keys first read after ``stage``: its outputs never depend on them, so its identity leaves
    them out and runs that differ only in them share its outputs."""
    later = tuple(name for reader, names in FIRST_READ_BY.items() if _position(reader) > _position(stage)
                  for name in names)
    read = [name for reader, names in FIRST_READ_BY.items() if _position(reader) <= _position(stage) for name in names]
    for name in later:
        inner = next((key for key in read if key.startswith(name + ".")), None)
        if inner is not None:  # leaving out the section would leave out a key the outputs depend on
            raise ValueError(f"{stage}'s outputs depend on {inner}, which lies in {name}; they cannot leave out {name}")
    return later


def without_keys(values: dict, keys: tuple[str, ...]) -> dict:
    """A copy of the nested ``values`` without the dotted ``keys`` (a key that is not there is skipped)."""
    kept = copy.deepcopy(values)
    for key in keys:
        *parents, leaf = key.split(".")
        node = kept
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    return kept


"""Typed run configuration: YAML file + ``key.sub=value`` overrides -> one validated ``Config``.

Every stage reads the same ``Config``. Validation happens once, at load, and any problem becomes
one ``UserError`` line naming the key and the fix, before anything is written.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import types
import typing
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from gptfl_hpc.data.config import DataConfig
from gptfl_hpc.errors import UserError
from gptfl_hpc.fl.config import FederateConfig
from gptfl_hpc.models.config import ModelConfig
from gptfl_hpc.pretrain.config import PretrainConfig
from gptfl_hpc.prompts.config import PromptsConfig
from gptfl_hpc.layout import RunLayout
from gptfl_hpc.schema import Section, is_added_at_default, is_operational, is_output_choice
from gptfl_hpc.synth.config import SynthConfig


# --------------------------------------------------------------------------- launcher


def slurm_time_to_minutes(value: Union[int, str]) -> int:
    """Slurm's time formats in whole minutes (seconds round up).

    ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``, as sbatch ``--time`` reads them.
    """
    text = str(value).strip()
    days, _, clock = text.rpartition("-") if "-" in text else ("", "", text)
    parts = clock.split(":")
    if not all(p.isdigit() for p in parts) or (days and not days.isdigit()) or len(parts) > 3:
        raise ValueError(f"'{text}' is not a Slurm time; use minutes (90), H:MM:SS or D-HH:MM:SS")
    numbers = [int(p) for p in parts]
    if days:
        h, m, s = (numbers + [0, 0])[:3]
    elif len(numbers) == 3:
        h, m, s = numbers
    else:
        h, (m, s) = 0, (numbers + [0])[:2]
    minutes = int(days or 0) * 1440 + h * 60 + m + (1 if s else 0)
    if minutes < 1:
        raise ValueError("must be at least one minute")
    return minutes


def closest_name(name: str, valid: Iterable[str]) -> Optional[str]:
    """The valid name ``name`` most likely means: a close spelling (``seeed`` -> ``seed``), else one
    that starts with it or that it starts with (``gpus`` -> ``gpus_per_node``); None when none fits."""
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if close:
        return close[0]
    prefixed = [key for key in valid if key.startswith(name) or name.startswith(key)]
    return max(prefixed, key=lambda key: difflib.SequenceMatcher(None, name, key).ratio(), default=None)


#: A stage whose jobs take another stage's ``launcher.stages`` settings under their own.
STAGE_FAMILY = {"federate-scratch": "federate"}
#: The jobs of a run, as ``gptfl run`` names them (log folders, job names, ``launcher.stages`` keys).
STAGE_NAMES = ("prompts", "synth", "pretrain", "federate", "federate-scratch", "report")


class SlurmConfig(Section):
    """Slurm parameters; each maps onto one sbatch option."""

    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    time: Union[int, str] = Field(60, description="minutes or D-HH:MM:SS")
    nodes: int = Field(1, ge=1)
    tasks_per_node: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: int = Field(1, ge=1)
    mem: Optional[str] = Field(None, description="per node, e.g. 64G")
    array_parallelism: int = Field(32, ge=1, description="max array tasks running at once")
    signal_delay_s: int = Field(120, ge=0, description="USR2 this long before the time limit")
    max_requeues: int = Field(20, ge=0, description="preemptions survived before giving up")
    job_name: str = "gptfl"
    setup: list[str] = Field(default_factory=list, description="shell lines run before the job")
    srun_args: list[str] = Field(default_factory=list)
    extra: dict[str, Union[str, int, bool]] = Field(
        default_factory=dict, description="any other sbatch option, e.g. {constraint: a100}"
    )

    @field_validator("time")
    @classmethod
    def _check_time(cls, value: Union[int, str]) -> Union[int, str]:
        slurm_time_to_minutes(value)
        return value

    @field_validator("mem")
    @classmethod
    def _check_mem(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.fullmatch(r"\d+[KMGT]?", str(value)):
            raise ValueError(f"'{value}' is not a Slurm memory size; use e.g. 64G or 4000M")
        return value

    @property
    def time_min(self) -> int:
        return slurm_time_to_minutes(self.time)


class LauncherConfig(Section):
    """Where stages run. ``executor`` is always explicit: never auto-detected."""

    executor: Literal["inline", "local", "slurm", "debug"] = "local"
    poll_interval_s: float = Field(5.0, gt=0)
    preempt_grace_s: float = Field(60.0, gt=0, description="wait this long for a safe point")
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    stages: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-stage changes to slurm, e.g. {synth: {gpus_per_node: 1}, pretrain: {nodes: 2}}",
    )

    @model_validator(mode="after")
    def _check_stages(self) -> "LauncherConfig":
        for stage, changes in self.stages.items():
            if stage not in STAGE_NAMES:
                hint = closest_name(stage, STAGE_NAMES)
                fix = f"did you mean '{hint}'?" if hint else f"stages are {', '.join(STAGE_NAMES)}"
                raise ValueError(f"launcher.stages.{stage} is not a stage; {fix}")
            try:
                slurm = SlurmConfig.model_validate({**self.slurm.model_dump(), **changes})
            except ValidationError as exc:
                first = exc.errors()[0]
                key = ".".join(str(part) for part in first["loc"])
                if first["type"] == "extra_forbidden":
                    hint = closest_name(key, SlurmConfig.model_fields)
                    problem = f"is not a Slurm setting; did you mean '{hint}'?" if hint else "is not a Slurm setting"
                elif isinstance(first.get("input"), bool) and first["type"] in _RANGE_ERRORS:
                    problem = _boolean_problem(first["input"])
                else:
                    problem = first["msg"].removeprefix("Value error, ")
                raise ValueError(f"launcher.stages.{stage}.{key}: {problem}") from None
            coerced = coerced_boolean(changes, slurm)
            if coerced:
                raise ValueError(f"launcher.stages.{stage}.{coerced[0]}: {coerced[1]}")
        return self

    def for_stage(self, stage: str) -> "LauncherConfig":
        """This launcher with ``stages[stage]`` applied to its Slurm parameters. FL from scratch is the
        same federation as GPT-FL: ``stages.federate`` applies to it too, under its own settings."""
        changes = {**self.stages.get(STAGE_FAMILY.get(stage, stage), {}), **self.stages.get(stage, {})}
        if not changes:
            return self
        slurm = SlurmConfig.model_validate({**self.slurm.model_dump(), **changes})
        return self.model_copy(update={"slurm": slurm})


# --------------------------------------------------------------------------- labels


def _repeated(names: list[str]) -> list[str]:
    """Names that occur more than once, sorted."""
    return sorted(name for name, count in Counter(names).items() if count > 1)


class LabelsConfig(Section):
    """The run's ordered label list; it fixes the class indices of every stage."""

    source: Literal["list", "file", "iblt"] = "list"
    names: list[str] = Field(default_factory=list, description="with source: list")
    path: Optional[Path] = Field(None, description="with source: file (one per line) or iblt")

    @model_validator(mode="after")
    def _check_source(self) -> "LabelsConfig":
        if self.source == "list":
            if not self.names:
                raise ValueError("labels.names is empty; list the label names or set labels.source")
            repeated = _repeated(self.names)
            if repeated:
                raise ValueError(f"labels.names repeats {repeated}; each label once")
        elif self.path is None:
            raise ValueError(f"labels.source '{self.source}' needs labels.path")
        elif not self.path.exists():
            raise ValueError(f"labels.path {self.path} does not exist; fix the path")
        return self

    def load(self) -> list[str]:
        """The ordered label names; raises ``UserError`` for an empty or repeating list."""
        if self.source == "list":
            return list(self.names)
        if self.source == "iblt":
            from gptfl_hpc.labels.files import load_label_union

            return load_label_union(self.path)
        names = [line.strip() for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not names:
            raise UserError(f"labels.path {self.path} lists no labels; write one label name per line")
        repeated = _repeated(names)
        if repeated:
            raise UserError(f"labels.path {self.path} repeats {repeated}; list each label once")
        return names


# --------------------------------------------------------------------------- root


class Config(Section):
    """A whole GPT-FL run."""

    run_dir: Path = Path("runs/quickstart")
    seed: int = Field(0, ge=0)
    labels: LabelsConfig
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    federate: FederateConfig = Field(default_factory=FederateConfig)

    @field_validator("run_dir", mode="before")
    @classmethod
    def _run_dir_given(cls, value: Any) -> Any:
        # An empty path is the current directory: the run would be written wherever gptfl started.
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("run_dir is empty; set it to the run's folder, e.g. run_dir=runs/my-run")
        return value

    def resolved(self) -> dict[str, Any]:
        """Plain JSON-able dict of every value, defaults included."""
        return self.model_dump(mode="json")

    def science(self) -> dict[str, Any]:
        """The part that decides results: everything but where it runs, where it is written and
        operational settings such as checkpoint cadence."""
        identity = self.as_run_identity()
        return _without_operational(identity, identity.model_dump(mode="json", exclude={"launcher", "run_dir"}))

    def as_run_identity(self) -> "Config":
        """This config with every output choice at its default: what a run directory records."""
        return _with_default_choices(self)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    @property
    def hash(self) -> str:
        """Identity of the run: sha256 of the science part, canonical JSON."""
        return _sha256_json(self.science())


def _without_operational(section: BaseModel, values: dict[str, Any]) -> dict[str, Any]:
    kept = {}
    for name, value in values.items():
        if is_operational(type(section), name) or is_added_at_default(section, name):
            continue
        child = getattr(section, name)
        kept[name] = _without_operational(child, value) if isinstance(child, BaseModel) else value
    return kept


def _with_default_choices(section: BaseModel) -> Any:
    update: dict[str, Any] = {}
    for name, field in type(section).model_fields.items():
        value = getattr(section, name)
        if is_output_choice(type(section), name):
            update[name] = field.default
        elif isinstance(value, BaseModel):
            update[name] = _with_default_choices(value)
    return section.model_copy(update=update)


def _sha256_json(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# --------------------------------------------------------------------------- loading


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping that gives one key twice: YAML would silently keep the last value."""

    def __init__(self, key: Any, first: yaml.Mark, again: yaml.Mark):
        super().__init__(problem=f"key '{key}' is given twice", problem_mark=again)
        self.key, self.first_line, self.line = key, first.line + 1, again.line + 1


class _Loader(yaml.SafeLoader):
    """SafeLoader minus YAML 1.1's base-60 numbers, so ``time: 1:30:00`` stays a string, and
    refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` keys may be overridden below it
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: the base loader reports it
                continue
            if first is not key_node.start_mark:
                raise DuplicateKeyError(key, first, key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)"
               r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def load_config(path: Union[str, Path], overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config, apply ``key.sub=value`` overrides, validate; raise ``UserError``."""
    data = read_yaml_mapping(path, "config file")
    applied: list[str] = []
    for override in overrides:
        try:
            apply_override(data, override)
        except NotASection as exc:
            if not _is_section(_schema_type(exc.prefix.split("."))):
                raise  # the override treats a setting as a section: the override is the mistake
            raise UserError(_misplaced_value(exc, path, applied)) from None
        applied.append(override)
    return validate_config(data)


def _misplaced_value(exc: NotASection, path: Union[str, Path], applied: list[str]) -> str:
    """Blame a plain value where the schema has a section on whoever put it there: the config file,
    or the last override that set it (never the override that merely ran into it)."""
    setters = [override for override in applied if _covers(override.partition("=")[0], exc.prefix)]
    where = f"override '{setters[-1]}'" if setters else f"config file {path}"
    held = "is empty" if exc.value is None else f"holds {exc.value!r}"
    return f"{where}: '{exc.prefix}' is a section but {held}; give it keys ({exc.prefix}: {{key: value}}) or remove it"


def read_yaml_mapping(path: Union[str, Path], what: str) -> dict[str, Any]:
    """The mapping a YAML file holds; one ``UserError`` line when it is missing, malformed or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} not found; pass a YAML file such as configs/quickstart.yaml")
    try:
        data = parse_yaml(path.read_text()) or {}
    except DuplicateKeyError as exc:
        raise UserError(
            f"{what} {path} gives key '{exc.key}' twice (lines {exc.first_line} and {exc.line}); keep one"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{what} {path} is not valid YAML{where}; fix the syntax") from None
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def validate_config(data: dict[str, Any]) -> Config:
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe_error(exc.errors()[0], data)) from None
    coerced = coerced_boolean(data, config)
    if coerced:
        raise UserError(f"config: key '{coerced[0]}': {coerced[1]}")
    return config.model_copy(update={"run_dir": config.run_dir.absolute()})


def coerced_boolean(given: dict[str, Any], section: BaseModel) -> Optional[tuple[str, str]]:
    """``(key, problem)`` for the first YAML true/false that validation took as a number (pydantic
    reads ``seed: true`` as 1), else None; ``given`` is what ``section`` was validated from."""
    for name, raw in given.items():
        if name in type(section).model_fields:
            found = _coerced(raw, getattr(section, name), name)
            if found:
                return found
    return None


#: pydantic's range errors: a true/false reaching one was read as 1/0.
_RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _boolean_problem(value: bool) -> str:
    return f"{str(value).lower()} is a boolean, not a number; write the number"


def _coerced(raw: Any, value: Any, key: str) -> Optional[tuple[str, str]]:
    if isinstance(raw, bool):
        if isinstance(value, bool):
            return None
        return key, _boolean_problem(raw)
    if isinstance(raw, dict) and isinstance(value, BaseModel):
        found = coerced_boolean(raw, value)
        return (f"{key}.{found[0]}", found[1]) if found else None
    if isinstance(raw, dict) and isinstance(value, dict):
        pairs = [(raw[name], value[name], f"{key}.{name}") for name in raw if name in value]
    elif isinstance(raw, (list, tuple)) and isinstance(value, (list, tuple)) and len(raw) == len(value):
        pairs = [(item, validated, f"{key}[{index}]") for index, (item, validated) in enumerate(zip(raw, value))]
    else:
        return None
    return next(filter(None, (_coerced(*pair) for pair in pairs)), None)


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (``3``, ``true``, ``[a, b]``)."""
    key, sep, raw = override.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(f"override '{override}' is not key=value; write it like synth.batch_size=8")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise UserError(f"override '{override}' gives key '{exc.key}' twice; keep one") from None
    except yaml.YAMLError:
        value = raw  # not YAML: keep the text as a string
    set_key(data, key, value, f"override '{override}'")


class NotASection(UserError):
    """A dotted key runs through ``prefix``, which holds the plain ``value``, not a section."""

    def __init__(self, source: str, prefix: str, value: Any):
        super().__init__(f"{source}: '{prefix}' is a value, not a section")
        self.prefix, self.value = prefix, value


def _covers(key: str, prefix: str) -> bool:
    """Whether setting ``key`` sets ``prefix`` (the same key or a section holding it)."""
    return prefix == key or prefix.startswith(key + ".")


def set_key(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set the dotted ``key`` in a nested dict, making sections on the way; ``source`` names the
    setting in the error when a section on the path already holds a plain value."""
    *parents, leaf = key.split(".")
    node = data
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise NotASection(source, ".".join(parents[: depth + 1]), child)
        node = child
    node[leaf] = value


def describe_error(error: dict[str, Any], data: dict[str, Any]) -> str:
    """Turn one pydantic error into one line that names the key and the fix."""
    loc = [part for part in error["loc"] if isinstance(part, str)]
    key = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        hint = closest_name(loc[-1], valid)
        fix = f"did you mean '{_join(loc[:-1], hint)}'?" if hint else f"valid keys here: {', '.join(valid)}"
        return f"config: unknown key '{key}'; {fix}"
    if kind == "missing":
        return f"config: missing key '{key}'; add it to the config"
    got = error.get("input")
    if isinstance(got, bool) and kind in _RANGE_ERRORS:  # true/false read as 1/0, then out of range
        return f"config: key '{key}': {_boolean_problem(got)}"
    message = error["msg"]
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
        # Section-level checks already name their keys ("labels.path ... does not exist").
        return f"config: {message}" if not key or message.startswith(key) else f"config: key '{key}': {message}"
    shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    return f"config: key '{key}': {message[0].lower() + message[1:]}{shown}; fix the value"


def _join(parents: list[str], leaf: str) -> str:
    return ".".join([*parents, leaf])


def _valid_keys(loc: list[str]) -> list[str]:
    """Field names of the section at ``loc`` (a path of field names from the root)."""
    kind = _schema_type(loc)
    return sorted(kind.model_fields) if _is_model(kind) else []


def _schema_type(loc: list[str]) -> Any:
    """The schema's type at ``loc`` (a path of keys from the root, ``Optional`` unwrapped), or None
    where the schema has no such key."""
    kind: Any = Config
    for part in loc:
        if _is_model(kind):
            field = kind.model_fields.get(part)
            if field is None:
                return None
            kind = field.annotation
        elif typing.get_origin(kind) is dict:
            kind = typing.get_args(kind)[1]
        else:
            return None
        members = [member for member in typing.get_args(kind) if member is not type(None)]
        if typing.get_origin(kind) in (Union, types.UnionType) and len(members) == 1:
            kind = members[0]
    return kind


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _is_section(kind: Any) -> bool:
    """Whether the schema holds keys there (a section, or a mapping such as ``launcher.stages``)."""
    return _is_model(kind) or typing.get_origin(kind) is dict


#: How the shipped paper configs mark what each user must fill in (data roots, weights).
PLACEHOLDER_PREFIX = "/path/to/"


def placeholder_paths(config: Config) -> list[tuple[str, str]]:
    """``(key, value)`` of every setting that still holds a ``/path/to/...`` placeholder."""
    found: list[tuple[str, str]] = []

    def visit(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for name, child in value.items():
                visit(child, f"{key}.{name}" if key else name)
        elif isinstance(value, list):
            for index, child in enumerate(value):
                visit(child, f"{key}[{index}]")
        elif isinstance(value, str) and value.startswith(PLACEHOLDER_PREFIX):
            found.append((key, value))

    visit(config.resolved(), "")
    return found


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(config.resolved(), sort_keys=False, allow_unicode=True)

"""Experiment grids: a base config and axes -> one run per point, with the upstream stages shared.

A grid file (``docs/sweeps.md`` has the whole guide)::

    base: ../cifar10-convnet-dir0.1.yaml     # the config every point starts from (relative to this file)
    sweep_dir: runs/sweeps/sampling-rate     # optional; default runs/sweeps/<grid file name>
    shared_dir: runs/shared                  # optional; default SWEEP_DIR/shared
    set: {federate.rounds: 200}              # optional: settings for every point
    axes:                                    # the points are the product of the axes, in this order
      federate.clients_per_round: [5, 10, 20]
      seed: [0, 1, 2]
      dataset:                               # a named axis: each value sets several keys
        cifar10: {base: ../cifar10-convnet-dir0.1.yaml}
        cifar100: {base: ../cifar100-convnet-dir0.1.yaml, federate.rounds: 300}

Point ``clients_per_round=5,seed=0`` runs in ``SWEEP_DIR/clients_per_round=5,seed=0``. Its prompts and
synthetic shards come from the shared run ``SHARED/synth-<id>``, its pretrained model from
``SHARED/pretrain-<id>``, both linked into its run directory. ``<id>`` is the hash of the point's
config with every key that stage never reads put back at its default, so points that differ only in
such keys share one run, and a sweep that names the same shared_dir reuses runs made by another.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import yaml

from gptfl_hpc.config import Config, apply_override, parse_yaml, read_yaml_mapping, set_key, validate_config
from gptfl_hpc.durable import atomic_symlink, atomic_write_json
from gptfl_hpc.errors import UserError
from gptfl_hpc.stage_reads import FIRST_READ_BY, STAGE_FAMILY, WHERE_IT_RUNS, first_reader, unread_by, without_keys

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
SWEEP_FORMAT = "gptfl-sweep/1"
GRID_KEYS = ("base", "sweep_dir", "shared_dir", "set", "axes")
DEFAULT_SWEEPS = Path("runs") / "sweeps"

#: The run that makes a stage's outputs for a point, where it is not a run of that stage: the shared
#: synth run makes the prompts too, and each point makes FL from scratch beside GPT-FL.
MADE_BY = {"prompts": "synth", **STAGE_FAMILY}
#: The levels a key can change, from the first stage it reaches; ``launcher`` changes no result.
LEVELS = (*dict.fromkeys(MADE_BY.get(stage, stage) for stage in FIRST_READ_BY), "launcher")


def key_level(key: str) -> str:
    """The first stage whose outputs ``key`` can change (``base`` changes every stage): the level of
    the first stage that reads it (``stage_reads``)."""
    if any(key == where or key.startswith(where + ".") for where in WHERE_IT_RUNS):
        return "launcher"
    reader = first_reader(key)
    return MADE_BY.get(reader, reader)


@dataclass(frozen=True)
class Axis:
    """One dimension of the grid."""

    name: str  # a config key, or the name of an axis whose values set several keys
    labels: tuple[str, ...]  # per value, as it appears in point names
    values: tuple[Any, ...]  # per value: the config value, or the value's name for a named axis
    settings: tuple[dict[str, Any], ...]  # per value: dotted key -> value ("base": a config file)

    @property
    def level(self) -> str:
        keys = {key for setting in self.settings for key in setting}
        return min((key_level(key) for key in keys), key=LEVELS.index)


@dataclass(frozen=True)
class Point:
    """One run of the grid."""

    name: str
    labels: dict[str, str]  # axis name -> label
    values: dict[str, Any]  # axis name -> value
    config: Config  # run_dir = SWEEP_DIR/name
    synth: str  # the shared run holding its prompts and shards
    pretrain: str  # the shared run holding its pretrained model


@dataclass(frozen=True)
class SharedRun:
    """A run of the upstream stages that several points read."""

    name: str  # its folder under shared_dir: synth-<id> or pretrain-<id>
    level: str  # "synth" (prompts + synthesis) or "pretrain"
    config: Config
    points: tuple[str, ...]
    describe: str  # the axis values its points share, e.g. "seed=0"
    reads: Optional[str] = None  # a pretrain run: the synth run whose shards it trains on


@dataclass(frozen=True)
class Sweep:
    source: Path
    sweep_dir: Path
    shared_dir: Path
    axes: tuple[Axis, ...]
    points: tuple[Point, ...]
    shared: dict[str, SharedRun]

    def shared_runs(self, level: str) -> list[SharedRun]:
        return [run for run in self.shared.values() if run.level == level]


# --------------------------------------------------------------------------- loading


def is_grid(data: dict[str, Any]) -> bool:
    """A grid file has ``axes`` or ``base``, which no config has."""
    return "axes" in data or "base" in data


def parse_axis_option(text: str) -> tuple[str, list[Any]]:
    """``--axis KEY=V1,V2`` -> ``(KEY, [V1, V2])``; values are read as YAML (``0.1``, ``true``, ``[1, 5]``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise UserError(f"--axis '{text}' is not KEY=V1,V2,...; write it like --axis seed=0,1,2")
    try:
        values = parse_yaml(f"[{raw}]")
    except yaml.YAMLError:
        raise UserError(f"--axis '{text}': the values are not a comma-separated YAML list; quote them") from None
    return key.strip(), values


def load_sweep(
    source: Path,
    overrides: Sequence[str] = (),
    extra_axes: Sequence[tuple[str, list[Any]]] = (),
    sweep_dir: Optional[Path] = None,
    shared_dir: Optional[Path] = None,
) -> Sweep:
    """Expand a grid file (or a config plus ``extra_axes``) into its points and shared runs.

    Every check runs here, before anything is written: one ``UserError`` line on bad input.
    """
    source = Path(source)
    data = read_yaml_mapping(source, "grid file")
    where = f"grid {source}" if is_grid(data) else f"sweep of {source}"
    if is_grid(data):
        unknown = sorted(set(data) - set(GRID_KEYS))
        if unknown:
            hint = difflib.get_close_matches(unknown[0], GRID_KEYS, n=1)
            fix = f"did you mean '{hint[0]}'?" if hint else f"a grid has {', '.join(GRID_KEYS)}"
            raise UserError(f"{where}: unknown key '{unknown[0]}'; {fix}")
        base = _path_setting(data.get("base"), source.parent, where, "base") if "base" in data else None
        settings = _mapping(data.get("set") or {}, f"{where}: set")
        axes_spec = data.get("axes") or {}
        if not isinstance(axes_spec, dict):
            raise UserError(f"{where}: axes must map each key to its values, e.g. axes: {{seed: [0, 1, 2]}}")
        axes = [_parse_axis(str(name), spec, where, source.parent) for name, spec in axes_spec.items()]
        sweep_dir = sweep_dir or _optional_path(data.get("sweep_dir"), where, "sweep_dir")
        shared_dir = shared_dir or _optional_path(data.get("shared_dir"), where, "shared_dir")
    else:  # a config: the sweep's axes all come from the command line
        base, settings, axes = str(source), {}, []
    for key, values in extra_axes:
        if any(axis.name == key for axis in axes):
            raise UserError(f"--axis {key}: the grid already has an axis '{key}'; give each axis once")
        axes.append(_parse_axis(key, values, f"--axis {key}", Path.cwd()))
    if not axes and is_grid(data):
        raise UserError(f"{where}: no axes; add axes: to the grid or --axis KEY=V1,V2 to the command")
    if not axes:
        raise UserError(f"{source} is a config, not a grid: give the sweep's axes with --axis KEY=V1,V2")
    _check_overrides(axes, overrides, where)

    sweep_dir = (sweep_dir or DEFAULT_SWEEPS / source.stem).absolute()
    shared_dir = (shared_dir or sweep_dir / "shared").absolute()
    points = _expand(axes, base, settings, overrides, sweep_dir, where)
    shared = _share(points, axes, shared_dir)
    linked = [Point(name, labels, values, config, *_upstream_of(name, shared))
              for name, labels, values, config in points]
    return Sweep(source, sweep_dir, shared_dir, tuple(axes), tuple(linked), shared)


def _path_setting(value: Any, folder: Path, where: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: {what} must be the path of a config file, got {value!r}")
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else folder / path)


def _optional_path(value: Any, where: str, key: str) -> Optional[Path]:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: {key} must be a folder path, got {value!r}")
    return Path(value).expanduser()


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{where} must map keys to values, e.g. {{federate.rounds: 200}}")
    flat = _flatten(value)
    if "run_dir" in flat:
        raise UserError(f"{where}: run_dir is chosen by the sweep (SWEEP_DIR/<point name>); set sweep_dir instead")
    return flat


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys, so a value sets only the keys it names (never a whole section)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, full))
        else:
            flat[full] = value
    return flat


def _parse_axis(name: str, spec: Any, where: str, folder: Path) -> Axis:
    if name == "run_dir":
        raise UserError(f"{where}: run_dir cannot be an axis; the sweep names each point's run_dir")
    if isinstance(spec, list):
        if not spec:
            raise UserError(f"{where}: axis '{name}' has no values; list at least one")
        if name == "base":
            paths = [_path_setting(value, folder, where, "each base value") for value in spec]
            settings = [{"base": path} for path in paths]
            labels = [_label(Path(path).stem) for path in paths]
        else:
            settings = [_flatten({name: value}) for value in spec]
            labels = [_label(value) for value in spec]
        values = list(spec)
    elif isinstance(spec, dict):
        if not spec:
            raise UserError(f"{where}: axis '{name}' has no values; name at least one")
        settings, labels = [], []
        for label, keys in spec.items():
            if not isinstance(keys, dict) or not keys:
                raise UserError(
                    f"{where}: axis '{name}' value '{label}' must map keys to values, "
                    "e.g. {federate.algorithm: fedadam}"
                )
            setting = _mapping(keys, f"{where}: axis '{name}' value '{label}'")
            if "base" in setting:
                setting["base"] = _path_setting(setting["base"], folder, where, f"axis '{name}' value '{label}' base")
            settings.append(setting)
            labels.append(_label(label))
        values = [str(label) for label in spec]
    else:
        raise UserError(
            f"{where}: axis '{name}' must be a list of values or a mapping of named settings, "
            f"not {type(spec).__name__}; e.g. {name}: [0, 1, 2]"
        )
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise UserError(f"{where}: axis '{name}' lists {repeated[0]} more than once; give each value once")
    return Axis(name, tuple(labels), tuple(_plain(v) for v in values), tuple(settings))


def _label(value: Any) -> str:
    """A value as it appears in a point's name: letters, digits and ``._+-`` only."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, (list, dict)):
        text = json.dumps(value, separators=(",", ":"), default=str)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "_"


def _plain(value: Any) -> Any:
    """A JSON value for sweep.json (YAML may hold dates)."""
    return json.loads(json.dumps(value, default=str))


def _check_overrides(axes: list[Axis], overrides: Sequence[str], where: str) -> None:
    """Command-line overrides apply to every point: refuse one that an axis would overwrite."""
    axis_keys = {key for axis in axes for setting in axis.settings for key in setting if key != "base"}
    for override in overrides:
        key = override.partition("=")[0].strip()
        if key == "run_dir":
            raise UserError(f"override '{override}': run_dir is chosen by the sweep; use --sweep-dir instead")
        clash = next((k for k in sorted(axis_keys)
                      if k == key or k.startswith(key + ".") or key.startswith(k + ".")), None)
        if clash:
            raise UserError(f"override '{override}' sets {clash}, which an axis of {where} varies; drop one of them")


#: A point before its shared runs are known: name, axis labels, axis values, config.
Expanded = tuple[str, dict[str, str], dict[str, Any], Config]


def _expand(
    axes: list[Axis],
    base: Optional[str],
    settings: dict[str, Any],
    overrides: Sequence[str],
    sweep_dir: Path,
    where: str,
) -> list[Expanded]:
    short = short_axis_names([axis.name for axis in axes])
    bases: dict[str, dict[str, Any]] = {}
    points = []
    seen: dict[str, str] = {}
    for combination in itertools.product(*(range(len(axis.labels)) for axis in axes)):
        name = ",".join(f"{s}={axis.labels[i]}" for s, axis, i in zip(short, axes, combination))
        point_base, point_settings = base, {}
        for axis, i in zip(axes, combination):
            setting = dict(axis.settings[i])
            point_base = setting.pop("base", point_base)
            point_settings.update(setting)
        if point_base is None:
            raise UserError(f"{where}: point {name} has no base config; set base: in the grid or on an axis")
        if point_base not in bases:
            bases[point_base] = read_yaml_mapping(point_base, "base config")
        data = copy.deepcopy(bases[point_base])
        for key, value in settings.items():
            set_key(data, key, value, f"{where}: set {key}")
        try:
            for override in overrides:
                apply_override(data, override)
            for key, value in point_settings.items():
                set_key(data, key, value, f"axis value {key}")
            data["run_dir"] = str(sweep_dir / name)
            config = validate_config(data)
        except UserError as exc:
            raise UserError(f"{where}: point {name}: {exc}") from None
        twin = seen.get(config.hash)
        if twin is not None:
            raise UserError(
                f"{where}: points {twin} and {name} are the same run (their values change nothing that decides "
                "results); remove one of the values"
            )
        seen[config.hash] = name
        labels = {axis.name: axis.labels[i] for axis, i in zip(axes, combination)}
        values = {axis.name: axis.values[i] for axis, i in zip(axes, combination)}
        # One tracked experiment for the sweep, one group per point (tracking is not in the hash).
        config = config.model_copy(update={"tracking": config.tracking.for_sweep_point(sweep_dir, values)})
        points.append((name, labels, values, config))
    return points


def short_axis_names(names: Sequence[str]) -> list[str]:
    """Axes as point names and tables show them: the key's last part (``clients_per_round``) unless
    two axes share it."""
    leaves = [name.rsplit(".", 1)[-1] for name in names]
    return [leaf if leaves.count(leaf) == 1 else name for leaf, name in zip(leaves, names)]


# --------------------------------------------------------------------------- sharing


def shared_config(config: Config, level: str, shared_dir: Path) -> Config:
    """The config of the shared run that makes ``level``'s outputs for ``config`` (``synth``: prompts
    and shards; ``pretrain``: the pretrained model), in ``shared_dir/<level>-<id>``.

    Every key that level never reads is put back at its default, so all points that differ only in
    such keys get the same config, hash and folder.
    """
    data = without_keys(config.model_dump(mode="json"), unread_by(level))
    data["run_dir"] = str(shared_dir)
    data["tracking"]["axes"] = {}  # tracked as its own group of the sweep, not as the point it came from
    canonical = validate_config(data)
    return canonical.model_copy(update={"run_dir": shared_dir / f"{level}-{canonical.hash[:12]}"})


def _share(points: list[Expanded], axes: Sequence[Axis], shared_dir: Path) -> dict[str, SharedRun]:
    """The shared runs, in the order points first need them."""
    members: dict[str, list[str]] = {}
    configs: dict[str, Config] = {}
    reads: dict[str, str] = {}
    describe: dict[str, str] = {}
    names = [axis.name for axis in axes]
    short = dict(zip(names, short_axis_names(names)))
    for name, labels, _, config in points:
        synth_name = None
        for level in ("synth", "pretrain"):
            shared = shared_config(config, level, shared_dir)
            run_name = shared.run_dir.name
            configs.setdefault(run_name, shared)
            members.setdefault(run_name, []).append(name)
            if level == "pretrain":
                reads[run_name] = synth_name
            else:
                synth_name = run_name
            if run_name not in describe:
                upstream = LEVELS[: LEVELS.index(level) + 1]
                shown = [f"{short[a.name]}={labels[a.name]}" for a in axes if a.level in upstream]
                describe[run_name] = ",".join(shown) or "every point"
    return {
        run_name: SharedRun(run_name, run_name.split("-", 1)[0], configs[run_name], tuple(names),
                            describe[run_name], reads.get(run_name))
        for run_name, names in members.items()
    }


def _upstream_of(point: str, shared: dict[str, SharedRun]) -> tuple[str, str]:
    """The names of the synth and pretrain runs a point reads."""
    return tuple(next(run.name for run in shared.values() if run.level == level and point in run.points)
                 for level in ("synth", "pretrain"))


def link_upstream(sweep: Sweep) -> None:
    """Link every pretrain run to its synth run's outputs, and every point to its shared outputs."""
    for run in sweep.shared_runs("pretrain"):
        _link_synth_outputs(run.config.run_dir, sweep.shared[run.reads].config)
    for point in sweep.points:
        _link_synth_outputs(point.config.run_dir, sweep.shared[point.synth].config)
        _link_pretrain_outputs(point.config.run_dir, sweep.shared[point.pretrain].config.run_dir)


def _link_synth_outputs(run_dir: Path, synth_run: Config) -> None:
    from gptfl_hpc.prompts.store import prompts_path
    from gptfl_hpc.synth.stage import synth_dir

    _link(prompts_path(run_dir), prompts_path(synth_run.run_dir))
    _link(run_dir / synth_dir(synth_run).name, synth_dir(synth_run))


def _link_pretrain_outputs(run_dir: Path, pretrain_run_dir: Path) -> None:
    """The model and its metrics, file by file: were pretraining ever run again in the point's own
    folder, its atomic renames would replace these links, never the shared files."""
    from gptfl_hpc.pretrain.layout import PretrainPaths

    own, shared = PretrainPaths(run_dir), PretrainPaths(pretrain_run_dir)
    _link(own.model, shared.model)
    _link(own.metrics, shared.metrics)
    _link(own.done, shared.done)  # so the point's own status and `gptfl run` see the model as done


def _link(link: Path, target: Path) -> None:
    relative = os.path.relpath(target, link.parent)
    if link.is_symlink():
        if os.readlink(link) == relative:
            return
    elif link.exists():
        log.warning("%s is the run's own (not a link); it is kept and %s is not used", link, target)
        return
    atomic_symlink(link, relative)


# --------------------------------------------------------------------------- sweep.json


def write_record(sweep: Sweep) -> Path:
    """``SWEEP_DIR/sweep.json``: the points, their axis values and the shared runs they read.

    Paths are relative to the sweep directory, so a sweep moved as a whole still reads.
    """
    def relative(path: Path) -> str:
        return os.path.relpath(path, sweep.sweep_dir)

    record = {
        "format": SWEEP_FORMAT,
        "source": str(sweep.source),
        "axes": [{"name": a.name, "labels": list(a.labels), "values": list(a.values), "level": a.level}
                 for a in sweep.axes],
        "points": [{"name": p.name, "run_dir": relative(p.config.run_dir), "labels": p.labels, "values": p.values,
                    "hash": p.config.hash, "synth": p.synth, "pretrain": p.pretrain} for p in sweep.points],
        "shared": [{"name": run.name, "run_dir": relative(run.config.run_dir), "level": run.level,
                    "points": list(run.points), "describe": run.describe, "reads": run.reads}
                   for run in sweep.shared.values()],
    }
    path = sweep.sweep_dir / SWEEP_FILE
    atomic_write_json(path, record)
    return path


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def read_record(sweep_dir: Path) -> dict[str, Any]:
    path = Path(sweep_dir) / SWEEP_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(
            f"{sweep_dir} is not a sweep directory (no {SWEEP_FILE}); pass the sweep_dir of a grid"
        ) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable ({exc}); run `gptfl sweep` again to rewrite it") from None
    if record.get("format") != SWEEP_FORMAT:
        raise UserError(f"{path} is not a {SWEEP_FORMAT} record; run `gptfl sweep` again to rewrite it")
    return record


def record_run_dirs(sweep_dir: Path, entries: Iterable[dict[str, Any]]) -> list[Path]:
    """The run directories that ``sweep.json`` entries name, as paths from here."""
    return [Path(os.path.normpath(Path(sweep_dir).absolute() / entry["run_dir"])) for entry in entries]

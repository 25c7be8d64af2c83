"""A config file and overrides -> one validated ``Config``, or one ``UserError`` line.

Validation happens once, at load, before anything is written: the YAML is read, the overrides are
applied in order, the schema validates the result, and the first problem becomes one line naming
the key and the fix. ``run_dir`` is made absolute so jobs on other nodes resolve it the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Union

from pydantic import ValidationError

from gptfl_hpc.config.overrides import NotASection, apply_override
from gptfl_hpc.config.run_config import Config
from gptfl_hpc.config.validation_errors import coerced_boolean, describe_error, is_section, schema_type
from gptfl_hpc.config.yaml_format import read_yaml_mapping
from gptfl_hpc.errors import UserError


def load_config(path: Union[str, Path], overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config, apply ``key.sub=value`` overrides, validate; raise ``UserError``."""
    data = read_yaml_mapping(path, "config file")
    applied: list[str] = []
    for override in overrides:
        try:
            apply_override(data, override)
        except NotASection as exc:
            if not is_section(schema_type(Config, exc.prefix.split("."))):
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


def _covers(key: str, prefix: str) -> bool:
    """Whether setting ``key`` sets ``prefix`` (the same key or a section holding it)."""
    return prefix == key or prefix.startswith(key + ".")


def validate_config(data: dict[str, Any]) -> Config:
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe_error(exc.errors()[0], Config)) from None
    coerced = coerced_boolean(data, config)
    if coerced:
        raise UserError(f"config: key '{coerced[0]}': {coerced[1]}")
    return config.model_copy(update={"run_dir": config.run_dir.absolute()})

"""Validation errors as one line that names the key and the fix.

pydantic reports every problem with its location; the user gets the first one, worded for a YAML
file: an unknown key with the closest valid name (``seeed`` -> ``seed``, ``gpus`` ->
``gpus_per_node``) or the keys valid there, a missing key, a bad value with what was given. A YAML
``true``/``false`` where a number belongs is refused too, though pydantic reads it as 1/0.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Iterable, Optional, Union

from pydantic import BaseModel

#: pydantic's range errors: a true/false reaching one was read as 1/0.
RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def closest_name(name: str, valid: Iterable[str]) -> Optional[str]:
    """The valid name ``name`` most likely means: a close spelling (``seeed`` -> ``seed``), else one
    that starts with it or that it starts with (``gpus`` -> ``gpus_per_node``); None when none fits."""
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if close:
        return close[0]
    prefixed = [key for key in valid if key.startswith(name) or name.startswith(key)]
    return max(prefixed, key=lambda key: difflib.SequenceMatcher(None, name, key).ratio(), default=None)


def boolean_problem(value: bool) -> str:
    return f"{str(value).lower()} is a boolean, not a number; write the number"


def coerced_boolean(given: dict[str, Any], section: BaseModel) -> Optional[tuple[str, str]]:
    """``(key, problem)`` for the first YAML true/false that validation took as a number (pydantic
    reads ``seed: true`` as 1), else None; ``given`` is what ``section`` was validated from."""
    for name, raw in given.items():
        if name in type(section).model_fields:
            found = _coerced(raw, getattr(section, name), name)
            if found:
                return found
    return None


def _coerced(raw: Any, value: Any, key: str) -> Optional[tuple[str, str]]:
    if isinstance(raw, bool):
        if isinstance(value, bool):
            return None
        return key, boolean_problem(raw)
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


def describe_error(error: dict[str, Any], schema: type[BaseModel]) -> str:
    """Turn one pydantic error of validating ``schema`` into one line that names the key and the fix."""
    loc = [part for part in error["loc"] if isinstance(part, str)]
    key = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = _valid_keys(schema, loc[:-1])
        hint = closest_name(loc[-1], valid)
        fix = f"did you mean '{_join(loc[:-1], hint)}'?" if hint else f"valid keys here: {', '.join(valid)}"
        return f"config: unknown key '{key}'; {fix}"
    if kind == "missing":
        return f"config: missing key '{key}'; add it to the config"
    got = error.get("input")
    if isinstance(got, bool) and kind in RANGE_ERRORS:  # true/false read as 1/0, then out of range
        return f"config: key '{key}': {boolean_problem(got)}"
    message = error["msg"]
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
        # Section-level checks already name their keys ("labels.path ... does not exist").
        return f"config: {message}" if not key or message.startswith(key) else f"config: key '{key}': {message}"
    shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    return f"config: key '{key}': {message[0].lower() + message[1:]}{shown}; fix the value"


def _join(parents: list[str], leaf: str) -> str:
    return ".".join([*parents, leaf])


def _valid_keys(schema: type[BaseModel], loc: list[str]) -> list[str]:
    """Field names of the section at ``loc`` (a path of field names from the root)."""
    kind = schema_type(schema, loc)
    return sorted(kind.model_fields) if _is_model(kind) else []


def schema_type(schema: type[BaseModel], loc: list[str]) -> Any:
    """The type at ``loc`` in ``schema`` (a path of keys from the root, ``Optional`` unwrapped), or
    None where the schema has no such key."""
    kind: Any = schema
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


def is_section(kind: Any) -> bool:
    """Whether the schema holds keys there (a section, or a mapping such as ``launcher.stages``)."""
    return _is_model(kind) or typing.get_origin(kind) is dict

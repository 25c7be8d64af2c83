"""The ``key.sub=value`` override grammar of every command.

An override sets one dotted key in the config's nested mapping, making sections on the way; its
value is read as YAML (``3``, ``true``, ``[a, b]``) and kept as text when it is not YAML. A dotted
key that runs through a plain value is ``NotASection``, so the caller can blame whoever put it there.
"""

from __future__ import annotations

from typing import Any

import yaml

from gptfl_hpc.config.yaml_format import DuplicateKeyError, parse_yaml
from gptfl_hpc.errors import UserError


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

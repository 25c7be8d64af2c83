"""The YAML a config is read from and written as.

Reading uses PyYAML's safe loader without YAML 1.1's base-60 numbers, so an unquoted Slurm time
such as ``time: 1:30:00`` stays a string instead of becoming 5400, and refuses a key given twice in
one mapping (naming both lines) instead of silently keeping the last value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import yaml

from gptfl_hpc.errors import UserError

if TYPE_CHECKING:
    from gptfl_hpc.config.run_config import Config


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


def dump_yaml(config: "Config") -> str:
    return yaml.safe_dump(config.resolved(), sort_keys=False, allow_unicode=True)

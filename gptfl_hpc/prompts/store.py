"""``RUN/prompts.json``: the prompts stage's output and the synthesis stage's input.

Shape::

    {"labels": [...run labels in order...],
     "prompts": {"<label>": ["...", ...]},
     "sources": {"<label>": ["template:a photo of {label}", "llm", ...]},
     "provenance": {"modality": ..., "templates": [...], "llm": null | {"path", "kind", "revision", ...},
                    "seed": ..., "per_class": ...},
     "hash": "<prompts identity: see gptfl_hpc.prompts.stage.prompts_identity>"}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from gptfl_hpc.errors import UserError
from gptfl_hpc.layout import RunLayout

RUN_FIRST = "run `gptfl prompts CONFIG` first"
RUN_AGAIN = "run `gptfl prompts CONFIG` again"


@dataclass(frozen=True)
class PromptsFile:
    labels: list[str]
    prompts: dict[str, list[str]]
    sources: dict[str, list[str]]
    provenance: dict[str, Any]
    hash: str


def prompts_path(run_dir: Path) -> Path:
    return RunLayout(run_dir).prompts


def read_hash(run_dir: Path) -> Optional[str]:
    """The identity recorded in ``RUN/prompts.json``, or None when there is no readable one."""
    try:
        return json.loads(prompts_path(run_dir).read_text(encoding="utf-8")).get("hash")
    except (OSError, ValueError, AttributeError):
        return None


def read_prompts_file(run_dir: Path) -> PromptsFile:
    """``RUN/prompts.json``, validated; one ``UserError`` line when missing or malformed."""
    path = prompts_path(run_dir)
    if not path.is_file():
        raise UserError(f"{path} not found; {RUN_FIRST}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{path} is not valid JSON; delete it and {RUN_AGAIN}") from None
    problem = _shape_problem(doc)
    if problem:
        raise UserError(f"{path} {problem}; delete it and {RUN_AGAIN}")
    return PromptsFile(doc["labels"], doc["prompts"], doc.get("sources", {}), doc["provenance"], doc["hash"])


def load_prompts(run_dir: Path, labels: list[str]) -> dict[str, list[str]]:
    """The prompts of each of ``labels`` (in that order), from ``RUN/prompts.json`` made for them."""
    stored = read_prompts_file(run_dir)
    if stored.labels != list(labels):
        missing = [label for label in labels if label not in stored.labels]
        detail = f"lacks {missing[:3]}" if missing else "lists them in another order or with others"
        raise UserError(
            f"{prompts_path(run_dir)} was made for other labels ({detail}); "
            f"run `gptfl prompts CONFIG` with this run's config in a new run_dir"
        )
    return {label: list(stored.prompts[label]) for label in labels}


def _shape_problem(doc: Any) -> Optional[str]:
    if not isinstance(doc, dict):
        return "is not a JSON object"
    for key in ("labels", "prompts", "provenance", "hash"):
        if key not in doc:
            return f"has no '{key}'"
    labels, prompts = doc["labels"], doc["prompts"]
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels) or not labels:
        return "has no label list"
    if not isinstance(prompts, dict) or set(prompts) != set(labels):
        return "does not hold prompts for exactly its labels"
    for label in labels:
        items = prompts[label]
        if not isinstance(items, list) or not items or not all(isinstance(p, str) and p for p in items):
            return f"has no prompts for '{label}'"
    return None

"""Stage 1 of GPT-FL: label names -> ``RUN/prompts.json`` (paper §3.1).

Every class gets exactly ``prompts.per_class`` unique prompts (case-insensitively): the templates
first, in order, then LLM samples until the class is full. The server knows only the label set, so
every class gets the same number. The result is a pure function of the prompts identity (run seed,
label list, modality, the ``prompts`` section), so the same config writes byte-identical files.

``check`` finds every bad input that needs no model (labels, templates, modality, the LLM
directory, a templates-only ``per_class`` that cannot be reached) before anything is written; the
CLI runs it before submitting. ``run`` writes the run directory's identity only once the prompts
exist, so a failed attempt never pins a run directory to a config that does not work.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from tqdm import tqdm

from gptfl_hpc.config import Config
from gptfl_hpc.durable import atomic_write_json
from gptfl_hpc.errors import UserError
from gptfl_hpc.identity import sha256_json
from gptfl_hpc.locks import output_lock
from gptfl_hpc.prompts.config import TINY
from gptfl_hpc.prompts.store import prompts_path, read_hash
from gptfl_hpc.prompts.templates import MODALITIES, builtin_templates, dedupe_key, label_text, unique_rendered
from gptfl_hpc.rundir import check_run_dir, prepare_run_dir

log = logging.getLogger(__name__)

TEMPLATE_FIX = "add prompts.templates, or set prompts.llm to expand labels with a language model"


@dataclass(frozen=True)
class PromptsRequest:
    """Everything that decides the prompts, checked."""

    labels: list[str]
    modality: str
    templates: list[str]
    per_class: int
    identity: str
    needs_llm: bool  # the templates alone give fewer than per_class prompts


def prompts_identity(config: Config, labels: list[str], modality: str) -> str:
    """sha256 of what decides the prompts: run seed, the loaded label list, modality, ``prompts``.

    The loaded labels (not the ``labels`` section) enter, so an edited label file is noticed; the
    rest of ``synth`` does not, so changing the number of samples keeps the prompts.
    """
    identity = {"seed": config.seed, "labels": labels, "modality": modality, "prompts": config.science()["prompts"]}
    return sha256_json(identity)


def check(config: Config) -> PromptsRequest:
    """Validate what the prompts need without loading a model; one ``UserError`` line on bad input."""
    settings = config.prompts
    labels = config.labels.load()
    kind = config.synth.model.kind
    modality = config.synth.model.modality
    if modality not in MODALITIES:
        raise UserError(f"prompts: unknown modality '{modality}' of synth.model.kind {kind}; use one of {MODALITIES}")
    try:
        builtins = builtin_templates(modality, settings.domain) if settings.builtin else []
    except ValueError as exc:
        raise UserError(f"{exc} (synth.model.kind {kind}); remove prompts.domain or use prompts.templates") from None
    templates = builtins + [t for t in settings.templates if t not in builtins]
    counts = {label: len(unique_rendered(templates, label_text(label, settings.label_spaces))) for label in labels}
    short = min(labels, key=counts.__getitem__)  # the first class with the fewest template prompts
    available = counts[short]
    per_class = settings.per_class if settings.per_class is not None else available
    if settings.llm is None and per_class > available:
        raise UserError(
            f"prompts: class '{short}' has {available} unique template prompts but prompts.per_class is "
            f"{per_class}; lower prompts.per_class to {available}, {TEMPLATE_FIX}"
        )
    if per_class < 1:
        raise UserError(f"prompts: no template gives a prompt and prompts.llm is null; {TEMPLATE_FIX}")
    if settings.llm is not None and settings.llm.path != TINY:
        from gptfl_hpc.prompts.llm import check_model_dir

        check_model_dir(Path(settings.llm.path).expanduser(), settings.llm.kind)
    identity = prompts_identity(config, labels, modality)
    path = prompts_path(config.run_dir)
    if path.exists() and read_hash(config.run_dir) != identity:
        raise UserError(
            f"{path} was made for other labels or prompt settings; "
            "use a new run_dir, or delete that file and the synthetic data made from it"
        )
    return PromptsRequest(labels, modality, templates, per_class, identity, needs_llm=per_class > available)


def run(config: Config) -> dict[str, Any]:
    """Write ``RUN/prompts.json``; return at once when it exists for the same prompts identity."""
    check_run_dir(config)
    request = check(config)
    with output_lock(config.run_dir, "prompts"):
        return _write_prompts(config, request)


def _write_prompts(config: Config, request: PromptsRequest) -> dict[str, Any]:
    path = prompts_path(config.run_dir)
    if path.is_file():
        log.info("prompts: %s is already made for this config", path)
        return _summary(path, json.loads(path.read_text(encoding="utf-8")), skipped=True)

    settings = config.prompts
    with tempfile.TemporaryDirectory(prefix="gptfl-prompts-") as scratch:
        sampler, llm_provenance = None, None
        if request.needs_llm:
            from gptfl_hpc.prompts.llm import load_lm

            lm, llm_provenance = load_lm(settings.llm, request.modality, Path(scratch) / f"tiny-{settings.llm.kind}")
            sampler = lm.sample
        prompts, sources = {}, {}
        for index, label in enumerate(tqdm(request.labels, desc="prompts", unit="class", disable=sampler is None)):
            prompts[label], sources[label] = collect_prompts(config, request, index, label, sampler)

    doc = {
        "labels": request.labels,
        "prompts": prompts,
        "sources": sources,
        "provenance": {
            "modality": request.modality,
            "templates": request.templates,
            "llm": llm_provenance,
            "seed": config.seed,
            "per_class": request.per_class,
        },
        "hash": request.identity,
    }
    prepare_run_dir(config)
    atomic_write_json(path, doc)
    log.info("prompts: wrote %d prompts for %d classes to %s", request.per_class * len(request.labels), len(request.labels), path)
    return _summary(path, doc, skipped=False)


def collect_prompts(
    config: Config, request: PromptsRequest, index: int, label: str, sampler: Optional[Callable[[str, int], list[str]]]
) -> tuple[list[str], list[str]]:
    """Exactly ``per_class`` unique prompts of one class and where each came from."""
    settings = config.prompts
    text = label_text(label, settings.label_spaces)
    prompts, sources, seen = [], [], set()
    for prompt, template in unique_rendered(request.templates, text)[: request.per_class]:
        prompts.append(prompt)
        sources.append(f"template:{template}")
        seen.add(dedupe_key(prompt))
    if len(prompts) == request.per_class or sampler is None:
        return prompts, sources
    llm = settings.llm
    mentions_label = re.compile(r"(?<!\w)" + re.escape(text), re.IGNORECASE)
    for attempt in range(settings.max_attempts):
        for prompt in sampler(text, sample_seed(config.seed, index, attempt)):
            if dedupe_key(prompt) in seen or (llm.require_label and not mentions_label.search(prompt)):
                continue
            prompts.append(prompt)
            sources.append("llm")
            seen.add(dedupe_key(prompt))
            if len(prompts) == request.per_class:
                return prompts, sources
    fixes = "lower prompts.per_class, add prompts.templates, raise prompts.max_attempts or prompts.llm.temperature"
    if llm.require_label:
        fixes += ", or set prompts.llm.require_label: false"
    raise UserError(
        f"prompts: class '{label}' has {len(prompts)} unique prompts of the {request.per_class} asked "
        f"(prompts.per_class) after {settings.max_attempts} LLM attempts of {llm.batch_size}; {fixes}"
    )


def sample_seed(run_seed: int, class_index: int, attempt: int) -> int:
    """The torch seed of one LLM attempt, from (run seed, class, attempt) alone."""
    return int(np.random.SeedSequence([run_seed, class_index, attempt]).generate_state(1, np.uint64)[0])


def _summary(path: Path, doc: dict[str, Any], skipped: bool) -> dict[str, Any]:
    sources = [source for per_label in doc.get("sources", {}).values() for source in per_label]
    return {
        "prompts": str(path),
        "classes": len(doc["labels"]),
        "per_class": doc["provenance"]["per_class"],
        "from_templates": sum(source.startswith("template:") for source in sources),
        "from_llm": sources.count("llm"),
        "hash": doc["hash"],
        "skipped": skipped,
    }


__all__ = ["check", "collect_prompts", "prompts_identity", "run", "sample_seed"]

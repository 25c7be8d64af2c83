"""Which synthetic samples pretraining keeps by their score (``pretrain.min_score``, ``pretrain.keep_fraction``).

The rules act per class, so a filtered dataset stays as balanced as the plan made it:

* ``keep_fraction f`` keeps exactly ``ceil(f x n_c)`` samples of each class of ``n_c`` samples --
  ceil, so any share keeps at least one sample per class and ``1`` keeps everything -- the
  highest-scoring ones, ties going to the earlier sample (lower dataset index, i.e. shard order and
  plan index within a run);
* ``min_score s`` keeps every sample scoring at least ``s``; a class it would empty is an error
  naming the class and its best score.

Kept samples stay in dataset order. The selection is a function of the shards' stored scores and
the config alone, so every rank, and every resume, computes the same one.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from gptfl_hpc.errors import UserError
from gptfl_hpc.pretrain.config import PretrainConfig
from gptfl_hpc.shards.reader import ShardDataset


@dataclass(frozen=True)
class ScoreSelection:
    """The kept dataset indices and what the rule did to each class."""

    rule: str  # "keep_fraction 0.5" or "min_score 0.2"
    kept: np.ndarray  # ascending dataset indices
    per_class: tuple[tuple[str, int, int], ...]  # (label, kept, of)

    @property
    def total(self) -> int:
        return sum(of for _, _, of in self.per_class)

    def describe(self) -> str:
        classes = ", ".join(f"{label} {kept}/{of}" for label, kept, of in self.per_class)
        return f"pretrain.{self.rule} keeps {len(self.kept)} of {self.total} samples ({classes})"

    def summary(self) -> dict[str, Any]:
        """What ``inputs.json`` records: the rule, the counts and a digest of the kept indices."""
        return {
            "rule": self.rule,
            "kept": int(len(self.kept)),
            "of": self.total,
            "per_class": {label: {"kept": kept, "of": of} for label, kept, of in self.per_class},
            "kept_sha256": hashlib.sha256(self.kept.astype("<i8").tobytes()).hexdigest()[:16],
        }


def rule_of(settings: PretrainConfig) -> Optional[str]:
    """The configured rule's name and value, or None when pretraining keeps every sample."""
    if settings.keep_fraction is not None:
        return f"keep_fraction {settings.keep_fraction:g}"
    if settings.min_score is not None:
        return f"min_score {settings.min_score:g}"
    return None


def select_by_score(dataset: ShardDataset, labels: Sequence[str], settings: PretrainConfig) -> Optional[ScoreSelection]:
    """The samples ``settings`` keep of ``dataset``, or None when no rule is set."""
    rule = rule_of(settings)
    if rule is None:
        return None
    unscored = dataset.unscored_shard()
    if unscored is not None:
        key = rule.split()[0]
        raise UserError(
            f"pretrain.{key} needs a score per sample, but shard {unscored} holds none; make the shards with "
            f"synth.score set (e.g. synth.score.kind=clip synth.score.model=DIR), or set pretrain.{key} to null"
        )
    scores, targets = dataset.read_scores(), np.asarray(dataset.targets)
    kept, per_class = [], []
    for label_index, label in enumerate(labels):
        members = np.flatnonzero(targets == label_index)
        if settings.keep_fraction is not None:
            count = math.ceil(settings.keep_fraction * len(members))
            # Highest score first; among equal scores the lower index first (lexsort: last key sorts first).
            order = np.lexsort((members, -scores[members].astype(np.float64)))
            chosen = members[order[:count]]
        else:
            chosen = members[scores[members] >= settings.min_score]
            if len(members) and not len(chosen):
                raise UserError(
                    f"pretrain.min_score {settings.min_score:g} leaves class '{label}' empty: its best score is "
                    f"{float(scores[members].max()):.4f}; lower pretrain.min_score, or use pretrain.keep_fraction"
                )
        kept.append(chosen)
        per_class.append((label, int(len(chosen)), int(len(members))))
    return ScoreSelection(rule, np.sort(np.concatenate(kept)).astype(np.int64), tuple(per_class))

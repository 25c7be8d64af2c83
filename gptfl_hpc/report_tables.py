"""Paper-style result tables: one row per setting x method, mean ± std over seeds.

Pure functions over :class:`gptfl_hpc.report.Curve` objects (what ``metrics.jsonl`` holds), so the
numbers can be checked against the metrics by hand. The standard deviation is the sample one
(n - 1); a row of one run shows its value alone. Accuracies and macro-F1 are shown in percent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from gptfl_hpc.report import Curve

SYNTHETIC_ONLY = "synthetic data only"


@dataclass(frozen=True)
class Stat:
    """One quantity over the runs (seeds) of a row."""

    values: tuple[float, ...] = ()

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> Optional[float]:
        return math.fsum(self.values) / self.n if self.values else None

    @property
    def std(self) -> Optional[float]:
        """Sample standard deviation; None for fewer than two runs."""
        if self.n < 2:
            return None
        mean = self.mean
        return math.sqrt(math.fsum((v - mean) ** 2 for v in self.values) / (self.n - 1))


@dataclass(frozen=True)
class Row:
    setting: tuple[tuple[str, str], ...]  # (axis, label) of every axis but the seed
    method: str
    runs: int  # runs with results
    planned: int  # runs the grid has for this row
    final: Stat = field(default_factory=Stat)
    best: Stat = field(default_factory=Stat)
    best_f1: Stat = field(default_factory=Stat)
    target: Optional[float] = None
    rounds_to_target: Stat = field(default_factory=Stat)  # over the runs that reached the target
    params_to_target: Stat = field(default_factory=Stat)
    rounds_run: int = 0  # the most rounds any of the runs has

    @property
    def reached(self) -> int:
        return self.rounds_to_target.n


def federation_row(setting, method: str, curves: Sequence[Curve], planned: int, target: Optional[float]) -> Row:
    """Final and best accuracy, best macro-F1 and the communication to ``target`` of one method's runs."""
    reached = [hit for curve in curves if target is not None and (hit := curve.first_reaching(target))]
    return Row(
        setting=tuple(setting),
        method=method,
        runs=len(curves),
        planned=planned,
        final=Stat(tuple(curve.final for curve in curves)),
        best=Stat(tuple(max(curve.accuracy) for curve in curves)),
        best_f1=Stat(tuple(max(curve.macro_f1) for curve in curves)),
        target=target,
        rounds_to_target=Stat(tuple(float(round_) for round_, _ in reached)),
        params_to_target=Stat(tuple(float(params) for _, params in reached)),
        rounds_run=max((curve.last_round for curve in curves), default=0),
    )


def synthetic_row(setting, accuracies: Sequence[float], planned: int) -> Row:
    """The pretrained model on the real test set, before any federated round."""
    return Row(tuple(setting), SYNTHETIC_ONLY, len(accuracies), planned, final=Stat(tuple(accuracies)))


# --------------------------------------------------------------------------- rendering


def columns(axes: Sequence[str], with_f1: bool) -> list[str]:
    shown = [*axes, "method", "seeds", "final accuracy (%)", "best accuracy (%)"]
    if with_f1:
        shown.append("best macro-F1 (%)")
    return shown + ["target (%)", "rounds to target", "parameters to target"]


def cells(row: Row, with_f1: bool) -> list[str]:
    federated = row.method != SYNTHETIC_ONLY
    shown = [label for _, label in row.setting]
    shown += [row.method, str(row.runs) if row.runs == row.planned else f"{row.runs}/{row.planned}"]
    shown += [_percent(row.final), _percent(row.best)]
    if with_f1:
        shown.append(_percent(row.best_f1))
    if not federated or row.target is None:
        return shown + ["", "", ""]
    return shown + [f"{100 * row.target:.2f}", _to_target(row, row.rounds_to_target, 1),
                    _to_target(row, row.params_to_target, 0)]


def _percent(stat: Stat) -> str:
    if not stat.n:
        return ""
    if stat.std is None:
        return f"{100 * stat.mean:.2f}"
    return f"{100 * stat.mean:.2f} ± {100 * stat.std:.2f}"


def _count(stat: Stat, decimals: int) -> str:
    if stat.std is None:
        return f"{stat.mean:,.{decimals}f}"
    return f"{stat.mean:,.{decimals}f} ± {stat.std:,.{decimals}f}"


def _to_target(row: Row, stat: Stat, decimals: int) -> str:
    if not row.reached:
        return f"not reached in {row.rounds_run} rounds"
    shown = _count(stat, decimals)
    return shown if row.reached == row.runs else f"{shown} ({row.reached}/{row.runs} reached)"


def markdown_table(rows: Sequence[Row], axes: Sequence[str], with_f1: bool) -> str:
    header = columns(axes, with_f1)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells(row, with_f1)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def _latex(text: str) -> str:
    escaped = "".join(_LATEX_SPECIAL.get(char, char) for char in text)
    return escaped.replace(" ± ", r" $\pm$ ")


def latex_table(rows: Sequence[Row], axes: Sequence[str], with_f1: bool) -> str:
    """A booktabs ``tabular`` (``\\usepackage{booktabs}``) with the Markdown table's cells."""
    header = columns(axes, with_f1)
    lines = [r"\begin{tabular}{" + "l" * (len(axes) + 1) + "r" * (len(header) - len(axes) - 1) + "}", r"\toprule",
             " & ".join(_latex(name) for name in header) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex(cell) for cell in cells(row, with_f1)) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def rows_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The rows' numbers, unrounded, with every run's value."""
    def stat(value: Stat) -> dict[str, Any]:
        return {"mean": value.mean, "std": value.std, "values": list(value.values)}

    return [
        {
            "setting": dict(row.setting),
            "method": row.method,
            "runs": row.runs,
            "planned": row.planned,
            "final_accuracy": stat(row.final),
            "best_accuracy": stat(row.best),
            "best_macro_f1": stat(row.best_f1),
            "target_accuracy": row.target,
            "reached_target": row.reached,
            "rounds_to_target": stat(row.rounds_to_target),
            "params_to_target": stat(row.params_to_target),
        }
        for row in rows
    ]

"""``SWEEP_DIR/report/``: a sweep's combined report (``gptfl report SWEEP_DIR``).

Reads ``sweep.json`` and every point's ``federate/`` and ``federate-scratch/metrics.jsonl`` and
writes the paper's tables -- one row per setting (the values of every axis but ``seed``) and
method, mean ± std over the seeds (``report_tables``) -- as ``report.md``, ``table.tex`` and
``table.json``, with plots: final accuracy against the client sampling rate and against the
synthetic volume (when the grid has those axes), and test accuracy and gradient diversity per
round, averaged over the seeds (diversity optionally as a trailing mean over rounds).

A setting's target accuracy is ``federate.target_accuracy`` when set, else 90% of the lowest best
accuracy among the setting's runs (both methods, every seed) -- or of the highest when that is at
or below chance -- as in the single-run report.
Points without metrics yet are left out and counted, so a report can be drawn while a sweep runs.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from gptfl_hpc.config import Config
from gptfl_hpc.durable import atomic_write_json, atomic_write_text
from gptfl_hpc.errors import UserError
from gptfl_hpc.report import (
    RUNS,
    Curve,
    client_count,
    new_figure,
    read_curve,
    read_jsonl,
    save_figure,
    smoothed,
    synthetic_only,
    target_accuracy,
)
from gptfl_hpc.report_tables import (
    SYNTHETIC_ONLY,
    Row,
    Stat,
    federation_row,
    latex_table,
    markdown_table,
    rows_json,
    synthetic_row,
)
from gptfl_hpc.layout import RunLayout
from gptfl_hpc.rundir import load_run
from gptfl_hpc.sweep import read_record, record_run_dirs, short_axis_names

log = logging.getLogger(__name__)

SEED_AXIS = "seed"
SAMPLING_RATE_AXIS = "federate.clients_per_round"
VOLUME_AXES = {"synth.multiplier": "synthetic data (x the real training set)", "synth.count": "synthetic samples"}
Setting = tuple[tuple[str, str], ...]


@dataclass
class PointResult:
    """What one point of the sweep has on disk."""

    name: str
    run_dir: Path
    labels: dict[str, str]
    values: dict[str, Any]
    config: Optional[Config]  # None until the sweep has claimed the point's run directory
    curves: dict[str, Curve]  # method -> its federation
    synthetic: Optional[float]  # the pretrained model's test accuracy, before any round

    def finals(self) -> list[tuple[str, float]]:
        """(method, final test accuracy), the synthetic-only model included."""
        shown = [(SYNTHETIC_ONLY, self.synthetic)] if self.synthetic is not None else []
        return shown + [(method, curve.final) for method, curve in self.curves.items()]


def read_point(sweep_dir: Path, entry: dict[str, Any]) -> PointResult:
    run_dir = record_run_dirs(sweep_dir, [entry])[0]
    layout = RunLayout(run_dir)
    config = load_run(run_dir) if layout.config_file.is_file() else None
    curves = {method: curve for method, init in RUNS
              if (curve := read_curve(method, layout.federation(init) / "metrics.jsonl"))}
    synthetic = None
    if "GPT-FL" in curves and config is not None and config.federate.init == "pretrain":
        synthetic = synthetic_only([curves["GPT-FL"]], read_jsonl(layout.pretrain_metrics))
    return PointResult(entry["name"], run_dir, entry["labels"], entry["values"], config, curves, synthetic)


def make_sweep_report(sweep_dir: Path, smooth: int = 1) -> dict[str, Any]:
    """Write ``SWEEP_DIR/report/`` (report.md, table.tex, table.json, plots); returns what was written."""
    sweep_dir = Path(sweep_dir).absolute()
    record = read_record(sweep_dir)
    results = []
    for number, entry in enumerate(record["points"], 1):
        results.append(read_point(sweep_dir, entry))
        log.info("report: read point %d/%d %s", number, len(record["points"]), entry["name"])
    finished = [result for result in results if result.curves]
    if not finished:
        raise UserError(f"no point of {sweep_dir} has federate metrics yet; run `gptfl sweep` first")
    axes = [axis["name"] for axis in record["axes"] if axis["name"] != SEED_AXIS]
    rows = table_rows(axes, results)
    with_f1 = any(r.config is not None and r.config.synth.model.modality != "image" for r in finished)
    headers = short_axis_names(axes)

    out = RunLayout(sweep_dir).report
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "table.tex", latex_table(rows, headers, with_f1))
    atomic_write_json(out / "table.json", {"rows": rows_json(rows), "axes": axes})
    plots = [
        _plot_against_axis(out / "accuracy_vs_sampling_rate.png", finished, axes, SAMPLING_RATE_AXIS,
                           *_sampling_rate(finished), "client sampling rate"),
        *(_plot_against_axis(out / "accuracy_vs_synthetic_volume.png", finished, axes, key,
                             lambda r, key=key: float(r.values[key]), label, "synthetic data volume")
          for key, label in VOLUME_AXES.items()),
        _plot_per_round(out / "accuracy_per_round.png", finished, axes, "accuracy", 1),
        _plot_per_round(out / "gradient_diversity.png", finished, axes, "diversity", smooth),
    ]
    plots = [plot for plot in plots if plot is not None]
    text = _markdown(record, sweep_dir, results, rows, headers, with_f1, plots, smooth)
    atomic_write_text(RunLayout(sweep_dir).report_file, text)
    return {"report": str(RunLayout(sweep_dir).report_file), "latex": str(out / "table.tex"), "table": str(out / "table.json"),
            "plots": [str(plot) for plot in plots], "points": len(results), "points_with_results": len(finished)}


def table_rows(axes: list[str], results: list[PointResult]) -> list[Row]:
    """Per setting, in grid order: the synthetic-only model, GPT-FL and FL from scratch over the seeds."""
    groups: dict[Setting, list[PointResult]] = {}
    for result in results:
        groups.setdefault(setting_of(result, axes), []).append(result)
    rows = []
    for setting, members in groups.items():
        configs = [m.config for m in members if m.config is not None]
        curves = [curve for m in members for curve in m.curves.values()]
        if not curves:
            continue
        target = target_accuracy(configs[0], curves, len(configs[0].labels.load()))
        synthetic = [m.synthetic for m in members if m.synthetic is not None]
        if synthetic:
            rows.append(synthetic_row(setting, synthetic, len(members)))
        for method, _ in RUNS:
            runs = [m.curves[method] for m in members if method in m.curves]
            if runs:
                rows.append(federation_row(setting, method, runs, len(members), target))
    return rows


def setting_of(result: PointResult, axes: list[str]) -> Setting:
    return tuple((axis, result.labels[axis]) for axis in axes)


# --------------------------------------------------------------------------- report.md


def _markdown(record, sweep_dir: Path, results, rows, headers, with_f1: bool, plots: list[Path], smooth: int) -> str:
    axes = "; ".join(f"`{axis['name']}`: {', '.join(axis['labels'])}" for axis in record["axes"])
    finished = sum(1 for result in results if result.curves)
    lines = [
        f"# Sweep report: {sweep_dir.name}",
        "",
        f"Grid `{record['source']}`: {len(results)} points ({finished} with results); axes {axes}.",
        "",
        "Mean ± sample standard deviation (n - 1) over the seeds; accuracies in percent. The target is "
        "`federate.target_accuracy` when set, else 90% of the lowest best accuracy among the setting's runs "
        "(of the highest when the lowest is at or below chance); "
        "rounds and parameters to the target average the runs that reached it. "
        "Also as [table.tex](table.tex) (booktabs) and [table.json](table.json) (every run's value).",
        "",
        markdown_table(rows, headers, with_f1),
        "## Points",
        "",
        "| point | " + " | ".join(f"{method} final accuracy" for method, _ in RUNS) + " | report |",
        "|---|" + "---|" * len(RUNS) + "---|",
    ]
    for result in results:
        finals = [f"{100 * result.curves[m].final:.2f}" if m in result.curves else "" for m, _ in RUNS]
        point_report = RunLayout(result.run_dir).report_file
        link = f"[report]({os.path.relpath(point_report, RunLayout(sweep_dir).report)})" if point_report.is_file() else ""
        lines.append(f"| {result.name} | " + " | ".join(finals) + f" | {link} |")
    lines.append("")
    if smooth > 1:
        lines += [f"Gradient diversity is drawn as a trailing mean over {smooth} rounds.", ""]
    lines += [f"![{plot.stem}]({plot.name})" for plot in plots]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plots


def _sampling_rate(results: list[PointResult]) -> tuple[Callable[[PointResult], Optional[float]], str]:
    """Clients per round over clients (configured, or as the federations counted them); clients per
    round alone where a point's client count is unknown."""
    def clients(result: PointResult) -> Optional[int]:
        if result.config is None:
            return None
        return client_count(result.config, [RunLayout(result.run_dir).federation(init) for _, init in RUNS])

    known = all(clients(r) for r in results)

    def x_of(result: PointResult) -> Optional[float]:
        if result.config is None:
            return None
        per_round = result.config.federate.clients_per_round
        return per_round / clients(result) if known else float(per_round)

    return x_of, ("client sampling rate (clients per round / clients)" if known else "clients per round")


def _line_label(method: str, others: Setting) -> str:
    shown = ", ".join(f"{axis.rsplit('.', 1)[-1]}={label}" for axis, label in others)
    return f"{method}, {shown}" if shown else method


def _plot_against_axis(path: Path, results: list[PointResult], axes: list[str], axis: str,
                       x_of: Callable[[PointResult], Optional[float]], xlabel: str, what: str) -> Optional[Path]:
    """Final accuracy against one axis's values, one line per method and setting of the other axes,
    mean ± std over the seeds as error bars."""
    if axis not in axes:
        return None
    others = [a for a in axes if a != axis]
    lines: dict[tuple[str, Setting], dict[float, list[float]]] = {}
    for result in results:
        x = x_of(result)
        if x is None:
            continue
        for method, final in result.finals():
            lines.setdefault((method, setting_of(result, others)), {}).setdefault(x, []).append(final)
    plt, figure, plot = new_figure()
    for (method, setting), by_x in lines.items():
        xs = sorted(by_x)
        stats = [Stat(tuple(by_x[x])) for x in xs]
        plot.errorbar(xs, [s.mean for s in stats], yerr=[s.std or 0.0 for s in stats], marker="o", capsize=3,
                      label=_line_label(method, setting))
    plot.set_xlabel(xlabel)
    plot.set_ylabel("final test accuracy (mean ± std over seeds)")
    plot.set_title(f"final test accuracy vs {what}")
    plot.grid(alpha=0.3)
    plot.legend(fontsize="small")
    return save_figure(plt, figure, path)


def mean_series(series: list[tuple[list[int], list[float]]]) -> tuple[list[int], list[float]]:
    """The mean over runs at the rounds every run has."""
    common = sorted(set.intersection(*(set(rounds) for rounds, _ in series)))
    by_round = [dict(zip(rounds, values)) for rounds, values in series]
    return common, [math.fsum(run[r] for run in by_round) / len(by_round) for r in common]


def _plot_per_round(path: Path, results: list[PointResult], axes: list[str], what: str, smooth: int) -> Optional[Path]:
    lines: dict[tuple[str, Setting], list[tuple[list[int], list[float]]]] = {}
    for result in results:
        for method, curve in result.curves.items():
            rounds, values = (curve.rounds, curve.accuracy) if what == "accuracy" else (curve.diversity_rounds,
                                                                                       curve.diversity)
            if rounds:
                lines.setdefault((method, setting_of(result, axes)), []).append((rounds, values))
    if not lines:
        return None
    plt, figure, plot = new_figure()
    for (method, setting), series in lines.items():
        rounds, mean = mean_series(series)
        plot.plot(rounds, smoothed(mean, smooth), marker="." if len(rounds) < 50 else None,
                  label=_line_label(method, setting))
    plot.set_xlabel("round" if smooth == 1 else f"round (trailing mean over {smooth} rounds)")
    if what == "accuracy":
        plot.set_ylabel("test accuracy")
        plot.set_title("test accuracy per round (mean over seeds)")
    else:
        plot.set_ylabel("gradient diversity  Σ‖Δi‖² / ‖ΣΔi‖²")
        plot.set_title("gradient diversity of the sampled clients (mean over seeds)")
    plot.grid(alpha=0.3)
    plot.legend(fontsize="small")
    return save_figure(plt, figure, path)

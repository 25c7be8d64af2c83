"""``RUN/report/``: GPT-FL against FL from scratch, as a Markdown table and PNG plots.

Reads what the stages wrote -- ``federate/metrics.jsonl`` (GPT-FL), ``federate-scratch/
metrics.jsonl`` (the baseline), ``pretrain/metrics.jsonl`` and ``synth/manifest.json`` -- and
draws the paper's comparisons in kind: accuracy per round and per parameter communicated
(Figures 2-4), gradient diversity per round (Figure 5), communication to a target accuracy
(Table 4) and the synthetic-only model's accuracy (Table 2's "synthetic data only" row). Where a
federation scored its clients (``federate.client_eval``), ``summary.json``'s per-client list gives a
table of the mean, 10th-percentile and worst client accuracy and a plot of their distribution.

The target accuracy is ``federate.target_accuracy`` when set, else 90% of the best accuracy that
both methods reach, so both rows have a number whenever both runs learned. An automatic target is
never at or below chance (one over the number of classes), where an untrained model "reaches" it
at round 0: when the lower best is that low, the target is 90% of the higher best, and the method
that never gets there is reported as "not reached in N rounds". For image generators, a grid of
the first synthetic samples of each class shows what the generator drew.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from gptfl_hpc.config import Config
from gptfl_hpc.durable import atomic_path, atomic_write_text
from gptfl_hpc.errors import UserError
from gptfl_hpc.locks import output_lock
from gptfl_hpc.stage import CheckContext, Stage, file_state
from gptfl_hpc.tracking import open_tracker

#: (method, federate.init): the two federations a report compares.
RUNS = (("GPT-FL", "pretrain"), ("FL from scratch", "scratch"))


@dataclass
class Curve:
    """The evaluated rounds of one federation."""

    name: str
    rounds: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    macro_f1: list[float] = field(default_factory=list)
    params: list[int] = field(default_factory=list)  # cumulative parameters communicated
    diversity_rounds: list[int] = field(default_factory=list)
    diversity: list[float] = field(default_factory=list)

    @property
    def final(self) -> Optional[float]:
        return self.accuracy[-1] if self.accuracy else None

    @property
    def last_round(self) -> int:
        return self.rounds[-1] if self.rounds else 0

    def first_reaching(self, target: float) -> Optional[tuple[int, int]]:
        """``(round, parameters communicated)`` when accuracy first reaches ``target``."""
        for round_, accuracy, params in zip(self.rounds, self.accuracy, self.params):
            if accuracy >= target:
                return round_, params
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_curve(name: str, path: Path) -> Optional[Curve]:
    rows = read_jsonl(path)
    if not rows:
        return None
    curve = Curve(name)
    for row in rows:
        if "test_accuracy" in row:
            curve.rounds.append(int(row["round"]))
            curve.accuracy.append(float(row["test_accuracy"]))
            curve.macro_f1.append(float(row.get("test_macro_f1", float("nan"))))
            curve.params.append(int(row.get("params_cumulative", 0)))
        diversity = next((value for key, value in row.items() if "diversity" in key), None)
        if diversity is not None:
            curve.diversity_rounds.append(int(row["round"]))
            curve.diversity.append(float(diversity))
    return curve


def target_accuracy(config: Config, curves: list[Curve], num_classes: int) -> Optional[float]:
    """``federate.target_accuracy``, else 90% of the lower best accuracy of ``curves`` -- or of the
    higher one when that is at or below chance (``1 / num_classes``); None when both are."""
    if config.federate.target_accuracy is not None:
        return config.federate.target_accuracy
    bests = sorted(max(c.accuracy) for c in curves if c.accuracy)
    chance = 1.0 / num_classes if num_classes else 0.0
    above_chance = [target for best in bests if (target := round(0.9 * best, 4)) > chance]
    return above_chance[0] if above_chance else None


def client_count(config: Config, curves_dirs: list[Path]) -> Optional[int]:
    """``data.partition.num_clients``, else the count a federation recorded in its summary (a
    speaker partition makes one client per speaker)."""
    if config.data.partition.num_clients is not None:
        return config.data.partition.num_clients
    for folder in curves_dirs:
        summary = folder / "summary.json"
        if summary.is_file():
            clients = json.loads(summary.read_text()).get("clients")
            if clients is not None:
                return int(clients)
    return None


def make_report(config: Config, smooth: int = 1) -> dict[str, Any]:
    """Write ``RUN/report/report.md`` and its plots; returns what was written. ``smooth`` > 1 draws
    gradient diversity as a trailing mean over that many rounds."""
    with output_lock(config.run_dir, "report"):
        return _write_report(config, smooth)


def _write_report(config: Config, smooth: int) -> dict[str, Any]:
    run, layout = config.run_dir, config.layout
    curves = [c for name, init in RUNS if (c := read_curve(name, layout.federation(init) / "metrics.jsonl"))]
    if not curves:
        raise UserError(f"{run} has no federate metrics yet; run `gptfl run` or `gptfl federate` first")
    out = layout.report
    out.mkdir(parents=True, exist_ok=True)
    labels = config.labels.load()
    target = target_accuracy(config, curves, len(labels))
    pretrain = read_jsonl(layout.pretrain_metrics)
    plots = [
        _plot_samples(out / "synthetic_samples.png", layout.synth, labels),
        _plot_scores(out / "synthetic_scores.png", layout.synth),
        _plot_curves(out / "accuracy_per_round.png", curves, "round", "test accuracy per round"),
        _plot_curves(out / "accuracy_per_communication.png", curves, "params",
                     "test accuracy per parameters communicated"),
        _plot_diversity(out / "gradient_diversity.png", curves, smooth),
    ]
    if target is not None:
        plots.append(_plot_to_target(out / "communication_to_target.png", curves, target))
    if any("loss" in row for row in pretrain):
        plots.append(_plot_pretrain(out / "pretrain.png", pretrain))
    client_accuracies = [a for name, init in RUNS
                         if (a := read_client_accuracies(name, layout.federation(init) / "summary.json"))]
    if client_accuracies:
        plots.append(_plot_client_accuracy(out / "client_accuracy.png", client_accuracies))
    plots = [p for p in plots if p is not None]
    clients = client_count(config, [layout.federation(init) for _, init in RUNS])
    text = _markdown(config, curves, target, pretrain, plots, clients, client_accuracies)
    atomic_write_text(layout.report_file, text)
    with open_tracker(config, "report") as tracker:
        for path in [layout.report_file, *plots]:
            tracker.log_artifact(path)
    return {"report": str(layout.report_file), "plots": [str(p) for p in plots], "target_accuracy": target}


# ----------------------------------------------------------------------------- table


def synthetic_only(curves: list[Curve], pretrain: list[dict[str, Any]]) -> Optional[float]:
    """The pretrained model on the real test set, before any federated round."""
    gptfl = next((c for c in curves if c.name == "GPT-FL"), None)
    if gptfl is not None and gptfl.rounds and gptfl.rounds[0] == 0:
        return gptfl.accuracy[0]
    evaluated = [row for row in pretrain if "test_accuracy" in row]
    return float(evaluated[-1]["test_accuracy"]) if evaluated else None


def _markdown(config: Config, curves: list[Curve], target: Optional[float], pretrain, plots: list[Path],
              clients: Optional[int], client_accuracies: Optional[list[ClientAccuracies]] = None) -> str:
    manifest_path = config.layout.synth_manifest
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    lines = [
        f"# GPT-FL report: {config.run_dir.name}",
        "",
        f"Dataset `{config.data.dataset}` ({len(config.labels.load())} labels), model `{config.model.name}`, "
        f"{clients if clients is not None else 'an unknown number of'} clients ({config.data.partition.kind}"
        + (f", alpha {config.data.partition.alpha}" if config.data.partition.kind == "dirichlet" else "")
        + f"), {config.federate.clients_per_round} per round, algorithm `{config.federate.algorithm}`.",
    ]
    if manifest:
        lines.append(f"Synthetic data: {manifest.get('samples', 0)} samples from `{manifest.get('generator')}` "
                     f"in {manifest.get('complete_shards', 0)} shards.")
    lines += ["", "| method | final accuracy | final macro-F1 | best accuracy | rounds | parameters communicated |"
              + (f" rounds to {target:.1%} | parameters to {target:.1%} |" if target is not None else ""),
              "|---|---|---|---|---|---|" + ("---|---|" if target is not None else "")]
    synthetic = synthetic_only(curves, pretrain)
    if synthetic is not None:
        lines.append(f"| synthetic data only (pretrained, no FL) | {synthetic:.4f} | | | 0 | 0 |"
                     + (" | |" if target is not None else ""))
    for curve in curves:
        row = (f"| {curve.name} | {curve.final:.4f} | {curve.macro_f1[-1]:.4f} | {max(curve.accuracy):.4f} | "
               f"{curve.rounds[-1]} | {curve.params[-1]:,} |")
        if target is not None:
            reached = curve.first_reaching(target)
            missed = f"not reached in {curve.last_round} rounds"
            row += f" {reached[0]} | {reached[1]:,} |" if reached else f" {missed} | {missed} |"
        lines.append(row)
    lines.append("")
    comparison = communication_sentence(curves, target)
    if comparison:
        lines += [comparison, ""]
    if client_accuracies:
        lines += client_table(client_accuracies) + [""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def communication_sentence(curves: list[Curve], target: Optional[float]) -> Optional[str]:
    """GPT-FL against FL from scratch in communication to the target, also when one never gets there."""
    by_name = {curve.name: curve for curve in curves}
    gptfl, scratch = by_name.get("GPT-FL"), by_name.get("FL from scratch")
    if target is None or gptfl is None or scratch is None:
        return None
    gpt_hit, scratch_hit = gptfl.first_reaching(target), scratch.first_reaching(target)
    if gpt_hit and scratch_hit:
        if gpt_hit[1] == 0:
            return f"GPT-FL starts at {target:.1%} or above (round 0); FL from scratch needs {scratch_hit[1]:,} parameters."
        return (f"GPT-FL reaches {target:.1%} with {scratch_hit[1] / gpt_hit[1]:.1f}x less communication "
                "than FL from scratch.")
    if gpt_hit:
        return (f"GPT-FL reaches {target:.1%} after {gpt_hit[1]:,} parameters communicated; FL from scratch has "
                f"not reached it in {scratch.last_round} rounds ({scratch.params[-1]:,} parameters).")
    if scratch_hit:
        return (f"FL from scratch reaches {target:.1%} after {scratch_hit[1]:,} parameters communicated; GPT-FL "
                f"has not reached it in {gptfl.last_round} rounds ({gptfl.params[-1]:,} parameters).")
    return f"Neither method reaches {target:.1%} in {max(gptfl.last_round, scratch.last_round)} rounds."


@dataclass
class ClientAccuracies:
    """The final global model's accuracy on each client's held-out data (``federate.client_eval``)."""

    name: str
    round: int
    accuracy: list[float]
    finetuned: Optional[list[float]] = None  # after the personalisation steps


def read_client_accuracies(name: str, summary_path: Path) -> Optional[ClientAccuracies]:
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    rows = summary.get("client_accuracy")
    if not rows:
        return None
    finetuned = [float(row["finetuned_accuracy"]) for row in rows] if "finetuned_accuracy" in rows[0] else None
    return ClientAccuracies(name, int(summary.get("client_eval_round", summary.get("rounds", 0))),
                        [float(row["accuracy"]) for row in rows], finetuned)


def client_table(scores: list[ClientAccuracies]) -> list[str]:
    """Markdown rows: mean, 10th-percentile (linear interpolation) and worst client accuracy per method."""
    import numpy as np

    personalised = any(s.finetuned is not None for s in scores)
    lines = ["| method | clients | mean client accuracy | 10th percentile | worst client |"
             + (" mean after local steps | worst after local steps |" if personalised else ""),
             "|---|---|---|---|---|" + ("---|---|" if personalised else "")]
    for score in scores:
        values = np.array(score.accuracy)
        row = (f"| {score.name} (round {score.round}) | {len(values)} | {values.mean():.4f} | "
               f"{np.percentile(values, 10):.4f} | {values.min():.4f} |")
        if personalised:
            tuned = np.array(score.finetuned) if score.finetuned is not None else None
            row += f" {tuned.mean():.4f} | {tuned.min():.4f} |" if tuned is not None else " | |"
        lines.append(row)
    return lines


# ----------------------------------------------------------------------------- plots


def smoothed(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start); ``window`` 1 is the identity."""
    windows = (values[max(0, i + 1 - window) : i + 1] for i in range(len(values)))
    return [sum(part) / len(part) for part in windows]


def new_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    return plt, figure, axes


def save_figure(plt, figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path


def _plot_curves(path: Path, curves: list[Curve], x: str, title: str) -> Path:
    plt, figure, axes = new_figure()
    for curve in curves:
        axes.plot(curve.rounds if x == "round" else curve.params, curve.accuracy, marker=".", label=curve.name)
    axes.set_xlabel("round" if x == "round" else "parameters communicated (down + up)")
    axes.set_ylabel("test accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    return save_figure(plt, figure, path)


def _plot_diversity(path: Path, curves: list[Curve], smooth: int = 1) -> Optional[Path]:
    if not any(c.diversity for c in curves):
        return None
    plt, figure, axes = new_figure()
    for curve in curves:
        if curve.diversity:
            axes.plot(curve.diversity_rounds, smoothed(curve.diversity, smooth), marker=".", label=curve.name)
    axes.set_xlabel("round" if smooth == 1 else f"round (trailing mean over {smooth} rounds)")
    axes.set_ylabel("gradient diversity  Σ‖Δi‖² / ‖ΣΔi‖²")
    axes.set_title("gradient diversity of the sampled clients")
    axes.grid(alpha=0.3)
    axes.legend()
    return save_figure(plt, figure, path)


def _plot_to_target(path: Path, curves: list[Curve], target: float) -> Path:
    plt, figure, axes = new_figure()
    names, values = [], []
    for curve in curves:
        reached = curve.first_reaching(target)
        names.append(curve.name + ("" if reached else " (not reached)"))
        values.append(reached[1] if reached else curve.params[-1])
    axes.bar(names, values, color=["tab:blue", "tab:orange"][: len(values)])
    axes.set_ylabel("parameters communicated")
    axes.set_title(f"communication to {target:.1%} test accuracy")
    return save_figure(plt, figure, path)


def _plot_client_accuracy(path: Path, scores: list[ClientAccuracies]) -> Path:
    """The distribution of per-client accuracy as an empirical CDF per method (further left: worse clients)."""
    plt, figure, axes = new_figure()
    for color, score in zip(("tab:blue", "tab:orange"), scores):
        for values, style, label in ((score.accuracy, "-", score.name),
                                     (score.finetuned, "--", f"{score.name}, after local steps")):
            if values:
                ordered = sorted(values)
                share = [(k + 1) / len(ordered) for k in range(len(ordered))]
                axes.step([0.0, *ordered], [0.0, *share], where="post", color=color, linestyle=style, label=label)
    axes.set_xlabel("accuracy on the client's held-out data")
    axes.set_ylabel("share of clients at or below")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_title("per-client accuracy of the final global model")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    return save_figure(plt, figure, path)


#: Synthetic samples per class in the report's grid.
GRID_COLUMNS = 8


def first_samples_per_class(synth_folder: Path, num_labels: int, per_class: int) -> dict[int, list]:
    """Up to ``per_class`` images of each label from the synthesis shards, in sample order."""
    import h5py

    from gptfl_hpc.shards.reader import find_complete_shards

    found: dict[int, list] = {label: [] for label in range(num_labels)}
    for shard in find_complete_shards(synth_folder) if synth_folder.is_dir() else []:
        with h5py.File(shard, "r", locking=False) as handle:
            if handle.attrs.get("modality") != "image":
                return {}
            targets = handle["y"][:]
            for label in range(num_labels):
                wanted = per_class - len(found[label])
                rows = [int(row) for row in (targets == label).nonzero()[0][:wanted]]
                found[label] += [handle["x"][row] for row in rows]
        if all(len(images) >= per_class for images in found.values()):
            break
    return found if any(found.values()) else {}


def _plot_samples(path: Path, synth_folder: Path, labels: list[str]) -> Optional[Path]:
    """A grid of the first synthetic images of each class (rows), for image generators."""
    samples = first_samples_per_class(synth_folder, len(labels), GRID_COLUMNS)
    if not samples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(labels), GRID_COLUMNS, figsize=(GRID_COLUMNS * 0.8 + 1.2, len(labels) * 0.8),
                                dpi=100, squeeze=False)
    for label, row in enumerate(axes):
        for column, cell in enumerate(row):
            if column < len(samples[label]):
                cell.imshow(samples[label][column], interpolation="nearest")
            cell.set_xticks([])
            cell.set_yticks([])
            for spine in cell.spines.values():
                spine.set_visible(False)
        row[0].set_ylabel(labels[label], rotation=0, ha="right", va="center", fontsize=8)
    figure.suptitle("synthetic samples per class (first of each)", fontsize=10)
    return save_figure(plt, figure, path)


def _plot_scores(path: Path, synth_folder: Path) -> Optional[Path]:
    """A box plot of each class's sample scores, when the shards hold scores (``synth.score``)."""
    import h5py

    from gptfl_hpc.shards.reader import find_complete_shards

    shards = find_complete_shards(synth_folder) if synth_folder.is_dir() else []
    if not shards:
        return None
    with h5py.File(shards[0], "r", locking=False) as handle:
        if "score" not in handle:
            return None
    from gptfl_hpc.synth.scoring.plots import plot_distribution
    from gptfl_hpc.synth.scoring.stats import read_scored

    return plot_distribution(path, read_scored(synth_folder))


def _plot_pretrain(path: Path, rows: list[dict[str, Any]]) -> Path:
    plt, figure, axes = new_figure()
    losses = [(row["step"], row["loss"]) for row in rows if "loss" in row and "step" in row]
    if losses:
        axes.plot(*zip(*losses), label="training loss (synthetic)")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    evaluated = [(row["step"], row["test_accuracy"]) for row in rows if "test_accuracy" in row and "step" in row]
    if evaluated:
        right = axes.twinx()
        right.plot(*zip(*evaluated), color="tab:green", marker="o", label="test accuracy (real)")
        right.set_ylabel("test accuracy")
    axes.set_title("pretraining on synthetic data")
    axes.grid(alpha=0.3)
    return save_figure(plt, figure, path)


# ----------------------------------------------------------------------------- the stage


def _check(config: Config, context: CheckContext) -> None:
    return None  # it reads only what the federations wrote; make_report names what is missing


def _state(config: Config) -> dict[str, Any]:
    return file_state(config.layout.report_file, config.layout.report)


STAGE = Stage("report", "plots and report.md of the run", run=make_report, check=_check, state=_state,
              output=lambda layout: layout.report_file, needs=("federate", "federate-scratch"), always_rerun=True)

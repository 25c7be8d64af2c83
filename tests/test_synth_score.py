"""Per-sample scores: stored as CLIP/CLAP computes them, the same bytes however the work is split,
and pretraining keeping the best of each class by them."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures_shards import add_scores, write_config, write_digit_shards

from gptfl_hpc.cli import main
from gptfl_hpc.config import load_config
from gptfl_hpc.data.digits import DIGIT_LABELS
from gptfl_hpc.pretrain.config import pretrain_identity
from gptfl_hpc.pretrain.inputs import plan_training
from gptfl_hpc.pretrain.layout import PretrainPaths
from gptfl_hpc.pretrain.stage import record_inputs
from gptfl_hpc.shards.manifest import sha256_file
from gptfl_hpc.shards.reader import ShardDataset
from gptfl_hpc.shards.writer import read_arrays
from gptfl_hpc.synth.stage import run_task, synth_identity

REPO = Path(__file__).resolve().parent.parent

SCORED_RUN = """\
run_dir: {run_dir}
seed: 3
labels: {{names: [digit zero, digit one, digit two]}}
launcher: {{executor: inline}}
prompts: {{per_class: 2}}
data: {{dataset: digits, image_size: 16}}
synth:
  count: {count}
  samples_per_shard: {per_shard}
  tasks: {tasks}
  flush_every: {flush}
  score: {{kind: tiny}}
  model: {{kind: {kind}, weights: tiny, steps: 2, batch_size: {batch}, num_threads: 1{extra}}}
"""


def scored_config(tmp: Path, name: str, tasks: int = 1, batch: int = 4, flush: int = 4,
                  kind: str = "stable_diffusion", extra: str = "", count: int = 12, per_shard: int = 6) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(SCORED_RUN.format(run_dir=tmp / name, tasks=tasks, batch=batch, flush=flush, kind=kind,
                                      extra=extra, count=count, per_shard=per_shard))
    assert main(["prompts", str(path)]) == 0
    return path


def shard_hashes(run_dir: Path) -> dict[str, str]:
    return {path.name: sha256_file(path) for path in sorted((run_dir / "synth").glob("shard-*.h5"))}


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    """A run of 12 tiny Stable Diffusion images in 2 shards, scored by a tiny CLIP."""
    tmp = tmp_path_factory.mktemp("scored")
    path = scored_config(tmp, "run")
    assert main(["synth", str(path)]) == 0
    return tmp / "run"


def test_the_stored_score_is_the_cosine_of_clip_text_and_image_features(scored):
    from transformers import CLIPModel, CLIPProcessor

    model_dir = scored / "weights" / "tiny-score-clip"
    model, processor = CLIPModel.from_pretrained(model_dir).eval(), CLIPProcessor.from_pretrained(model_dir)
    arrays = read_arrays(scored / "synth" / "shard-00001.h5")
    assert arrays["score"].dtype == np.float32 and arrays["embedding"].dtype == np.float16
    assert arrays["score"].shape == (6,) and arrays["embedding"].shape == (6, model.config.projection_dim)
    for row in (0, 3, 5):
        inputs = processor(text=[str(arrays["prompt"][row])], images=[arrays["x"][row]], return_tensors="pt")
        with torch.no_grad():
            text = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            image = model.get_image_features(pixel_values=inputs["pixel_values"])
        text, image = (F.normalize(getattr(t, "pooler_output", t), dim=-1)[0] for t in (text, image))
        assert arrays["score"][row] == pytest.approx(float(text @ image), abs=1e-5)
        np.testing.assert_allclose(arrays["embedding"][row].astype(np.float32), image.numpy(), atol=1e-3)
    assert len(set(arrays["score"].tolist())) > 1  # one score per sample, not one per batch


def test_scores_are_the_same_bytes_for_any_task_split_and_batch_size(tmp_path, scored):
    path = scored_config(tmp_path, "run", tasks=2)
    config = load_config(path)
    assert synth_identity(config) == synth_identity(load_config(scored / "config.yaml"))
    assert [run_task(config, task)["made"] for task in (1, 0)] == [1, 1]
    assert shard_hashes(tmp_path / "run") == shard_hashes(scored)
    # Another batch size makes another config (its hash is in the shards' attributes): every sample
    # the generator made alike (on this CPU: all of them) has the same score and embedding bytes.
    other = scored_config(tmp_path, "batch3", batch=3, flush=5)
    assert main(["synth", str(other)]) == 0
    for name in ("shard-00000.h5", "shard-00001.h5"):
        mine, reference = read_arrays(tmp_path / "batch3" / "synth" / name), read_arrays(scored / "synth" / name)
        alike = [row for row in range(len(mine["x"])) if mine["x"][row].tobytes() == reference["x"][row].tobytes()]
        assert alike
        for key in ("score", "embedding"):
            assert mine[key][alike].tobytes() == reference[key][alike].tobytes(), key


def test_a_score_does_not_depend_on_the_other_samples_of_its_batch(scored):
    from gptfl_hpc.synth.scoring.kinds import FAMILIES
    from gptfl_hpc.synth.scoring.scorer import SampleScorer

    scorer = SampleScorer(FAMILIES["clip"], scored / "weights" / "tiny-score-clip", torch.device("cpu"))
    arrays = read_arrays(scored / "synth" / "shard-00000.h5")
    prompts, images = [str(p) for p in arrays["prompt"]], arrays["x"]
    whole = scorer.score(prompts, images)
    assert whole["score"].tobytes() == arrays["score"].tobytes()
    parts = [scorer.score(prompts[i : i + 2], images[i : i + 2]) for i in range(0, 6, 2)][::-1]
    assert np.concatenate([p["score"] for p in parts[::-1]]).tobytes() == whole["score"].tobytes()
    alone = SampleScorer(FAMILIES["clip"], scored / "weights" / "tiny-score-clip", torch.device("cpu"))
    assert alone.score(prompts[5:], images[5:])["embedding"].tobytes() == whole["embedding"][5:].tobytes()


def test_sigkill_mid_shard_then_rerun_keeps_the_same_score_bytes(tmp_path, scored):
    path = scored_config(tmp_path, "run")
    proc = subprocess.Popen([sys.executable, "-m", "gptfl_hpc", "synth", str(path)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    partial = tmp_path / "run" / "synth" / ".partial" / "shard-00001"  # shard 0 done, shard 1 begun
    deadline = time.monotonic() + 240
    while not list(partial.glob("*.npz")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (tmp_path / "run" / "synth" / "shard-00001.h5").exists()
    assert main(["synth", str(path)]) == 0
    assert shard_hashes(tmp_path / "run") == shard_hashes(scored)


def test_speech_is_scored_by_clap_as_clap_computes_it(tmp_path):
    from transformers import ClapModel, ClapProcessor

    path = scored_config(tmp_path, "speech", kind="speecht5", batch=2, extra=", seconds: 0.25", count=3, per_shard=3)
    assert main(["synth", str(path)]) == 0
    run = tmp_path / "speech"
    model_dir = run / "weights" / "tiny-score-clap"
    model, processor = ClapModel.from_pretrained(model_dir).eval(), ClapProcessor.from_pretrained(model_dir)
    arrays = read_arrays(run / "synth" / "shard-00000.h5")
    assert arrays["score"].shape == (3,)
    for row in range(3):
        waveform = arrays["x"][row].astype(np.float32) / 32768.0  # the tiny CLAP reads 16 kHz, as stored
        inputs = processor(text=[str(arrays["prompt"][row])], return_tensors="pt")
        inputs.update(processor(audio=[waveform], sampling_rate=16000, return_tensors="pt"))
        with torch.no_grad():
            text_features = model.get_text_features(input_ids=inputs["input_ids"],
                                                    attention_mask=inputs["attention_mask"])
            audio = model.get_audio_features(input_features=inputs["input_features"], is_longer=inputs["is_longer"])
        text_features, audio = (F.normalize(getattr(t, "pooler_output", t), dim=-1)[0] for t in (text_features, audio))
        assert arrays["score"][row] == pytest.approx(float(text_features @ audio), abs=1e-5)
    # The stats grid shows audio as spectrograms.
    assert main(["synth", "stats", str(run)]) == 0
    assert (run / "synth" / "stats" / "score_extremes.png").stat().st_size > 1000


# --------------------------------------------------------------------------- pretraining keeps the best


def digits_with_scores(tmp: Path, scores: np.ndarray) -> Path:
    folder = tmp / "shards"
    add_scores(write_digit_shards(folder, shards=2, limit=len(scores)), scores)
    return folder


def pretrain_config(tmp: Path, shards: Path, **rule) -> object:
    settings = {"ranks": 1, "epochs": 1, "micro_batch_size": 4, "workers": 0, "evaluate": False, **rule}
    path = write_config(tmp / f"c{len(list(tmp.glob('c*.yaml')))}.yaml", tmp / "run", pretrain={**settings,
                        "shards": [str(shards)]})
    return load_config(path)


def test_keep_fraction_keeps_exactly_the_top_share_of_each_class_ties_to_the_earlier_sample(tmp_path):
    count = 100
    scores = np.round(np.random.default_rng(0).uniform(0, 1, count), 1)  # one decimal: many ties
    folder = digits_with_scores(tmp_path, scores)
    config = pretrain_config(tmp_path, folder, keep_fraction=0.3)
    plan = plan_training(config)
    dataset = ShardDataset(folder, DIGIT_LABELS)
    targets = dataset.targets
    expected = []
    for label in range(len(DIGIT_LABELS)):
        members = [i for i in range(count) if targets[i] == label]
        ranked = sorted(members, key=lambda i: (-scores[i], i))
        expected += ranked[: math.ceil(0.3 * len(members))]
    selection = plan.score_selection
    assert selection.kept.tolist() == sorted(expected) and plan.num_samples == len(expected)
    assert [(label, kept) for label, kept, _ in selection.per_class] == [
        (label, math.ceil(0.3 * of)) for label, _, of in selection.per_class
    ]
    # The trainer's dataset is the kept samples, in dataset order.
    from gptfl_hpc.pretrain.inputs import train_dataset

    kept = train_dataset(config, plan)
    assert len(kept) == len(expected) and kept.targets.tolist() == targets[sorted(expected)].tolist()
    assert kept.read_scores().tolist() == pytest.approx(scores[sorted(expected)].tolist())


def test_a_score_rule_changes_the_inputs_and_the_pretrain_identity_but_not_synthesis(tmp_path):
    folder = digits_with_scores(tmp_path, np.linspace(0, 1, 80))
    every, best, floor = (pretrain_config(tmp_path, folder, **rule) for rule in
                          ({}, {"keep_fraction": 0.5}, {"min_score": 0.25}))
    plans = [plan_training(config) for config in (every, best, floor)]
    assert plans[0].score_selection is None and plans[0].num_samples == 80
    assert plans[1].num_samples == sum(math.ceil(of / 2) for _, _, of in plans[1].score_selection.per_class)
    assert plans[2].num_samples == int((np.linspace(0, 1, 80) >= 0.25).sum())
    assert len({plan.fingerprint for plan in plans}) == 3  # a resume refuses other kept samples
    identities = [pretrain_identity(config.science()) for config in (every, best, floor)]
    assert len(set(identities)) == 3 and len({config.hash for config in (every, best, floor)}) == 3
    assert len({synth_identity(config) for config in (every, best, floor)}) == 1
    assert "keep_fraction" not in json.dumps(every.science())  # off: the identity is the one before scores
    for config, plan in zip((every, best), plans):
        paths = PretrainPaths(config.run_dir)
        record_inputs(paths, plan)
        inputs = json.loads(paths.inputs.read_text())
        if plan.score_selection is None:
            assert set(inputs) == {"fingerprint", "files"}
        else:
            assert inputs["score_selection"]["rule"] == "keep_fraction 0.5"
            assert inputs["score_selection"]["kept"] == plan.num_samples and inputs["score_selection"]["of"] == 80


def test_min_score_keeps_every_sample_at_or_above_it(tmp_path):
    scores = np.linspace(0, 1, 50).astype(np.float32)
    folder = digits_with_scores(tmp_path, scores)
    plan = plan_training(pretrain_config(tmp_path, folder, min_score=float(scores[20])))
    assert plan.score_selection.kept.tolist() == list(range(20, 50))


def test_shards_without_scores_still_read(tmp_path):
    folder = tmp_path / "plain"
    write_digit_shards(folder, shards=1, limit=20)
    dataset = ShardDataset(folder, DIGIT_LABELS)
    assert len(dataset) == 20 and not dataset.has_scores
    assert plan_training(pretrain_config(tmp_path, folder)).num_samples == 20


# --------------------------------------------------------------------------- looking at the scores


def test_synth_stats_prints_each_class_and_writes_the_extremes_grid(scored, capsys):
    assert main(["synth", "stats", str(scored), "synth.score.duplicate_threshold=0.999"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "near-duplicates (cosine > 0.999)" in lines[0]
    scores = np.concatenate([read_arrays(path)["score"] for path in sorted((scored / "synth").glob("shard-*.h5"))])
    labels = np.concatenate([read_arrays(path)["y"] for path in sorted((scored / "synth").glob("shard-*.h5"))])
    for label, name in enumerate(["digit zero", "digit one", "digit two"]):
        row = next(line for line in lines if line.startswith(name)).split()
        values = scores[labels == label].astype(np.float64)
        assert int(row[2]) == 4
        assert [float(v) for v in row[3:8]] == pytest.approx(
            [values.mean(), values.min(), np.percentile(values, 10), np.median(values), values.max()], abs=1e-4)
    table = json.loads((scored / "synth" / "stats" / "scores.json").read_text())
    assert [c["count"] for c in table["classes"]] == [4, 4, 4] and table["duplicate_threshold"] == 0.999
    assert (scored / "synth" / "stats" / "score_extremes.png").stat().st_size > 1000
    from gptfl_hpc.report import _plot_scores

    assert _plot_scores(scored / "report" / "synthetic_scores.png", scored / "synth").is_file()


def test_near_duplicates_count_the_later_copies():
    from gptfl_hpc.synth.scoring.stats import near_duplicates

    rng = np.random.default_rng(0)
    base = rng.normal(size=(5, 8))
    embeddings = np.concatenate([base, base[[0, 0, 3]] + 1e-4])  # two copies of row 0, one of row 3
    assert near_duplicates(embeddings, 0.99) == 3
    assert near_duplicates(base, 0.99) == 0


def test_synth_stats_on_shards_without_scores_is_one_line(tmp_path, capsys):
    from gptfl_hpc.rundir import prepare_run_dir

    config = load_config(write_config(tmp_path / "c.yaml", tmp_path / "run"))
    prepare_run_dir(config)
    write_digit_shards(tmp_path / "run" / "synth", shards=1, limit=10)
    assert main(["synth", "stats", str(tmp_path / "run")]) == 2
    assert "holds no scores; make the shards with synth.score set" in capsys.readouterr().err


def test_the_duplicate_threshold_is_no_part_of_the_shards_identity(tmp_path):
    from gptfl_hpc.stage_reads import SUMMARY_KEYS

    config = load_config(scored_config(tmp_path, "run"))
    other = load_config(tmp_path / "run.yaml", ["synth.score.duplicate_threshold=0.8"])
    assert SUMMARY_KEYS["synth"] == ("synth.score.duplicate_threshold",)
    assert synth_identity(other) == synth_identity(config) and other.hash != config.hash
    unscored = load_config(tmp_path / "run.yaml", ["synth.score=null"])
    assert synth_identity(unscored) != synth_identity(config)


def test_the_dry_run_plan_names_the_kept_samples(tmp_path):
    from gptfl_hpc.pretrain.description import explain

    config = pretrain_config(tmp_path, digits_with_scores(tmp_path, np.linspace(0, 1, 40)), keep_fraction=0.25)
    lines = explain(config, plan_training(config))
    assert any(line.startswith("pretrain.keep_fraction 0.25 keeps 13 of 40 samples (digit zero ") for line in lines)

"""`gptfl run` end to end on data users bring: an image folder and an audio folder with a speaker
column, locally, and the image folder on the test Slurm cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_folders import audio_folder, image_folder

REPO = Path(__file__).resolve().parent.parent

IMAGE_RUN = """\
run_dir: {run_dir}
seed: 3
labels: {{names: [cat, dog, owl]}}
launcher: {launcher}
prompts: {{per_class: 2}}
data:
  dataset: folder
  root: {root}
  image_size: 16
  partition: {{num_clients: 2, min_client_size: 1}}
model: {{name: convnet, width: 8, depth: 1}}
synth:
  count: 24
  samples_per_shard: 12
  model: {{kind: stable_diffusion, weights: tiny, steps: 2, batch_size: 4, num_threads: 1}}
pretrain: {{ranks: 1, epochs: 1, micro_batch_size: 8, workers: 0, evaluate: true, checkpoint_every: 100}}
federate: {{rounds: 1, clients_per_round: 2, baseline: false, eval_every: 1, eval_batch_size: 64}}
"""

AUDIO_RUN = """\
run_dir: {run_dir}
seed: 3
labels: {{names: ["yes", "no"]}}
launcher: {{executor: inline}}
prompts: {{per_class: 2}}
data:
  dataset: folder
  root: {root}
  audio: {{seconds: 0.5, n_mels: 16, n_fft: 256}}
  columns: {{client: speaker}}
  partition: {{kind: natural, num_clients: null, min_client_size: 1}}
model: {{name: audio_crnn, hidden_size: 8}}
synth:
  count: 8
  samples_per_shard: 8
  model: {{kind: speecht5, weights: tiny, batch_size: 4, num_threads: 1}}
pretrain: {{ranks: 1, epochs: 1, micro_batch_size: 4, workers: 0, evaluate: true, checkpoint_every: 100}}
federate: {{rounds: 1, clients_per_round: 2, baseline: false, eval_every: 1, eval_batch_size: 64}}
"""


def gptfl(*args, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "gptfl_hpc", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"gptfl {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def cached_splits(run_dir: Path) -> list[str]:
    """What each decoded-sample cache of the run holds (``info.json``'s ``what``)."""
    return sorted(json.loads(info.read_text())["what"] for info in (run_dir / "data-cache").glob("*/info.json"))


def image_data(root: Path) -> Path:
    image_folder(root / "train", ["cat", "dog", "owl"], per_label=4)
    image_folder(root / "test", ["cat", "dog", "owl"], per_label=1)
    return root


@pytest.mark.slow
def test_an_image_folder_runs_the_whole_pipeline(tmp_path):
    run_dir, config = tmp_path / "run", tmp_path / "run.yaml"
    config.write_text(IMAGE_RUN.format(run_dir=run_dir, root=image_data(tmp_path / "data"),
                                       launcher="{executor: inline}"))
    gptfl("run", config)
    summary = json.loads((run_dir / "federate" / "summary.json").read_text())
    assert summary["clients"] == 2 and (run_dir / "report" / "report.md").is_file()
    root = tmp_path / "data"
    assert cached_splits(run_dir) == [f"the test split of {root}", f"the train split of {root}"]


@pytest.mark.slow
def test_an_audio_folder_with_speakers_runs_the_whole_pipeline(tmp_path):
    root = tmp_path / "data"
    audio_folder(root / "train", ["yes", "no"], per_label=3, speakers=["ann", "bob", "cyd"])
    audio_folder(root / "test", ["yes", "no"], per_label=1)
    run_dir, config = tmp_path / "run", tmp_path / "run.yaml"
    config.write_text(AUDIO_RUN.format(run_dir=run_dir, root=root))
    gptfl("run", config)
    assert (run_dir / "report" / "report.md").is_file()
    summary = json.loads((run_dir / "federate" / "summary.json").read_text())
    assert summary["clients"] == 3  # one per speaker
    assert cached_splits(run_dir) == [f"the test split of {root}", f"the train split of {root}"]


@pytest.mark.slurm
@pytest.mark.slow
def test_an_image_folder_runs_the_whole_pipeline_on_slurm(tmp_path, slurm_cluster):
    run_dir, config = tmp_path / "run", tmp_path / "run.yaml"
    config.write_text(IMAGE_RUN.format(run_dir=run_dir, root=image_data(tmp_path / "data"),
                                       launcher="{executor: slurm, poll_interval_s: 1, slurm: {partition: debug}}"))
    gptfl("run", config, "--wait")
    assert (run_dir / "report" / "report.md").is_file()
    assert len(cached_splits(run_dir)) == 2

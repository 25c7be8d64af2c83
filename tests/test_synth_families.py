"""Every generator family beyond the first three, end to end through its real pipeline class on
a tiny model: per-sample determinism, guidance as planned, byte-identical shards however the
work is split, ``kind: auto`` and the guidance rules; and, for all ten families,
``synth.model.batch_invariant``: the same shard bytes whatever the batch size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gptfl_hpc import preemption
from gptfl_hpc.config import load_config
from gptfl_hpc.errors import UserError
from gptfl_hpc.prompts.stage import run as run_prompts
from gptfl_hpc.shards.manifest import sha256_file
from gptfl_hpc.shards.reader import ShardDataset
from gptfl_hpc.synth.generators import GeneratorConfig, SampleSpec, load_generator
from gptfl_hpc.synth.generators.registry import GENERATORS, SUPPORTED_CLASSES
from gptfl_hpc.synth.guidance_range import planned_guidance
from gptfl_hpc.synth.config import SynthConfig
from gptfl_hpc.synth.plan import saved_plan
from gptfl_hpc.synth.stage import run_task
from gptfl_hpc.synth.tiny import ensure_tiny

IMAGE_KINDS = ("sdxl", "sd3", "pixart", "flux")
SOUND_KINDS = ("audioldm2", "stable_audio")
KINDS = IMAGE_KINDS + ("vits",) + SOUND_KINDS
ALL_KINDS = ("stable_diffusion", *IMAGE_KINDS, "speecht5", "vits", "audioldm", *SOUND_KINDS)
GUIDED_KINDS = ("sdxl", "sd3", "pixart", "flux") + SOUND_KINDS
THREADS = 1  # fixed, as bit-identical CPU output requires

A = SampleSpec(index=0, label=0, prompt="a photo of a cat", seed=11, guidance=1.5)
B = SampleSpec(index=1, label=1, prompt="a photo of a dog in the field", seed=12, guidance=4.5)


@pytest.fixture(scope="module", autouse=True)
def fixed_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """Each family's tiny model, built once: saved, then loaded like real weights."""
    root = tmp_path_factory.mktemp("weights")
    return {kind: ensure_tiny(kind, root / f"tiny-{kind}") for kind in ALL_KINDS}


def config(kind: str, weights_dir: Path, **overrides) -> GeneratorConfig:
    settings = {"weights": str(weights_dir), "steps": 2, "num_threads": THREADS, "device": "cpu"}
    settings.update({"resolution": 16} if kind in IMAGE_KINDS else {"seconds": 0.25})
    return GeneratorConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def generators(weights):
    return {kind: load_generator(config(kind, weights[kind]), 12, weights[kind]) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_auto_reads_the_family_from_the_weights(kind, weights):
    assert config(kind, weights[kind]).kind == kind
    assert GeneratorConfig(kind="auto", weights=str(weights[kind])).generator is GENERATORS[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_a_batch_gives_each_sample_as_generated_alone(kind, generators):
    generator = generators[kind]
    together = generator.generate([A, B])
    assert together.shape == (2, *generator.sample_shape) and together.dtype == generator.dtype
    alone = np.concatenate([generator.generate([A]), generator.generate([B])])
    assert np.abs(together.astype(np.int64) - alone.astype(np.int64)).max() <= 1
    assert not np.array_equal(together[0], together[1])
    assert np.array_equal(generator.generate([A]), generator.generate([A]))


@pytest.mark.parametrize("kind", GUIDED_KINDS)
def test_guidance_is_taken_per_sample(kind, generators):
    generator = generators[kind]
    weak, strong = A, SampleSpec(**{**A.__dict__, "guidance": 6.0})
    assert not np.array_equal(generator.generate([weak]), generator.generate([strong]))


def test_flux_dev_embeds_each_samples_guidance(generators):
    generator = generators["flux"]
    assert generator.embeds_guidance
    strong = SampleSpec(**{**A.__dict__, "guidance": 6.0})
    pair = generator.generate([A, strong])
    assert np.abs(pair[1].astype(int) - generator.generate([strong])[0].astype(int)).max() <= 1


def test_sd3_runs_without_its_t5_encoder(weights, tmp_path):
    generator = load_generator(config("sd3", weights["sd3"], text_encoder_3=False), 12, weights["sd3"])
    assert generator.pipeline.text_encoder_3 is None
    assert generator.generate([A]).shape == (1, 12, 12, 3)


def test_sd3_saved_without_t5_is_refused_when_asked_for(weights, tmp_path):
    from gptfl_hpc.synth.generators import check_weights

    folder = tmp_path / "sd3"
    shutil.copytree(weights["sd3"], folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["text_encoder_3"] = index["tokenizer_3"] = [None, None]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(UserError, match="without its T5 text encoder"):
        check_weights(config("sd3", folder), folder, None)
    check_weights(config("sd3", folder, text_encoder_3=False), folder, None)


def test_auto_names_the_supported_classes_for_an_unsupported_folder(tmp_path):
    from gptfl_hpc.synth.generators import check_weights

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    model = GeneratorConfig(weights=str(tmp_path))
    assert model.kind == "auto"
    with pytest.raises(UserError) as error:
        check_weights(model, tmp_path, None)
    assert "KandinskyPipeline" in str(error.value) and SUPPORTED_CLASSES in str(error.value)
    assert "\n" not in str(error.value)


def _flux_schnell(weights: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "schnell"
    shutil.copytree(weights, folder)
    transformer = json.loads((folder / "transformer" / "config.json").read_text())
    (folder / "transformer" / "config.json").write_text(json.dumps({**transformer, "guidance_embeds": False}))
    return folder


def test_guidance_rules_of_distilled_and_guided_models(weights, tmp_path):
    def planned(weights_dir: Path, guidance):
        return planned_guidance(SynthConfig(model={"weights": str(weights_dir)}, guidance=guidance))

    assert planned(weights["flux"], None) == (3.5, 3.5)  # dev: its own default, recorded per sample
    assert planned(weights["flux"], (2.0, 4.0)) == (2.0, 4.0)
    with pytest.raises(UserError, match="embedded guidance range"):
        planned(weights["flux"], (0.0, 20.0))
    schnell = _flux_schnell(weights["flux"], tmp_path)
    assert planned(schnell, None) == (0.0, 0.0)
    with pytest.raises(UserError, match="set synth.guidance: null"):
        planned(schnell, (1.0, 5.0))
    with pytest.raises(UserError, match="takes classifier-free guidance"):
        planned(weights["sdxl"], None)
    assert planned(weights["vits"], (1.0, 5.0)) == (1.0, 5.0)  # unguided: recorded only


def test_flux_schnell_ignores_guidance(weights, tmp_path):
    schnell = _flux_schnell(weights["flux"], tmp_path)
    generator = load_generator(config("flux", schnell), 12, schnell)
    assert not generator.embeds_guidance
    zero = SampleSpec(**{**A.__dict__, "guidance": 0.0})
    assert generator.generate([zero]).shape == (1, 12, 12, 3)


# --- the synthesis stage -----------------------------------------------------------------------

STAGE_CONFIG = """\
run_dir: {run_dir}
seed: 5
labels:
  names: [digit zero, digit one, digit two]
launcher:
  executor: inline
{data}prompts:
  per_class: 2
synth:
  count: 6
  samples_per_shard: 3
  tasks: {tasks}
  flush_every: 1
  guidance: {guidance}
  model:
    weights: {weights}
    steps: 2
    batch_size: {batch_size}
    num_threads: 1
{size}"""
IMAGE_DATA = "data:\n  image_size: 16\n"
SPEECH_DATA = "data:\n  dataset: speech_commands\nmodel:\n  name: audio_crnn\n"
SOUND_DATA = "data:\n  dataset: esc50\nmodel:\n  name: audio_crnn\n"


def stage_config(tmp: Path, name: str, kind: str, weights_dir: Path, tasks: int, batch_size: int,
                 model_extra: str = "", run: str = "") -> Path:
    """A stage config ``tmp/name.yaml`` writing to ``tmp/run`` (``tmp/name`` by default)."""
    modality = GENERATORS[kind].modality
    image = modality == "image"
    if GENERATORS[kind].needs_vocoder:
        model_extra += f"    vocoder: {weights_dir / 'vocoder'}\n"
    path = tmp / f"{name}.yaml"
    path.write_text(STAGE_CONFIG.format(
        run_dir=tmp / (run or name), tasks=tasks, batch_size=batch_size, weights=weights_dir,
        data=IMAGE_DATA if image else SPEECH_DATA if modality == "speech" else SOUND_DATA,
        guidance="[1.0, 5.0]" if kind != "flux" else "[2.0, 4.0]",
        size=("    resolution: 16\n" if image else "    seconds: 0.25\n") + model_extra,
    ))
    return path


def synthesize(tmp: Path, name: str, kind: str, weights_dir: Path, tasks: int, batch_size: int,
               model_extra: str = "") -> Path:
    loaded = load_config(stage_config(tmp, name, kind, weights_dir, tasks, batch_size, model_extra))
    run_prompts(loaded)
    for task in reversed(range(tasks)):  # any order
        run_task(loaded, task)
    return tmp / name / "synth"


def shard_hashes(folder: Path) -> dict[str, str]:
    return {path.name: sha256_file(path) for path in sorted(folder.glob("shard-*.h5"))}


@pytest.mark.parametrize("kind", KINDS)
def test_shards_are_the_same_however_the_work_is_split(kind, weights, tmp_path):
    one = synthesize(tmp_path, "one", kind, weights[kind], tasks=1, batch_size=2)
    two = synthesize(tmp_path, "two", kind, weights[kind], tasks=2, batch_size=2)
    hashes = shard_hashes(one)
    assert len(hashes) == 2
    assert hashes == shard_hashes(two)

    # The guidance recorded per sample is the plan's.
    plan = saved_plan(one)[0]
    specs = plan.specs(0, plan.total, [["p"] * 2] * 3)
    recorded = []
    for path in sorted(one.glob("shard-*.h5")):
        with h5py.File(path, "r") as shard:
            recorded.append(shard["guidance"][:])
    recorded = np.concatenate(recorded)
    assert np.array_equal(recorded, np.array([spec.guidance for spec in specs]))
    low, high = (2.0, 4.0) if kind == "flux" else (1.0, 5.0)
    assert ((recorded >= low) & (recorded <= high)).all()

    # Another batch size is another run (it is part of the identity), with the same samples.
    other = synthesize(tmp_path, "other", kind, weights[kind], tasks=1, batch_size=3)
    labels = ["digit zero", "digit one", "digit two"]
    first, second = ShardDataset(one, labels), ShardDataset(other, labels)
    for i in range(len(first)):
        assert np.abs(first[i][0].astype(np.int64) - second[i][0].astype(np.int64)).max() <= 1


def test_sigkill_mid_shard_then_rerun_gives_the_same_bytes(weights, tmp_path):
    """A transformer family (FLUX, with its per-sample guidance hook) killed after its first
    committed block of shard 1 resumes that shard and ends with the uninterrupted run's bytes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    reference = synthesize(tmp_path, "reference", "flux", weights["flux"], tasks=1, batch_size=1)
    killed = tmp_path / "killed.yaml"
    killed.write_text((tmp_path / "reference.yaml").read_text().replace(str(tmp_path / "reference"),
                                                                        str(tmp_path / "killed")))
    run_prompts(load_config(killed))
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "gptfl_hpc", "synth", str(killed)], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    partial = tmp_path / "killed" / "synth" / ".partial" / "shard-00001"
    deadline = time.monotonic() + 240
    while not list(partial.glob("*.npz")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (tmp_path / "killed" / "synth" / "shard-00001.h5").exists()
    rerun = subprocess.run([sys.executable, "-m", "gptfl_hpc", "synth", str(killed)], cwd=repo,
                           capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resumes after" in rerun.stderr
    assert shard_hashes(reference) == shard_hashes(tmp_path / "killed" / "synth")


INVARIANT = "    batch_invariant: true\n"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_batch_invariant_shards_are_the_same_bytes_whatever_the_batch_size(kind, weights, tmp_path):
    """With batch_invariant, tasks=1 in batches of 2 and tasks=2 in batches of 3 (started in batches
    of 2, preempted after its first block, resumed in batches of 3) write the same shard bytes, and
    each sample is the one the default mode makes in batches of one."""
    one = synthesize(tmp_path, "one", kind, weights[kind], tasks=1, batch_size=2, model_extra=INVARIANT)
    started = load_config(stage_config(tmp_path, "started", kind, weights[kind], 2, 2, INVARIANT, run="two"))
    resumed = load_config(stage_config(tmp_path, "resumed", kind, weights[kind], 2, 3, INVARIANT, run="two"))
    assert started.hash == resumed.hash  # the batch size is not part of the run
    run_prompts(started)
    preemption.request()
    try:
        with pytest.raises(preemption.Preempted):
            run_task(started, 1)
    finally:
        preemption.clear()
    assert [p.name for p in (tmp_path / "two/synth/.partial/shard-00001").glob("*.npz")] == ["000000003-000000005.npz"]
    for task in (1, 0):
        run_task(resumed, task)
    hashes = shard_hashes(one)
    assert len(hashes) == 2 and hashes == shard_hashes(tmp_path / "two" / "synth")

    single = synthesize(tmp_path, "single", kind, weights[kind], tasks=2, batch_size=1)
    for name in hashes:
        with h5py.File(one / name, "r") as invariant, h5py.File(single / name, "r") as alone:
            assert invariant["x"].dtype == alone["x"].dtype
            assert np.array_equal(invariant["x"][:], alone["x"][:])
            assert invariant.attrs["config_hash"] != alone.attrs["config_hash"]  # batch_invariant is in it


def test_flux_refuses_a_negative_prompt(weights):
    with pytest.raises(UserError, match="set synth.model.negative_prompt: null"):
        load_generator(config("flux", weights["flux"], negative_prompt="blurry"), 12, weights["flux"])


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "configs" / "examples").glob("generator-*.yaml")),
                         ids=lambda path: path.name)
def test_generator_example_configs_validate(path, monkeypatch, capsys):
    from gptfl_hpc.cli import main

    monkeypatch.chdir(path.parents[2])  # relative paths in the examples are the repository's
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err

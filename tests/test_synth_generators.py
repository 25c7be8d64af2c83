"""Generators end to end through their real pipeline classes, on tiny models built by ensure_tiny."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators import (
    GeneratorConfig,
    SampleSpec,
    load_generator,
    num_speakers,
    resolve_weights,
    weights_revision,
)
from gptfl_hpc.synth.generators.guidance import GuidanceScales
from gptfl_hpc.synth.generators.runtime import sample_generators
from gptfl_hpc.synth.tiny import ensure_tiny

KINDS = ("stable_diffusion", "speecht5", "audioldm")
THREADS = 1  # fixed, as bit-identical CPU output requires

# Two planned samples with different prompts, seeds and guidance scales.
A = SampleSpec(index=0, label=0, prompt="a photo of a cat", seed=11, guidance=1.5, speaker=1)
B = SampleSpec(index=1, label=1, prompt="a photo of a dog in the field", seed=12, guidance=4.5, speaker=3)

# A batch holds the conditional and unconditional halves of every sample in one UNet/text-encoder
# call; CPU GEMM kernels block differently for different batch sizes, so a sample generated in a
# batch matches the same sample generated alone to float rounding (~1e-6), not bit for bit. The
# synthesis plan keeps batch composition fixed, so reruns and resumes are still byte-identical.
BATCH_ATOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def fixed_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("run")


def config(kind: str, **overrides) -> GeneratorConfig:
    settings = {"steps": 2, "num_threads": THREADS, "device": "cpu", "seconds": None}
    if kind == "stable_diffusion":
        settings["resolution"] = 16  # 8x8 latents
    else:
        settings["seconds"] = 0.25
    settings.update(overrides)
    return GeneratorConfig(kind=kind, **settings)


def load(kind: str, run_dir: Path, image_size: int = 12, **overrides):
    cfg = config(kind, **overrides)
    weights, vocoder = resolve_weights(cfg, run_dir)
    return load_generator(cfg, image_size, weights, vocoder)


@pytest.fixture(scope="module")
def image_gen(run_dir):
    return load("stable_diffusion", run_dir)


@pytest.fixture(scope="module")
def speech_gen(run_dir):
    return load("speecht5", run_dir)


@pytest.fixture(scope="module")
def sound_gen(run_dir):
    return load("audioldm", run_dir)


def tree_digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- tiny weights ---------------------------------------------------------------------------------


@pytest.mark.slow  # two fresh interpreters importing diffusers and transformers: ~20 s on 2 cores
def test_tiny_weights_are_byte_identical_across_processes_and_safe_to_build_concurrently(run_dir, tmp_path):
    """Two processes race to build every tiny model into one folder; both succeed, no temporary is
    left, and the files equal those built earlier in this process (same seed => same bytes)."""
    shared = tmp_path / "weights"
    script = (
        "import sys; from pathlib import Path; from gptfl_hpc.synth.tiny import ensure_tiny\n"
        "for kind in sys.argv[2:]: ensure_tiny(kind, Path(sys.argv[1]) / kind)\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(shared), *KINDS], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for racer in racers:
        _, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err[-2000:]
    assert sorted(p.name for p in shared.iterdir()) == sorted(KINDS)  # no staging folders left
    for kind in KINDS:
        here = ensure_tiny(kind, run_dir / "weights" / f"tiny-{kind}")
        assert tree_digests(shared / kind) == tree_digests(here), kind
        assert weights_revision(shared / kind) == weights_revision(here)


def test_ensure_tiny_keeps_an_existing_folder(run_dir):
    target = resolve_weights(config("audioldm"), run_dir)[0]
    before = {p: p.stat().st_mtime_ns for p in target.rglob("*")}
    assert ensure_tiny("audioldm", target) == target
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*")} == before


def test_resolve_weights_layout(run_dir):
    weights, vocoder = resolve_weights(config("speecht5"), run_dir)
    assert weights == run_dir.resolve() / "weights" / "tiny-speecht5"
    assert vocoder == weights / "vocoder"
    image_weights = run_dir.resolve() / "weights" / "tiny-stable_diffusion"
    assert resolve_weights(config("stable_diffusion"), run_dir) == (image_weights, None)
    other = run_dir / "elsewhere"
    assert resolve_weights(config("speecht5", vocoder=str(other)), run_dir)[1] == other.resolve()


def test_weights_revision_tracks_configs_and_sizes_not_hidden_files_or_the_card(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text('{"a": 1}')
    (tmp_path / "unet" / "weights.safetensors").write_bytes(b"0" * 10)
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "merges.txt").write_text("a b\n")
    first = weights_revision(tmp_path)
    assert len(first) == 16 and first == weights_revision(tmp_path)
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "lock").write_text("x")
    (tmp_path / "README.md").write_text("# a model card, edited after saving")
    (tmp_path / "LICENSE").write_text("terms")
    (tmp_path / "samples.png").write_bytes(b"png")
    assert weights_revision(tmp_path) == first
    (tmp_path / "tokenizer" / "merges.txt").write_text("a c\n")  # vocabulary files are not card files
    assert weights_revision(tmp_path) != first
    (tmp_path / "tokenizer" / "merges.txt").write_text("a b\n")
    (tmp_path / "unet" / "config.json").write_text('{"a": 2}')
    second = weights_revision(tmp_path)
    assert second != first
    (tmp_path / "unet" / "weights.safetensors").write_bytes(b"0" * 11)
    assert weights_revision(tmp_path) not in (first, second)


# --- per-sample guidance --------------------------------------------------------------------------


def test_guidance_scales_multiply_each_sample_by_its_own_scale():
    scales = GuidanceScales([1.5, 4.0])
    assert scales > 1  # the stock pipelines' switch for classifier-free guidance
    x = torch.ones(2, 3, 4, 4)
    assert torch.equal(scales * x, torch.stack([torch.full((3, 4, 4), 1.5), torch.full((3, 4, 4), 4.0)]))
    half = scales * torch.ones(2, 5, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half[:, 0].tolist() == [1.5, 4.0]
    with pytest.raises(ValueError):
        scales * torch.ones(3, 4)
    with pytest.raises(TypeError):
        scales * 2.0


# --- Stable Diffusion -----------------------------------------------------------------------------


def test_image_generator_shape_dtype_and_determinism(image_gen, run_dir):
    out = image_gen.generate([A, B])
    assert out.shape == (2, 12, 12, 3) and out.dtype == np.uint8
    assert image_gen.sample_shape == (12, 12, 3) and image_gen.modality == "image"
    assert out.std() > 5  # an image, not a constant
    assert torch.get_num_threads() == THREADS
    assert np.array_equal(image_gen.generate([A, B]), out)
    reloaded = load("stable_diffusion", run_dir)
    assert np.array_equal(reloaded.generate([A, B]), out)
    assert image_gen.weights == "tiny" and image_gen.revision == weights_revision(
        resolve_weights(config("stable_diffusion"), run_dir)[0]
    )
    assert image_gen.flagged == []


def test_image_generator_default_resolution_is_the_models_own(run_dir):
    gen = load("stable_diffusion", run_dir, image_size=32, resolution=None)
    assert gen.resolution == 32  # 16x16 latents x VAE scale factor 2
    assert gen.raw_call([A]).shape == (1, 3, 32, 32)


def test_image_batch_gives_each_sample_as_generated_alone(image_gen):
    both = image_gen.raw_call([A, B])
    alone = torch.cat([image_gen.raw_call([A]), image_gen.raw_call([B])])
    assert torch.allclose(both, alone, rtol=0, atol=BATCH_ATOL), (both - alone).abs().max()
    pixels = image_gen.generate([A, B]).astype(int)
    pixels_alone = np.concatenate([image_gen.generate([A]), image_gen.generate([B])]).astype(int)
    assert np.abs(pixels - pixels_alone).max() <= 1


def test_image_per_sample_guidance_matches_the_stock_single_scale(image_gen):
    """One sample with GuidanceScales([g]) is the stock pipeline's guidance_scale=g, and the scale matters."""
    stock = image_gen.pipeline(
        prompt=[B.prompt],
        height=16,
        width=16,
        num_inference_steps=2,
        guidance_scale=B.guidance,
        generator=sample_generators([B]),
        output_type="pt",
    ).images
    assert torch.allclose(image_gen.raw_call([B]), stock, rtol=0, atol=1e-6)
    weaker = SampleSpec(**{**B.__dict__, "guidance": 2.0})
    assert (image_gen.raw_call([weaker]) - stock).abs().max() > 1e-3
    assert not np.array_equal(image_gen.generate([weaker]), image_gen.generate([B]))


def test_image_negative_prompt_is_used_for_every_sample(image_gen, run_dir):
    gen = load("stable_diffusion", run_dir, negative_prompt="blurry, low quality")
    both = gen.raw_call([A, B])
    assert torch.allclose(both[1:], gen.raw_call([B]), rtol=0, atol=BATCH_ATOL)
    assert (both - image_gen.raw_call([A, B])).abs().max() > 1e-3


def test_tiny_stable_diffusion_is_saved_without_a_safety_checker(run_dir, image_gen):
    index = json.loads((resolve_weights(config("stable_diffusion"), run_dir)[0] / "model_index.json").read_text())
    assert index["requires_safety_checker"] is False and index["safety_checker"] == [None, None]
    assert image_gen.pipeline.safety_checker is None


def test_image_seed_changes_the_sample(image_gen):
    reseeded = SampleSpec(**{**A.__dict__, "seed": 99})
    assert not np.array_equal(image_gen.generate([reseeded]), image_gen.generate([A]))


def test_image_nan_and_black_outputs_are_flagged_and_written_valid(run_dir, caplog):
    gen = load("stable_diffusion", run_dir)
    conv_out = gen.pipeline.vae.decoder.conv_out
    with torch.no_grad():  # a decoder that makes NaN, as an overflowing fp16 VAE does
        conv_out.bias.fill_(float("nan"))
    out = gen.generate([A, B])
    assert out.dtype == np.uint8 and not out.any()
    nan = "non-finite image (NaN or inf); written as black"
    assert gen.flagged == [(0, nan), (1, nan)]
    assert "sample 1" in caplog.text
    with torch.no_grad():  # a decoder that makes black images, as the safety checker does
        conv_out.weight.zero_()
        conv_out.bias.fill_(-10.0)
    gen.flagged.clear()
    assert not gen.generate([A]).any()
    assert gen.flagged == [(0, "all-black image (e.g. blanked by the safety checker)")]


# --- SpeechT5 -------------------------------------------------------------------------------------


def test_speech_generator_shape_dtype_determinism_and_batch_independence(speech_gen, run_dir):
    rng_before = torch.get_rng_state()
    out = speech_gen.generate([A, B])
    assert torch.equal(torch.get_rng_state(), rng_before)  # per-sample seeding leaves the caller's RNG alone
    assert out.shape == (2, 4000) and out.dtype == np.int16 and speech_gen.sample_rate == 16000
    assert np.count_nonzero(out, axis=1).min() > 3900  # the tiny model speaks for the whole clip
    assert np.array_equal(speech_gen.generate([A, B]), out)
    # Every utterance is generated alone, so a batch is exactly its samples.
    assert np.array_equal(np.concatenate([speech_gen.generate([A]), speech_gen.generate([B])]), out)
    assert np.array_equal(load("speecht5", run_dir).generate([A, B]), out)
    assert speech_gen.flagged == []


def test_speech_seed_and_speaker_change_the_sample(speech_gen):
    base = speech_gen.generate([A])
    # The seed drives the decoder prenet's always-on dropout.
    assert not np.array_equal(speech_gen.generate([SampleSpec(**{**A.__dict__, "seed": 99})]), base)
    assert not np.array_equal(speech_gen.generate([SampleSpec(**{**A.__dict__, "speaker": 5})]), base)


def test_speech_length_follows_config(run_dir):
    gen = load("speecht5", run_dir, seconds=0.1)
    assert gen.generate([A]).shape == (1, 1600)


def test_speakers_table_and_bad_speakers(speech_gen, run_dir, tmp_path):
    assert num_speakers(config("speecht5")) == 8 and num_speakers(config("audioldm")) == 0
    with pytest.raises(UserError, match="speaker 8.*holds 8 x-vectors"):
        speech_gen.generate([SampleSpec(**{**A.__dict__, "speaker": 8})])
    with pytest.raises(UserError, match="does not exist"):
        num_speakers(config("speecht5", speakers=tmp_path / "missing.npy"))
    narrow = tmp_path / "narrow.npy"
    np.save(narrow, np.zeros((4, 256), np.float32))
    assert num_speakers(config("speecht5", speakers=narrow)) == 4  # the width is checked against the model
    with pytest.raises(UserError, match=r"shape \(4, 256\), expected \(S, 512\)"):
        load("speecht5", run_dir, speakers=narrow)
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(512, np.float32))
    with pytest.raises(UserError, match=r"shape \(512,\)"):
        num_speakers(config("speecht5", speakers=flat))


# --- AudioLDM -------------------------------------------------------------------------------------


def test_sound_generator_shape_dtype_determinism_and_batch_independence(sound_gen, run_dir):
    out = sound_gen.generate([A, B])
    assert out.shape == (2, 4000) and out.dtype == np.int16 and sound_gen.sample_rate == 16000
    assert np.count_nonzero(out, axis=1).min() > 3000
    assert np.array_equal(sound_gen.generate([A, B]), out)
    assert np.array_equal(load("audioldm", run_dir).generate([A, B]), out)
    both = sound_gen.raw_call([A, B])
    alone = torch.cat([sound_gen.raw_call([A]), sound_gen.raw_call([B])])
    assert torch.allclose(both, alone, rtol=0, atol=BATCH_ATOL), (both - alone).abs().max()
    out_alone = np.concatenate([sound_gen.generate([A]), sound_gen.generate([B])])
    assert np.abs(out.astype(int) - out_alone.astype(int)).max() <= 1
    assert sound_gen.flagged == []


def test_sound_per_sample_guidance_changes_the_sample(sound_gen):
    weaker = SampleSpec(**{**B.__dict__, "guidance": 2.0})
    assert (sound_gen.raw_call([weaker]) - sound_gen.raw_call([B])).abs().max() > 1e-4


# --- bad input ------------------------------------------------------------------------------------


def test_missing_weights_say_how_to_provide_them(tmp_path):
    for kind in KINDS:
        cfg = config(kind, weights=str(tmp_path / "nowhere"), vocoder=str(tmp_path / "nowhere"))
        with pytest.raises(UserError, match="does not exist.*save_pretrained.*'tiny'"):
            load_generator(cfg, 12, *resolve_weights(cfg, tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="holds no model_index.json or config.json"):
        load_generator(config("stable_diffusion", weights=str(empty)), 12, empty)


def test_another_pipeline_class_is_named(run_dir):
    sound_dir = resolve_weights(config("audioldm"), run_dir)[0]
    speech_dir, vocoder_dir = resolve_weights(config("speecht5"), run_dir)
    with pytest.raises(UserError, match="holds a AudioLDMPipeline, but .* needs a StableDiffusionPipeline"):
        load_generator(config("stable_diffusion"), 12, sound_dir)
    with pytest.raises(UserError, match="holds a SpeechT5ForTextToSpeech, but .* needs a AudioLDMPipeline"):
        load_generator(config("audioldm"), 12, speech_dir)
    vocoder_error = "synth.model.vocoder: .* holds a SpeechT5ForTextToSpeech, but .* needs a SpeechT5HifiGan"
    with pytest.raises(UserError, match=vocoder_error):
        load_generator(config("speecht5"), 12, speech_dir, speech_dir)
    with pytest.raises(UserError, match="holds a SpeechT5HifiGan, but .* needs a SpeechT5ForTextToSpeech"):
        load_generator(config("speecht5"), 12, vocoder_dir, vocoder_dir)


def test_real_speecht5_weights_need_a_vocoder(run_dir):
    speech_dir = resolve_weights(config("speecht5"), run_dir)[0]
    with pytest.raises(UserError, match="synth.model.vocoder is not set"):
        resolve_weights(config("speecht5", weights=str(speech_dir)), run_dir)


def test_bad_resolution_is_a_user_error(run_dir):
    with pytest.raises(UserError, match="not a multiple of 8"):
        load("stable_diffusion", run_dir, resolution=20)


def test_unreadable_index_is_a_one_line_user_error(tmp_path):
    index = tmp_path / "broken" / "model_index.json"
    index.parent.mkdir()
    index.write_text("{not json")
    with pytest.raises(UserError) as info:
        load_generator(config("stable_diffusion", weights=str(index.parent)), 12, index.parent)
    assert "\n" not in str(info.value) and "not readable JSON" in str(info.value)

"""Stage 1: label names -> RUN/prompts.json (templates per modality, local LLM expansion)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gptfl_hpc.config import load_config, validate_config
from gptfl_hpc.errors import UserError
from gptfl_hpc.prompts import stage
from gptfl_hpc.prompts.store import load_prompts, read_prompts_file
from gptfl_hpc.prompts.templates import builtin_templates, clean
from gptfl_hpc.prompts.tiny import ensure_tiny_llm

REPO = Path(__file__).resolve().parent.parent
GENERATOR = {"image": "stable_diffusion", "speech": "speecht5", "audio": "audioldm"}
# Small and short: a tiny random LM's outputs are noise, so only the mechanics are under test.
TINY_LLM = {"path": "tiny", "batch_size": 4, "max_new_tokens": 8, "require_label": False}


def make_config(run_dir: Path, labels=("airplane", "dog"), modality: str = "image", seed: int = 0, **prompts: Any):
    return validate_config({
        "run_dir": str(run_dir),
        "seed": seed,
        "labels": {"source": "list", "names": list(labels)},
        "synth": {"model": {"kind": GENERATOR[modality]}},
        "prompts": prompts,
    })


def written(run_dir: Path) -> dict:
    return json.loads((run_dir / "prompts.json").read_text())


# --------------------------------------------------------------------------- templates


def test_builtin_templates_follow_the_paper_per_modality(tmp_path):
    image = written(_run(make_config(tmp_path / "image")))
    assert image["prompts"]["airplane"][:3] == ["a photo of airplane", "a drawing of airplane", "a painting of airplane"]
    assert len(image["prompts"]["dog"]) == 10 and image["provenance"]["per_class"] == 10
    assert image["sources"]["dog"][0] == "template:a photo of {label}"

    flowers = written(_run(make_config(tmp_path / "flowers", labels=["pink primrose"], domain="flower")))
    assert flowers["prompts"]["pink primrose"][:2] == ["a flower photo of pink primrose", "a flower drawing of pink primrose"]

    audio = written(_run(make_config(tmp_path / "audio", labels=["crackling_fire"], modality="audio")))
    assert audio["prompts"]["crackling_fire"] == [
        "a sound of crackling fire", "crackling fire",
        "crackling fire in a studio", "crackling fire in the field", "crackling fire at home", "crackling fire in an office",
        "a sound of crackling fire in a studio", "a sound of crackling fire in the field",
        "a sound of crackling fire at home", "a sound of crackling fire in an office",
    ]

    speech = written(_run(make_config(tmp_path / "speech", labels=["yes", "house"], modality="speech")))
    assert speech["prompts"]["yes"] == ["yes", "yes.", "yes!", "yes?", "yes..."]
    assert speech["provenance"] == {
        "modality": "speech", "templates": ["{label}", "{label}.", "{label}!", "{label}?", "{label}..."],
        "llm": None, "seed": 0, "per_class": 5,
    }
    assert speech["labels"] == ["yes", "house"]


def test_user_templates_come_after_builtins_deduplicated_case_insensitively(tmp_path):
    config = make_config(tmp_path, templates=["A PHOTO OF {label}", "{label} on a {{table}}"], per_class=11)
    prompts = written(_run(config))
    assert prompts["prompts"]["dog"][-1] == "dog on a {table}"
    assert prompts["sources"]["dog"][-1] == "template:{label} on a {{table}}"
    assert "a photo of dog" in prompts["prompts"]["dog"] and "A PHOTO OF dog" not in prompts["prompts"]["dog"]

    only_mine = written(_run(make_config(tmp_path / "mine", builtin=False, templates=["a cute {label}"])))
    assert only_mine["prompts"] == {"airplane": ["a cute airplane"], "dog": ["a cute dog"]}

    # Enough templates: the LLM is not loaded, and the file says no prompt came from one.
    few = written(_run(make_config(tmp_path / "few", per_class=3, llm={**TINY_LLM, "kind": "causal"})))
    assert few["prompts"]["dog"] == ["a photo of dog", "a drawing of dog", "a painting of dog"]
    assert few["provenance"]["llm"] is None and few["provenance"]["per_class"] == 3


@pytest.mark.parametrize("template, problem", [
    ("a photo", "has no {label} placeholder"),
    ("{foo} of {label}", "uses {foo}"),
    ("a photo of {label!r}", "conversion or spec"),
    ("a photo of {label", "unbalanced"),
    ("  ", "is empty"),
])
def test_bad_template_is_one_config_error(tmp_path, template, problem):
    with pytest.raises(UserError, match="prompts.templates") as error:
        make_config(tmp_path, templates=[template])
    assert problem in str(error.value) and "\n" not in str(error.value)


def test_clean_keeps_text_only():
    assert clean(' "Large  commercial\tairplane\x00 in the\ufffd blue sky." ') == "Large commercial airplane in the blue sky."


# --------------------------------------------------------------------------- LLM expansion


@pytest.mark.parametrize("kind, model_class", [("seq2seq", "T5ForConditionalGeneration"), ("causal", "GPT2LMHeadModel")])
def test_llm_expansion_fills_each_class_after_the_templates(tmp_path, kind, model_class):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    config = make_config(tmp_path / "run", per_class=13, llm={**TINY_LLM, "kind": kind})
    rng_before = torch.get_rng_state()
    result = stage.run(config)
    assert torch.equal(torch.get_rng_state(), rng_before)  # seeding happens in a forked RNG
    doc = written(config.run_dir)
    assert result["from_templates"] == 20 and result["from_llm"] == 6
    for label in ("airplane", "dog"):
        prompts, sources = doc["prompts"][label], doc["sources"][label]
        assert len(prompts) == 13 and len({p.casefold() for p in prompts}) == 13
        assert [s.startswith("template:") for s in sources] == [True] * 10 + [False] * 3
    llm = doc["provenance"]["llm"]
    assert (llm["path"], llm["kind"], llm["class"]) == ("tiny", kind, model_class)
    assert "_ _ _ {label} _ _ _" in llm["query"] if kind == "causal" else llm["query"] == "{label}"

    # The same model, loaded from its saved directory and sampled directly with the class's seed,
    # gives the class's first LLM prompts.
    directory = ensure_tiny_llm(kind, tmp_path / "tiny")
    model_class_auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    model = model_class_auto.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert type(model).__name__ == model_class
    inputs = tokenizer([llm["query"].format(label="dog")], return_tensors="pt")
    torch.manual_seed(stage.sample_seed(0, 1, 0))
    output = model.generate(**inputs, do_sample=True, num_return_sequences=4, max_new_tokens=8, temperature=1.0,
                            top_p=0.95, top_k=50, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    if kind == "causal":
        output = output[:, inputs["input_ids"].shape[1]:]
    texts = [clean(t.strip().split("\n", 1)[0]) for t in tokenizer.batch_decode(output, skip_special_tokens=True)]
    assert doc["prompts"]["dog"][10:] == [t for t in texts if t][:3]


def test_tiny_llm_is_built_once_and_identically(tmp_path):
    first = ensure_tiny_llm("seq2seq", tmp_path / "a")
    second = ensure_tiny_llm("seq2seq", tmp_path / "b")
    weights = sorted(p.name for p in first.iterdir())
    assert "config.json" in weights and "model.safetensors" in weights and "tokenizer.json" in weights
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in weights)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_llm("seq2seq", first) == first and (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_same_config_gives_identical_bytes_and_reruns_are_skipped(tmp_path):
    configs = [make_config(tmp_path / name, per_class=12, llm={**TINY_LLM, "kind": "causal"}) for name in ("a", "b")]
    for config in configs:
        stage.run(config)
    first, second = [(c.run_dir / "prompts.json").read_bytes() for c in configs]
    assert first == second

    stamp = (configs[0].run_dir / "prompts.json").stat().st_mtime_ns
    again = stage.run(configs[0])
    assert again["skipped"] and (configs[0].run_dir / "prompts.json").stat().st_mtime_ns == stamp

    other_seed = make_config(tmp_path / "c", seed=1, per_class=12, llm={**TINY_LLM, "kind": "causal"})
    stage.run(other_seed)
    assert written(other_seed.run_dir)["prompts"]["dog"][10:] != json.loads(first)["prompts"]["dog"][10:]


def test_unreachable_per_class_names_the_class_and_the_fixes(tmp_path):
    config = make_config(tmp_path / "templates", per_class=11)
    with pytest.raises(UserError, match="class 'airplane' has 10 unique template prompts but prompts.per_class is 11"):
        stage.run(config)
    assert not config.run_dir.exists()

    # A tiny random model never writes this label, so require_label keeps none of its outputs.
    llm = {**TINY_LLM, "require_label": True}
    config = make_config(tmp_path / "llm", labels=["zyzzyva"], per_class=11, max_attempts=2, llm=llm)
    with pytest.raises(UserError) as error:
        stage.run(config)
    message = str(error.value)
    assert "class 'zyzzyva' has 10 unique prompts of the 11 asked" in message
    assert "after 2 LLM attempts" in message and "prompts.max_attempts" in message and "require_label: false" in message
    assert not (config.run_dir / "prompts.json").exists() and not (config.run_dir / "config.sha256").exists()


def _save_config(directory: Path, content: dict, weights: bool = True) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(content))
    if weights:
        (directory / "model.safetensors").write_bytes(b"")
    return directory


def test_llm_directory_that_is_not_a_language_model_is_named(tmp_path):
    def problem(path: Path, kind: str = "seq2seq") -> str:
        config = make_config(tmp_path / "run", per_class=12, llm={"path": str(path), "kind": kind})
        with pytest.raises(UserError) as error:
            stage.check(config)
        return str(error.value)

    with pytest.raises(UserError, match="prompts.llm.path .* does not exist"):
        make_config(tmp_path / "run", per_class=12, llm={"path": str(tmp_path / "nowhere")})
    bert = _save_config(tmp_path / "bert", {"model_type": "bert", "architectures": ["BertForMaskedLM"]})
    assert "holds a bert model (BertForMaskedLM), which is not a causal language model" in problem(bert, "causal")
    encoder = _save_config(tmp_path / "t5enc", {"model_type": "t5", "architectures": ["T5EncoderModel"]})
    assert "holds a t5 model (T5EncoderModel), which is not a seq2seq" in problem(encoder)
    gpt2 = _save_config(tmp_path / "gpt2", {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    assert problem(gpt2).endswith("set prompts.llm.kind: causal")
    pipeline = tmp_path / "sd"
    pipeline.mkdir()
    (pipeline / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    assert "holds a diffusers StableDiffusionPipeline, not a language model" in problem(pipeline)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    assert "holds no config.json (found: notes.txt)" in problem(empty)
    unweighted = _save_config(tmp_path / "noweights", {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"]}, weights=False)
    assert "no weights" in problem(unweighted)


# --------------------------------------------------------------------------- the file the synth stage reads


def test_load_prompts_for_the_synth_stage(tmp_path):
    config = make_config(tmp_path)
    with pytest.raises(UserError, match=r"prompts.json not found; run `gptfl prompts CONFIG` first"):
        load_prompts(config.run_dir, ["airplane", "dog"])
    _run(config)
    loaded = load_prompts(config.run_dir, ["airplane", "dog"])
    assert list(loaded) == ["airplane", "dog"] and loaded["dog"][0] == "a photo of dog"
    assert read_prompts_file(config.run_dir).hash == stage.prompts_identity(config, ["airplane", "dog"], "image")
    with pytest.raises(UserError, match=r"made for other labels \(lacks \['cat'\]\)"):
        load_prompts(config.run_dir, ["airplane", "dog", "cat"])
    path = config.run_dir / "prompts.json"
    path.write_text(path.read_text()[:100])
    with pytest.raises(UserError, match="is not valid JSON; delete it and run `gptfl prompts CONFIG` again"):
        load_prompts(config.run_dir, ["airplane", "dog"])


def test_edited_label_file_is_noticed(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("airplane\ndog\n")
    data = {"run_dir": str(tmp_path / "run"), "labels": {"source": "file", "path": str(labels)}}
    stage.run(validate_config(data))
    labels.write_text("airplane\ndog\ncat\n")  # same config, other labels
    with pytest.raises(UserError, match="was made for other labels or prompt settings; use a new run_dir"):
        stage.run(validate_config(data))


# --------------------------------------------------------------------------- command line


def gptfl(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "gptfl_hpc", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_quickstart_prompts_command_writes_prompts_json(tmp_path, quickstart_config):
    proc = gptfl("prompts", str(quickstart_config), f"run_dir={tmp_path / 'run'}", "--executor", "inline")
    assert proc.returncode == 0, proc.stderr
    doc = written(tmp_path / "run")
    config = load_config(quickstart_config)
    first_template = builtin_templates(config.synth.model.modality, config.prompts.domain)[0]
    assert doc["labels"] == config.labels.load() and len(doc["labels"]) == 10
    assert doc["prompts"]["digit five"][0] == first_template.format(label="digit five")
    assert json.loads(proc.stdout[proc.stdout.index("{"):])["classes"] == 10


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, quickstart_config):
    bad_template = tmp_path / "bad.yaml"
    bad_template.write_text(quickstart_config.read_text() + "prompts:\n  templates: ['a photo of a dog']\n")
    bert = _save_config(tmp_path / "bert", {"model_type": "bert", "architectures": ["BertForMaskedLM"]})
    cases = [
        ([str(bad_template)], "has no {label} placeholder"),
        ([str(quickstart_config), "prompts.per_class=0"], "prompts.per_class"),
        ([str(quickstart_config), "prompts.per_class=11", "synth.model.kind=stable_diffusion"],
         "class 'digit zero' has 10 unique template prompts"),
        ([str(quickstart_config), "prompts.per_class=12", f"prompts.llm.path={bert}"], "holds a bert model (BertForMaskedLM)"),
    ]
    for args, message in cases:
        proc = gptfl("prompts", *args, f"run_dir={tmp_path / 'run'}", "--executor", "inline")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("gptfl: error: ") and message in proc.stderr
        assert not (tmp_path / "run").exists()


def _run(config):
    stage.run(config)
    return config.run_dir

"""The demo generator: its recipe reads no dataset, a short training through the same code saves a
pipeline that synthesis loads, and the shipped folder verifies and draws digits that a model
pretrained on them recognises in scikit-learn's handwritten digits."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.generators import GeneratorConfig, SampleSpec, check_weights, load_generator, resolve_weights
from gptfl_hpc.synth.generators.weights import DEMO_WEIGHTS, weights_revision

REPO = Path(__file__).resolve().parent.parent
RECIPE = sorted((REPO / "gptfl_hpc" / "demo_generator").glob("*.py")) + [REPO / "gptfl_hpc" / "commands" / "demo_generator.py"]
#: Imports that would let the recipe see client data: the project's dataset readers, scikit-learn
#: (whose digits are the quickstart's clients) and dataset downloaders.
FORBIDDEN = ("gptfl_hpc.data", "sklearn", "torchvision.datasets", "datasets", "tensorflow_datasets")
#: What a running training must never have loaded: the project's dataset readers and the module
#: that holds scikit-learn's digits (torchvision and scikit-learn themselves come with diffusers).
LOADED_FORBIDDEN = ("gptfl_hpc.data", "sklearn.datasets")
MAX_BYTES = 10 * 1024 * 1024


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_recipe_imports_no_dataset_reader():
    assert len(RECIPE) >= 5
    reading = {path.name: sorted(name for name in imported_modules(path)
                                 if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN))
               for path in RECIPE}
    assert reading == {path.name: [] for path in RECIPE}


def start_training(out: Path) -> subprocess.Popen:
    """The training ``gptfl demo-generator train`` runs, for a few steps in a fresh interpreter."""
    script = (
        "import json, sys\n"
        "from gptfl_hpc.demo_generator.settings import TrainSettings\n"
        "from gptfl_hpc.demo_generator.train import train\n"
        f"train({str(out)!r}, TrainSettings(steps=3, vae_steps=2, glyphs=30))\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({LOADED_FORBIDDEN!r}))))\n"
    )
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish_training(proc: subprocess.Popen) -> list[str]:
    """The dataset modules the training's interpreter had loaded by the end."""
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def folder_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_short_training_saves_the_same_pipeline_twice_and_synthesis_loads_it(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    trainings = [start_training(first), start_training(second)]  # side by side, pinned to 2 threads each
    assert finish_training(trainings[0]) == []  # no dataset reader was even imported
    finish_training(trainings[1])
    assert folder_digest(first) == folder_digest(second)
    assert json.loads((first / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    assert not list(first.rglob("*.bin")) and len(list(first.rglob("*.safetensors"))) == 3

    config = GeneratorConfig(weights=str(first), steps=2, num_threads=1, device="cpu")
    weights, vocoder = resolve_weights(config, tmp_path)
    check_weights(config, weights, vocoder)
    images = load_generator(config, 32, weights).generate([SampleSpec(0, 3, "a photo of digit three", 5, 3.0)])
    assert images.shape == (1, 32, 32, 3) and images.dtype == np.uint8


def test_training_refuses_an_existing_folder(tmp_path):
    from gptfl_hpc.cli import main

    assert main(["demo-generator", "train", str(tmp_path)]) == UserError.exit_code
    assert main(["demo-generator", "train", str(tmp_path / "new"), "--steps", "0"]) == UserError.exit_code
    assert main(["demo-generator", "train", str(tmp_path / "new"), "--batch-size", "0"]) == UserError.exit_code
    assert not (tmp_path / "new").exists()


def test_the_shipped_generator_is_named_demo_loads_and_verifies(tmp_path):
    config = GeneratorConfig(weights="demo", steps=4, num_threads=1, device="cpu")
    weights, vocoder = resolve_weights(config, tmp_path)
    assert weights == DEMO_WEIGHTS and vocoder is None
    check_weights(config, weights, vocoder)
    files = [p for p in DEMO_WEIGHTS.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    card = (DEMO_WEIGHTS / "README.md").read_text(encoding="utf-8")
    assert "gptfl demo-generator train" in card and "synth.model.weights: demo" in card

    generator = load_generator(config, 32, weights)
    assert generator.revision == weights_revision(DEMO_WEIGHTS) and generator.resolution == 8
    specs = [SampleSpec(i, i, f"a photo of digit {name}", 100 + i, 3.0)
             for i, name in enumerate("zero one two three four five six seven eight nine".split())]
    images = generator.generate(specs)
    assert images.shape == (10, 32, 32, 3) and not generator.flagged
    # Dark ink on white paper, as the digits are stored: light on the whole, each with dark strokes
    # and white paper.
    grey = images.mean(axis=-1).reshape(10, -1)
    assert grey.mean() > 128 and (grey.min(axis=1) < 80).all() and (grey.max(axis=1) > 200).all()


def test_demo_weights_are_a_stable_diffusion_pipeline_only(tmp_path):
    with pytest.raises(UserError, match="'demo' is a text-to-image Stable Diffusion pipeline"):
        resolve_weights(GeneratorConfig(kind="audioldm", weights="demo"), tmp_path)


# The quickstart itself runs on the shipped generator: tests/test_pipeline.py checks what it carries
# into the federated model (synthetic-only accuracy far above chance, GPT-FL ahead after a round).

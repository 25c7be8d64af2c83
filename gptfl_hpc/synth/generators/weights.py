"""Where a generator's weights are, whether they hold the expected class, and their fingerprint."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

from gptfl_hpc.errors import UserError
from gptfl_hpc.layout import RunLayout
from gptfl_hpc.synth.generators.config import GeneratorConfig
from gptfl_hpc.synth.generators.registry import SUPPORTED_CLASSES
from gptfl_hpc.synth.generators.saved import read_json as _read_json
from gptfl_hpc.synth.generators.saved import saved_class
from gptfl_hpc.synth.tiny import VOCODER_SUBDIR, ensure_tiny

#: How a user gets weights, appended to every "missing weights" message.
HOW_TO_PROVIDE = (
    "point it at a local directory written by save_pretrained (for example one made with "
    "`huggingface-cli download <repo> --local-dir DIR`), or set it to 'tiny' for a tiny random model "
    "or 'demo' for the shipped demo generator (stable_diffusion)"
)

#: ``synth.model.weights: demo``: the small Stable Diffusion trained on printed digits that ships
#: with the package (see its README.md and ``gptfl demo-generator train``).
DEMO = "demo"
DEMO_WEIGHTS = Path(__file__).resolve().parents[2] / "assets" / "demo_generator"

#: Files whose content enters the fingerprint: configs and tokenizer vocabularies, never weights.
FINGERPRINTED_SUFFIXES = {".json", ".txt", ".model"}
#: A model card and its pictures describe weights without being part of them: editing the card
#: must not make the same weights look like others.
CARD_SUFFIXES = {".md", ".png", ".jpg", ".jpeg", ".gif", ".webp"}


def resolve_weights(config: GeneratorConfig, run_dir: Path) -> tuple[Path, Optional[Path]]:
    """The absolute weights directory and, for SpeechT5, the vocoder directory.

    ``tiny`` builds (once, race-free) ``run_dir/weights/tiny-<kind>``; the tiny SpeechT5 keeps its
    HiFi-GAN in a ``vocoder`` subfolder, used unless ``synth.model.vocoder`` names another one.
    ``demo`` is the shipped demo generator, a Stable Diffusion pipeline.
    """
    generator = config.generator
    if config.weights == DEMO:
        if config.kind != "stable_diffusion":
            raise UserError(
                f"synth.model.weights: 'demo' is a text-to-image Stable Diffusion pipeline, not a {config.kind} "
                "model; set synth.model.kind=stable_diffusion, or use 'tiny' or a local directory"
            )
        weights, tiny_vocoder = DEMO_WEIGHTS, None
    elif config.weights == "tiny":
        weights = ensure_tiny(config.kind, RunLayout(Path(run_dir).resolve()).weights / f"tiny-{config.kind}")
        tiny_vocoder = weights / VOCODER_SUBDIR if generator.needs_vocoder else None
    else:
        weights = Path(config.weights).expanduser().resolve()
        tiny_vocoder = None
    if not generator.needs_vocoder:
        return weights, None
    if config.vocoder is not None:
        return weights, Path(config.vocoder).expanduser().resolve()
    if tiny_vocoder is None:
        raise UserError(
            f"synth.model.vocoder is not set: SpeechT5 weights {weights} need a HiFi-GAN vocoder; set "
            "synth.model.vocoder to a local SpeechT5HifiGan directory "
            "(e.g. a download of microsoft/speecht5_hifigan)"
        )
    return weights, tiny_vocoder


VOCODER_CLASS = "SpeechT5HifiGan"


def check_weights(config: GeneratorConfig, weights_dir: Path, vocoder_dir: Optional[Path]) -> None:
    """Refuse missing or wrong weights before any job starts (reads only small index files)."""
    require_class(weights_dir, config.generator.saved_classes)
    require_components(weights_dir)
    config.generator.check_saved(config, weights_dir)
    if vocoder_dir is not None:
        require_class(vocoder_dir, VOCODER_CLASS, key="synth.model.vocoder")


def require_supported(directory: Path) -> None:
    """Raise the one-line reason ``synth.model.kind: auto`` cannot tell the family of ``directory``."""
    require_class(directory, tuple(SUPPORTED_CLASSES.split(", ")))


def require_components(directory: Path) -> None:
    """Refuse a pipeline whose ``model_index.json`` names a component that is not saved beside it:
    each needs its folder with a config file (``config.json``, ``scheduler_config.json``, ...)."""
    index = directory / "model_index.json"
    if not index.is_file():  # a single model: its config.json was found by require_class
        return
    for name, entry in sorted(_read_json(index).items()):
        # Components are [library, class]; [null, null] marks one saved without (no safety checker).
        if name.startswith("_") or not isinstance(entry, list) or None in entry:
            continue
        folder = directory / name
        if not folder.is_dir() or not any(folder.glob("*config.json")):
            raise UserError(
                f"synth.model.weights: {index} names the {entry[-1]} '{name}', but {folder} holds no config file; "
                f"the download is incomplete: {HOW_TO_PROVIDE}"
            )


def require_class(directory: Path, expected: str | tuple[str, ...], key: str = "synth.model.weights") -> None:
    """Raise a one-line ``UserError`` unless ``directory`` holds a saved ``expected`` (pipeline or model)."""
    accepted = (expected,) if isinstance(expected, str) else tuple(expected)
    expected = " or ".join(accepted)
    if not directory.exists():
        raise UserError(f"{key}: {directory} does not exist; {HOW_TO_PROVIDE}")
    if not directory.is_dir():
        raise UserError(f"{key}: {directory} is a file, not a model directory; {HOW_TO_PROVIDE}")
    found = saved_class(directory)
    if found is None:
        raise UserError(
            f"{key}: {directory} holds no model_index.json or config.json, so it is not a saved {expected}; "
            f"{HOW_TO_PROVIDE}"
        )
    if found not in accepted and len(accepted) > 2:  # kind auto: any supported class
        raise UserError(
            f"{key}: {directory} holds a {found}, but synth.model.kind needs one of the supported classes: "
            f"{', '.join(accepted)}; point it at weights of one of them"
        )
    if found not in accepted:
        raise UserError(
            f"{key}: {directory} holds a {found}, but synth.model.kind needs a {expected}; "
            f"point it at a {expected} directory, or change synth.model.kind"
        )


def weights_revision(*directories: Path) -> str:
    """A short fingerprint of weights folders: every file's relative path and size, plus the
    content of the small config and vocabulary files. Cheap (never reads the GB-sized weights),
    and it changes whenever a model is re-saved with another config or other weights' sizes; the
    model card (README, licence, pictures) is left out."""
    digest = hashlib.sha256()
    for directory in directories:
        directory = Path(directory)
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            relative = path.relative_to(directory)
            if any(part.startswith(".") for part in relative.parts):  # download caches, lock files
                continue
            if path.suffix.lower() in CARD_SUFFIXES or path.name.upper().startswith(("LICENSE", "LICENCE")):
                continue
            digest.update(f"{relative.as_posix()}\0{path.stat().st_size}\0".encode())
            if path.suffix in FINGERPRINTED_SUFFIXES and path.stat().st_size <= 1 << 20:
                digest.update(path.read_bytes())
        digest.update(b"\1")
    return digest.hexdigest()[:16]

"""Prompt templates per modality, following the GPT-FL code's prompt styles.

* image: the paper's styles "a photo / drawing / painting ... of {label}"; a domain word narrows
  them for one-domain datasets ("a flower photo of {label}" for Flowers102, "a food photo of ..."
  for Food-101).
* audio (AudioLDM): "a sound of {label}", the bare label, and the paper's multi-domain variants
  "{label} in a studio / in the field / at home / in an office".
* speech (SpeechT5 speaks the text): the keyword itself, as in the paper's Speech Commands code,
  with punctuation variants that change prosody but add no other words to a one-second clip.

A template holds exactly one kind of placeholder, ``{label}``; ``{{`` and ``}}`` are literal braces.
"""

from __future__ import annotations

import string
import unicodedata
from typing import Optional, Sequence

MODALITIES = ("image", "speech", "audio")

#: The image styles of the paper's multi-domain prompts, "photo" first: it is the default prompt.
IMAGE_STYLES = (
    "photo", "drawing", "painting", "sketch", "collage",
    "poster", "digital art image", "rock drawing", "stick figure", "3D rendering",
)

#: The recording places of the paper's multi-domain sound prompts.
SOUND_PLACES = ("in a studio", "in the field", "at home", "in an office")

SPEECH_TEMPLATES = ("{label}", "{label}.", "{label}!", "{label}?", "{label}...")

#: What the causal LM's fill-in-the-blank query asks it to make, per modality.
MEDIA_WORD = {"image": "image", "speech": "speech", "audio": "audio"}


def builtin_templates(modality: str, domain: Optional[str] = None) -> list[str]:
    """The built-in templates of ``modality``, in order (the first is the plain default prompt)."""
    if modality == "image":
        subject = f"{domain.strip()} " if domain else ""
        return [f"a {subject}{style} of {{label}}" for style in IMAGE_STYLES]
    if domain:
        raise ValueError(f"prompts.domain applies to image prompts only, not {modality}")
    if modality == "audio":
        return (
            ["a sound of {label}", "{label}"]
            + [f"{{label}} {place}" for place in SOUND_PLACES]
            + [f"a sound of {{label}} {place}" for place in SOUND_PLACES]
        )
    if modality == "speech":
        return list(SPEECH_TEMPLATES)
    raise ValueError(f"unknown modality '{modality}'; use one of {', '.join(MODALITIES)}")


def template_problem(template: str) -> Optional[str]:
    """Why ``template`` is not a valid template, or None when it is."""
    if not template.strip():
        return "is empty; write e.g. 'a photo of {label}'"
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError:
        return "has an unbalanced '{' or '}'; write {label} for the label and {{ or }} for a literal brace"
    names = {name for name, _, _ in fields}
    if names - {"label"}:
        unknown = ", ".join("{" + name + "}" for name in sorted(names - {"label"}))
        return f"uses {unknown}; the only placeholder is {{label}} (write {{{{ or }}}} for a literal brace)"
    if any(spec or conv for _, spec, conv in fields):
        return "formats {label} with a conversion or spec; write plain {label}"
    if not names:
        return "has no {label} placeholder; write e.g. 'a photo of {label}'"
    return None


def label_text(label: str, underscores_as_spaces: bool = True) -> str:
    """The label as prompt text: ESC-50's ``crackling_fire`` reads ``crackling fire``."""
    return " ".join((label.replace("_", " ") if underscores_as_spaces else label).split())


def render(template: str, text: str) -> str:
    return clean(template.format(label=text))


def clean(text: str) -> str:
    """One prompt line: control characters and undecodable bytes dropped, whitespace collapsed,
    wrapping quotes stripped (a prompt ends up in HDF5 strings and tokenizers, so it must be text)."""
    text = "".join(ch for ch in text if ch.isspace() or (ch != "\ufffd" and not unicodedata.category(ch).startswith("C")))
    return " ".join(text.split()).strip(" \"'`")


def dedupe_key(prompt: str) -> str:
    """Prompts that differ only in letter case are one prompt."""
    return prompt.casefold()


def unique_rendered(templates: Sequence[str], text: str) -> list[tuple[str, str]]:
    """``(prompt, template)`` for each template whose prompt is new (case-insensitively), in order."""
    seen: set[str] = set()
    out = []
    for template in templates:
        prompt = render(template, text)
        if prompt and dedupe_key(prompt) not in seen:
            seen.add(dedupe_key(prompt))
            out.append((prompt, template))
    return out

"""Label -> prompts with a local transformers language model, by seeded sampling.

Two kinds, as in GPT-FL:

* ``seq2seq`` (the paper's code: T5 fine-tuned on CommonGen) is fed the label as a concept set and
  writes a sentence around it.
* ``causal`` is fed the paper's fill-in-the-blank query
  (``_ _ _ airplane _ _ _ Please fill in the blank and make it as a prompt to generate the image``)
  and its continuation up to the first line break is the prompt.

Each call samples ``batch_size`` sequences in one ``generate`` call after seeding torch with a seed
the caller derives from (run seed, class, attempt), so a class's prompts never depend on the other
classes or on the batch they were drawn in.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from gptfl_hpc.errors import UserError
from gptfl_hpc.prompts.config import LLMConfig
from gptfl_hpc.prompts.templates import MEDIA_WORD, clean

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

CAUSAL_QUERY = 'Q: "_ _ _ {{label}} _ _ _" Please fill in the blank and make it as a prompt to generate the {media}.\nA:'
SEQ2SEQ_QUERY = "{label}"

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "vocab.json", "vocab.txt", "tokenizer.model")
HOW_TO_PROVIDE = "give a local directory saved with save_pretrained (config.json, weights, tokenizer), or 'tiny'"
#: Architecture names of generation heads outside the auto mappings (e.g. legacy T5WithLMHeadModel).
LM_HEAD_MARKERS = ("LMHead", "ForConditionalGeneration", "ForCausalLM")
#: Files whose content enters the fingerprint; weights enter by name and size only (they are large).
FINGERPRINTED_SUFFIXES = (".json", ".txt", ".model")


def default_query(kind: str, modality: str) -> str:
    if kind == "causal":
        return CAUSAL_QUERY.format(media=MEDIA_WORD[modality])
    return SEQ2SEQ_QUERY


# --------------------------------------------------------------------------- checking a directory


def check_model_dir(path: Path, kind: str) -> str:
    """Raise a one-line ``UserError`` unless ``path`` holds a ``kind`` LM; return its class name."""
    key = "prompts.llm.path"
    if not path.exists():
        raise UserError(f"{key} {path} does not exist; {HOW_TO_PROVIDE}")
    if not path.is_dir():
        raise UserError(f"{key} {path} is a file, not a model directory; {HOW_TO_PROVIDE}")
    index = path / "model_index.json"
    if index.is_file():
        found = _read_json(index, key).get("_class_name", "pipeline")
        raise UserError(
            f"{key} {path} holds a diffusers {found}, not a language model; point it at a "
            f"{'T5-style seq2seq' if kind == 'seq2seq' else 'causal'} LM directory"
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        names = sorted(p.name for p in path.iterdir())
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "") if names else "nothing"
        raise UserError(f"{key} {path} holds no config.json (found: {shown}); {HOW_TO_PROVIDE}")
    config = _read_json(config_file, key)
    model_type = config.get("model_type") or "unknown"
    architectures = config.get("architectures") or [config.get("_class_name") or "no architectures"]
    found = f"a {model_type} model ({architectures[0]})"
    supported = _lm_model_types()
    if not _generates(supported[kind], model_type, config.get("architectures")):
        other = "causal" if kind == "seq2seq" else "seq2seq"
        fix = (
            f"set prompts.llm.kind: {other}" if _generates(supported[other], model_type, config.get("architectures"))
            else "point it at a text-generation LM (T5-style seq2seq or a causal LM)"
        )
        raise UserError(f"{key} {path} holds {found}, which is not a {kind} language model; {fix}")
    if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in path.iterdir()):
        raise UserError(f"{key} {path} holds {found} but no weights (*.safetensors or *.bin); {HOW_TO_PROVIDE}")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(
            f"{key} {path} holds {found} but no tokenizer (tokenizer.json, spiece.model, vocab.json ...); "
            "save the model's tokenizer into the same directory with tokenizer.save_pretrained"
        )
    return supported[kind][model_type]


def _generates(classes: dict[str, str], model_type: str, architectures: Optional[list]) -> bool:
    """Whether a saved model of ``model_type`` / ``architectures`` loads as one of ``classes`` with its head.

    The model type alone is not enough: a saved ``T5EncoderModel`` or ``BertForMaskedLM`` would load
    as an LM whose generation head is freshly random.
    """
    if model_type not in classes:
        return False
    if not architectures:
        return True
    lm_heads = set(classes.values())
    return any(a in lm_heads or any(m in a for m in LM_HEAD_MARKERS) for a in architectures)


def _lm_model_types() -> dict[str, dict[str, str]]:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    return {"seq2seq": dict(MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES), "causal": dict(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)}


def _read_json(path: Path, key: str) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{key}: {path} is not readable JSON; save the model again with save_pretrained") from None
    return content if isinstance(content, dict) else {}


def fingerprint(path: Path) -> str:
    """A short identity of a model directory: config and tokenizer contents, weight names and sizes."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        name = file.relative_to(path).as_posix()
        if any(part.startswith(".") for part in name.split("/")):  # caches, staging files
            continue
        digest.update(name.encode() + b"\0")
        if file.suffix in FINGERPRINTED_SUFFIXES:
            digest.update(hashlib.sha256(file.read_bytes()).digest())
        else:
            digest.update(str(file.stat().st_size).encode())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- sampling


class LocalLM:
    """A loaded LM that samples prompts for one label per call."""

    def __init__(self, path: Path, config: LLMConfig, query: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        self.config = config
        self.kind = config.kind
        self.query = query
        if config.device == "cuda" and not torch.cuda.is_available():
            raise UserError("prompts.llm.device is cuda but no GPU is visible; set prompts.llm.device: auto or cpu")
        use_gpu = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if use_gpu else "cpu")
        dtype = {
            "auto": torch.bfloat16 if self.device.type == "cuda" else torch.float32,
            "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
        }[config.dtype]
        model_class = AutoModelForSeq2SeqLM if self.kind == "seq2seq" else AutoModelForCausalLM
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = model_class.from_pretrained(path, dtype=dtype).to(self.device).eval()
        except (OSError, ValueError, KeyError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"prompts.llm.path {path}: cannot load the {self.kind} model ({reason}); {HOW_TO_PROVIDE}"
            ) from None
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.tokenizer.eos_token_id
        log.info("prompts: loaded %s (%s) from %s on %s", type(self.model).__name__, self.kind, path, self.device)

    def sample(self, label_text: str, seed: int) -> list[str]:
        """``batch_size`` cleaned outputs for ``label_text`` (empty ones dropped), in sampling order."""
        import torch

        query = self.query.format(label=label_text)
        inputs = self.tokenizer([query], return_tensors="pt").to(self.device)
        forked = [self.device.index or 0] if self.device.type == "cuda" else []
        # Seeding inside fork_rng leaves the caller's random streams untouched.
        with torch.random.fork_rng(devices=forked, device_type=self.device.type), torch.inference_mode():
            torch.manual_seed(seed)
            output = self.model.generate(
                **inputs,
                do_sample=True,
                num_return_sequences=self.config.batch_size,
                max_new_tokens=self.config.max_new_tokens,
                temperature=self.config.temperature,
                top_p=self.config.top_p,
                top_k=self.config.top_k,
                pad_token_id=self.pad_token_id,
            )
        if self.kind == "causal":
            output = output[:, inputs["input_ids"].shape[1]:]
        texts = self.tokenizer.batch_decode(output, skip_special_tokens=True)
        return [prompt for prompt in (self._clean(text) for text in texts) if prompt]

    def _clean(self, text: str) -> str:
        if self.kind == "causal":  # the answer is the first line; a causal LM keeps writing after it
            text = text.strip().split("\n", 1)[0]
        return clean(text)


def load_lm(config: LLMConfig, modality: str, tiny_dir: Optional[Path]) -> tuple[LocalLM, dict]:
    """The LM and its provenance; ``tiny_dir`` is where a tiny model is built when ``path`` is 'tiny'."""
    from gptfl_hpc.prompts.config import TINY

    if config.path == TINY:
        from gptfl_hpc.prompts.tiny import ensure_tiny_llm

        path = ensure_tiny_llm(config.kind, tiny_dir)
    else:
        path = Path(config.path).expanduser()
        check_model_dir(path, config.kind)
    query = config.query or default_query(config.kind, modality)
    lm = LocalLM(path, config, query)
    provenance = {
        "path": config.path,
        "kind": config.kind,
        "class": type(lm.model).__name__,
        "revision": config.revision or fingerprint(path),
        "query": query,
        "batch_size": config.batch_size,
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k,
        "require_label": config.require_label,
    }
    return lm, provenance

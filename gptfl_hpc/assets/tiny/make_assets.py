"""Rebuild the tiny tokenizer and x-vector files shipped beside this script.

    python gptfl_hpc/assets/tiny/make_assets.py

The files are committed, so nothing runs this at install or test time. Every output is a pure
function of this script (fixed corpus, fixed seed), so rerunning it reproduces the same bytes.

* ``clip/vocab.json``, ``clip/merges.txt``: byte-level BPE in CLIP's format (every byte, with and
  without the ``</w>`` end-of-word suffix, plus the two specials); no merges, so text is split
  into characters. Used by the tiny Stable Diffusion text encoder.
* ``roberta/vocab.json``, ``roberta/merges.txt``: byte-level BPE in RoBERTa's format, for the tiny
  CLAP text encoder of AudioLDM.
* ``speecht5/spm_char.model``: a character-level SentencePiece model with SpeechT5's special ids
  (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3).
* ``xvectors.npy``: 8 speaker x-vectors of width 512, float32, the shape of CMU ARCTIC x-vectors.
"""

from __future__ import annotations

import io
import json
import string
from pathlib import Path

import numpy as np
import sentencepiece as spm

HERE = Path(__file__).resolve().parent
NUM_SPEAKERS = 8
XVECTOR_DIM = 512
SEED = 0


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, shared by CLIP and RoBERTa."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def byte_alphabet() -> list[str]:
    table = bytes_to_unicode()
    return [table[b] for b in range(256)]


def write_clip(directory: Path) -> None:
    alphabet = byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    write_bpe(directory, {t: i for i, t in enumerate(tokens)})


def write_roberta(directory: Path) -> None:
    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + byte_alphabet() + ["<mask>"]
    write_bpe(directory, {t: i for i, t in enumerate(tokens)})


def write_bpe(directory: Path, vocab: dict[str, int]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")


def write_speecht5(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    # One line per character class, so the character model covers every one of them.
    corpus = [
        string.ascii_lowercase,
        string.ascii_uppercase,
        string.digits,
        ".,;:!?'\"-()",
        "the quick brown fox jumps over the lazy dog",
        "a recording of someone saying yes, no, up, down, left, right, on, off, stop, go",
    ]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        model_type="char",
        vocab_size=len(set("".join(corpus).replace(" ", ""))) + 5,  # characters + "▁" + four specials
        character_coverage=1.0,
        normalization_rule_name="identity",
        bos_id=0,
        pad_id=1,
        eos_id=2,
        unk_id=3,
        num_threads=1,
        minloglevel=2,
    )
    (directory / "spm_char.model").write_bytes(model.getvalue())


def write_xvectors(path: Path) -> None:
    rng = np.random.default_rng(SEED)
    vectors = rng.normal(0.0, 0.05, size=(NUM_SPEAKERS, XVECTOR_DIM)).astype(np.float32)
    np.save(path, vectors)


def main() -> None:
    write_clip(HERE / "clip")
    write_roberta(HERE / "roberta")
    write_speecht5(HERE / "speecht5")
    write_xvectors(HERE / "xvectors.npy")


if __name__ == "__main__":
    main()

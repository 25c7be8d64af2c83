"""Tiny, randomly initialised language models of the real classes, for tests and the quickstart.

``ensure_tiny_llm("seq2seq" | "causal", directory)`` builds a ``T5ForConditionalGeneration`` or a
``GPT2LMHeadModel`` from a small config with a fixed seed, saves it with ``save_pretrained`` and
renames the folder into place, so it is loaded back through the same ``from_pretrained(<dir>)``
path as real weights. The tokenizers are shipped in ``gptfl_hpc/assets/tiny/{t5,gpt2}``; they were
made once by ``python -m gptfl_hpc.prompts.tiny --write-assets`` (a unigram sentencepiece model
for T5, a byte-level BPE for GPT-2, both trained on the small corpus below).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Union

from gptfl_hpc.durable import atomic_directory

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "tiny"
TOKENIZER_DIRS = {"seq2seq": ASSETS / "t5", "causal": ASSETS / "gpt2"}
SEED = 0
MAX_POSITIONS = 256

# Sentences in the style of the prompts, with the label words of the bundled examples.
CORPUS = """
a photo of an airplane flying in the blue sky above the clouds
a large commercial airplane taking off from a busy airport runway
a red automobile parked on a quiet street next to a tall building
a small bird sitting on a branch of a green tree in the garden
a cat sleeping on a soft pillow near the window at home
a young deer standing in a snowy forest at dawn
a happy dog running on the beach with a ball in its mouth
a green frog resting on a leaf beside a calm pond
a brown horse galloping across a wide open field
a white ship sailing on the ocean under a bright sun
a heavy truck driving along a dusty mountain road
a flower photo of a pink primrose with yellow petals
a drawing of a sunflower in a painting style
a sketch of a rose on paper with a pencil
a collage poster of a tiger lily and an orchid
a digital art image of a water lily on a lake
a rock drawing of a stick figure and a 3D rendering of a lotus
a sound of a dog barking in the field
the sound of rain falling on the roof of an old house
a crackling fire in a studio with a crying baby
a clock tick at home and keyboard typing in an office
a church bell ringing while a rooster crows in the morning
the wind blowing through the trees and sea waves on the shore
yes no up down left right on off stop go
zero one two three four five six seven eight nine
backward forward follow learn visual wow bed bird cat dog house tree marvin sheila happy
handwritten digit zero written with black ink on white paper
a picture of the digit seven drawn by hand
please fill in the blank and make it as a prompt to generate the image
please fill in the blank and make it as a prompt to generate the audio
please fill in the blank and make it as a prompt to generate the speech
people walking in the city street during a rainy evening
children playing with a kite in the park on a windy day
a close up photo of a colorful butterfly on a purple flower
an old man reading a book under a lamp in the library
two horses and a cow eating grass on a farm near the river
a blurry photo of a car in the night with bright lights
a bright photo of a boat in the harbor at sunset
a dark photo of a cat with green eyes
a cartoon of a friendly robot waving its hand
"""


def ensure_tiny_llm(kind: str, directory: Union[str, Path]) -> Path:
    """A complete tiny ``kind`` model in ``directory``; built once, reused when already there."""
    if kind not in TOKENIZER_DIRS:
        raise ValueError(f"unknown tiny LLM kind '{kind}'; use one of {sorted(TOKENIZER_DIRS)}")
    directory = Path(directory)
    if (directory / "config.json").is_file():  # the folder appears whole (rename) or not at all
        return directory

    def build(staging: Path) -> None:
        model, tokenizer = _build(kind)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    atomic_directory(directory, build)
    return directory


def _build(kind: str):
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_DIRS[kind])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        if kind == "seq2seq":
            config = T5Config(
                vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                num_heads=4, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                decoder_start_token_id=tokenizer.pad_token_id,
            )
            model = T5ForConditionalGeneration(config)
        else:
            eos = tokenizer.eos_token_id
            config = GPT2Config(
                vocab_size=len(tokenizer), n_positions=MAX_POSITIONS, n_embd=32, n_layer=2, n_head=4,
                bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
            )
            model = GPT2LMHeadModel(config)
    return model.eval(), tokenizer


# --------------------------------------------------------------------------- tokenizer assets


def write_tokenizer_assets(root: Path = ASSETS) -> None:
    """Train the tiny tokenizers on ``CORPUS`` and write them under ``root`` (run once)."""
    import sentencepiece as spm
    from tokenizers import ByteLevelBPETokenizer
    from transformers import T5Tokenizer

    sentences = [line.strip() for line in CORPUS.strip().splitlines()]

    proto = io.BytesIO()
    # T5's id layout: pad 0, eos 1, unk 2, no bos. Identity normalisation needs no precompiled charsmap.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=proto, vocab_size=200, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, normalization_rule_name="identity",
        num_threads=1, minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    # Shipped as tokenizer.json: transformers reads it without protobuf, which spiece.model needs.
    T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=MAX_POSITIONS).save_pretrained(root / "t5")

    gpt2 = root / "gpt2"
    gpt2.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(sentences, vocab_size=400, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False)
    bpe.save_model(str(gpt2))
    special = "<|endoftext|>"
    config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": MAX_POSITIONS,
              "bos_token": special, "eos_token": special, "unk_token": special}
    (gpt2 / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-assets", action="store_true", help="(re)train the shipped tiny tokenizers")
    if parser.parse_args().write_assets:
        write_tokenizer_assets()

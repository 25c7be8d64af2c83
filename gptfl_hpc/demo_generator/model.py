"""The demo generator's components: the real Stable Diffusion classes at toy size for 8 x 8 images.

* ``CLIPTokenizer`` over a vocabulary of its own: every byte (so any prompt tokenizes) plus whole
  words for the prompt templates' words and the digit names, so "a sketch of digit seven" is
  seven tokens and the label is one of them.
* ``CLIPTextModel``: two layers, 64 wide.
* ``AutoencoderKL`` with one level, so latents are 8 x 8 like the images (scale factor 1): it
  only has to learn a near-identity code, which it does in a few hundred steps.
* ``UNet2DConditionModel``: two levels (8 x 8, 4 x 4), cross-attention to the prompt at 4 x 4
  and in the middle block (where each position sees most of the glyph), none at 8 x 8: cheaper.
* ``DPMSolverMultistepScheduler`` with Stable Diffusion's noise schedule, as synthesis uses.
"""

from __future__ import annotations

import json
from pathlib import Path

from gptfl_hpc.prompts.templates import builtin_templates

IMAGE_SIZE = 8
TEXT_LENGTH = 32  # tokens per prompt: the longest template prompt is 9
TEXT_WIDTH = 64
LATENT_CHANNELS = 4
NOISE_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                  "num_train_timesteps": 1000, "steps_offset": 1}

DIGIT_NAMES = "zero one two three four five six seven eight nine".split()
LABEL_NAMES = [f"digit {name}" for name in DIGIT_NAMES]


def training_prompts() -> list[list[str]]:
    """Per digit, its prompt under each of the prompts stage's built-in image templates."""
    from gptfl_hpc.prompts.templates import render

    return [[render(template, label) for template in builtin_templates("image")] for label in LABEL_NAMES]


def write_tokenizer_files(directory: Path) -> None:
    """``vocab.json`` and ``merges.txt`` in CLIP's byte-level BPE format: the byte alphabet (with
    and without the ``</w>`` end-of-word mark), the two specials, and for each prompt word a chain
    of merges that builds it left to right into one token."""
    from gptfl_hpc.assets.tiny.make_assets import byte_alphabet

    alphabet = byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet]
    merges: list[tuple[str, str]] = []
    words = sorted({word for prompts in training_prompts() for prompt in prompts for word in prompt.lower().split()
                    if word.isalpha() and len(word) > 1})
    for word in words:
        # Join the pieces the merges so far leave, left to right: later merges rank after all of
        # them, so they never change how an earlier word is split.
        pieces = bpe_pieces(word, merges)
        built = pieces[0]
        for piece in pieces[1:]:
            merges.append((built, piece))
            built += piece
            if built not in tokens:
                tokens.append(built)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                          encoding="utf-8")


def bpe_pieces(word: str, merges: list[tuple[str, str]]) -> list[str]:
    """How CLIP's byte-pair encoding splits ``word`` (ASCII letters) under ``merges``, in rank order."""
    ranks = {pair: rank for rank, pair in enumerate(merges)}
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    while len(pieces) > 1:
        pairs = [(ranks.get(pair, len(ranks)), i) for i, pair in enumerate(zip(pieces, pieces[1:]))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def build_components(scratch: Path) -> dict:
    """Freshly initialised components (call under a fixed torch seed); ``scratch`` holds the
    tokenizer files while they are read."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    write_tokenizer_files(scratch)
    tokenizer = CLIPTokenizer(str(scratch / "vocab.json"), str(scratch / "merges.txt"), model_max_length=TEXT_LENGTH)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TEXT_WIDTH,
            intermediate_size=2 * TEXT_WIDTH,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=TEXT_LENGTH,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(32,),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
        mid_block_add_attention=False,
    )
    unet = UNet2DConditionModel(
        sample_size=IMAGE_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    scheduler = DPMSolverMultistepScheduler(**NOISE_SCHEDULE, algorithm_type="dpmsolver++")
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "unet": unet, "scheduler": scheduler}

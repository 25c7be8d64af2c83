"""Tiny randomly initialised score models, saved like real ones and loaded back the same way.

Tests need a prompt-sample similarity without downloading CLIP or CLAP. A tiny model here is the
real transformers class (``CLIPModel`` with its processor, ``ClapModel`` with its processor) built
from a small config with a fixed seed, written with ``save_pretrained`` and later loaded through
the same ``from_pretrained(<dir>)`` call real weights take. The tokenizers are the tiny ones the
tiny generators use (``gptfl_hpc/assets/tiny``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from gptfl_hpc.synth.tiny_parts import TEXT_LENGTH, TINY_SEED, build_once, clip_tokenizer, roberta_tokenizer

logger = logging.getLogger(__name__)

PROJECTION_DIM = 16


def ensure_tiny_score_model(family: str, directory: Path) -> Path:
    """Build the tiny ``family`` (``clip`` or ``clap``) score model into ``directory`` unless it is there;
    concurrent callers race safely (the first rename wins, see ``synth.tiny.ensure_tiny``)."""
    directory = Path(directory)
    if build_once(directory, BUILDERS[family]):
        logger.info("built tiny %s score model in %s", family, directory)
    return directory


def build_clip(directory: Path) -> None:
    """A 2-layer CLIP with a 32x32-pixel, 8-pixel-patch vision tower and the tiny byte-level vocabulary."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = clip_tokenizer()
    torch.manual_seed(TINY_SEED)
    model = CLIPModel(
        CLIPConfig(
            text_config=dict(
                vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=TEXT_LENGTH, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            ),
            vision_config=dict(
                hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                patch_size=8,
            ),
            projection_dim=PROJECTION_DIM,
        )
    )
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)


def build_clap(directory: Path) -> None:
    """A 2-layer CLAP text tower over the tiny RoBERTa vocabulary and a small HTSAT audio tower
    reading 16-bin mel frames at 16 kHz (the shards' rate, so no resampling in tests)."""
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    tokenizer = roberta_tokenizer()
    torch.manual_seed(TINY_SEED)
    model = ClapModel(
        ClapConfig(
            text_config=dict(
                vocab_size=len(tokenizer), hidden_size=16, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=TEXT_LENGTH + tokenizer.pad_token_id + 1,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, projection_dim=PROJECTION_DIM,
            ),
            audio_config=dict(
                spec_size=64, num_mel_bins=16, window_size=4, patch_size=4, patch_embeds_hidden_size=16,
                hidden_size=32, depths=[1, 1], num_attention_heads=[2, 2], enable_fusion=False,
                projection_dim=PROJECTION_DIM,
            ),
            projection_dim=PROJECTION_DIM,
        )
    )
    extractor = ClapFeatureExtractor(feature_size=16, sampling_rate=16000, hop_length=160, fft_window_size=400,
                                     frequency_min=50, frequency_max=8000,
                                     max_length_s=2, truncation="rand_trunc", padding="repeatpad")
    processor = ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)


BUILDERS: dict[str, Callable[[Path], None]] = {"clip": build_clip, "clap": build_clap}

"""Tiny randomly initialised generators, saved like real weights and loaded back the same way.

Tests and the quickstart need every generator to run end to end without downloading anything. A
tiny model here is the real pipeline class (the same diffusers / transformers classes as the
published checkpoints) built from a small config with a fixed seed, written with
``save_pretrained`` and later loaded through the very ``from_pretrained(<dir>)`` call that real
weights take. Nothing downstream knows it is tiny.

The tokenizer, SentencePiece and x-vector files they need ship in ``gptfl_hpc/assets/tiny``.
The same seed and library versions give byte-identical files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from gptfl_hpc.synth import tiny_audio, tiny_image
from gptfl_hpc.synth.tiny_parts import (
    ASSETS,
    TEXT_LENGTH,
    TINY_SEED,
    TINY_VOCODER_INIT,
    UNET_LAYOUT,
    audioldm_scheduler,
    audioldm_vocoder,
    build_once,
    clap_text_config,
    clip_text_config,
    clip_tokenizer,
    dpm_solver_scheduler,
    image_vae,
    mel_vae,
    roberta_tokenizer,
)

logger = logging.getLogger(__name__)

TINY_XVECTORS = ASSETS / "xvectors.npy"
VOCODER_SUBDIR = "vocoder"  # speecht5: the HiFi-GAN lives beside the acoustic model


def ensure_tiny(kind: str, directory: Path) -> Path:
    """Build the tiny ``kind`` generator into ``directory`` unless it is already there.

    The build happens in a hidden sibling directory of its own that is renamed into place, so
    readers see either nothing or a complete model; of concurrent callers (array tasks starting
    together) the first rename wins and the others discard their identical copies.
    """
    if kind not in BUILDERS:
        raise ValueError(f"no tiny model for generator kind {kind!r}; known: {sorted(BUILDERS)}")
    directory = Path(directory)
    if build_once(directory, BUILDERS[kind]):
        logger.info("built tiny %s generator in %s", kind, directory)
    return directory


# --- Stable Diffusion -------------------------------------------------------------------------


def build_stable_diffusion(directory: Path) -> None:
    """A two-level UNet on 4-channel latents, a VAE with scale factor 2 (so 32x32 images from
    16x16 latents), a CLIP text encoder over a byte-level vocabulary; no safety checker."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = clip_tokenizer()
    torch.manual_seed(TINY_SEED)
    unet = UNet2DConditionModel(sample_size=16, **UNET_LAYOUT, cross_attention_dim=32, attention_head_dim=2)
    vae = image_vae(4)
    text_encoder = CLIPTextModel(clip_text_config(tokenizer))
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=dpm_solver_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)


# --- SpeechT5 ---------------------------------------------------------------------------------


def build_speecht5(directory: Path) -> None:
    """A 2+2-layer SpeechT5 text-to-speech model over a character vocabulary, 80 mel bins and
    512-wide x-vectors (the real model's interface), and a HiFi-GAN with the real hop of 256
    samples at 16 kHz in ``directory/vocoder``."""
    import torch
    from transformers import (
        SpeechT5Config,
        SpeechT5FeatureExtractor,
        SpeechT5ForTextToSpeech,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        SpeechT5Processor,
        SpeechT5Tokenizer,
    )

    tokenizer = SpeechT5Tokenizer(str(ASSETS / "speecht5" / "spm_char.model"), model_max_length=TEXT_LENGTH)
    processor = SpeechT5Processor(feature_extractor=SpeechT5FeatureExtractor(), tokenizer=tokenizer)
    torch.manual_seed(TINY_SEED)
    model = SpeechT5ForTextToSpeech(
        SpeechT5Config(
            vocab_size=len(tokenizer),
            hidden_size=32,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_layers=2,
            decoder_attention_heads=2,
            decoder_ffn_dim=64,
            num_mel_bins=80,
            reduction_factor=2,
            speech_decoder_prenet_layers=2,
            speech_decoder_prenet_units=32,
            speech_decoder_postnet_layers=2,
            speech_decoder_postnet_units=32,
            speaker_embedding_dim=int(np.load(TINY_XVECTORS, mmap_mode="r").shape[1]),
            max_text_positions=TEXT_LENGTH,
            max_speech_positions=1024,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.bos_token_id,
        )
    )
    # A random stop-token head would end each utterance after a random first frame. Biasing it
    # off lets the tiny model speak until the generator's length cap, i.e. for the whole clip.
    with torch.no_grad():
        model.speech_decoder_postnet.prob_out.bias.fill_(-20.0)
    vocoder = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=80,
            sampling_rate=16000,
            upsample_initial_channel=32,
            upsample_rates=[4, 4, 4, 4],
            upsample_kernel_sizes=[8, 8, 8, 8],
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3]],
            initializer_range=TINY_VOCODER_INIT,
        )
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    vocoder.save_pretrained(directory / VOCODER_SUBDIR)


# --- AudioLDM ---------------------------------------------------------------------------------


def build_audioldm(directory: Path) -> None:
    """AudioLDM's components at toy width: a UNet conditioned on a CLAP text embedding (class
    embedding, as in AudioLDM), a 1-channel mel VAE with scale factor 2, and a HiFi-GAN with
    AudioLDM's hop of 160 samples at 16 kHz over 16 mel bins; a DDIM scheduler as shipped."""
    import torch
    from diffusers import AudioLDMPipeline, UNet2DConditionModel
    from transformers import ClapTextModelWithProjection

    tokenizer = roberta_tokenizer()
    projection_dim = 8
    mel_bins = 16
    torch.manual_seed(TINY_SEED)
    unet = UNet2DConditionModel(
        sample_size=32,
        **UNET_LAYOUT,
        cross_attention_dim=(8, 16),
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=projection_dim,
        class_embeddings_concat=True,
    )
    vae = mel_vae()
    text_encoder = ClapTextModelWithProjection(clap_text_config(tokenizer, projection_dim, num_hidden_layers=2))
    vocoder = audioldm_vocoder(mel_bins)
    pipeline = AudioLDMPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=audioldm_scheduler(),
        vocoder=vocoder,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)


# --- VITS -------------------------------------------------------------------------------------


def build_vits(directory: Path) -> None:
    """A one-layer VITS (MMS-TTS's class) over a character vocabulary at 16 kHz, with a
    HiFi-GAN hop of 64 samples and a stochastic duration predictor, as MMS-TTS has."""
    import json
    import tempfile

    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    characters = ["<pad>", "<unk>", " ", "'", *"abcdefghijklmnopqrstuvwxyz0123456789"]
    with tempfile.TemporaryDirectory() as scratch:
        vocab = Path(scratch) / "vocab.json"
        vocab.write_text(json.dumps({c: i for i, c in enumerate(characters)}), encoding="utf-8")
        # Characters as they are (MMS-TTS's non-English models): phonemizing needs espeak.
        tokenizer = VitsTokenizer(str(vocab), phonemize=False, add_blank=True, normalize=True)
    torch.manual_seed(TINY_SEED)
    model = VitsModel(
        VitsConfig(
            vocab_size=len(characters),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            ffn_dim=32,
            flow_size=16,
            spectrogram_bins=17,
            upsample_initial_channel=16,
            upsample_rates=[4, 4, 4],
            upsample_kernel_sizes=[8, 8, 8],
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3]],
            duration_predictor_filter_channels=16,
            duration_predictor_num_flows=2,
            prior_encoder_num_flows=1,
            prior_encoder_num_wavenet_layers=1,
            posterior_encoder_num_wavenet_layers=1,
            depth_separable_num_layers=1,
            sampling_rate=16000,
            pad_token_id=0,
        )
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


BUILDERS: dict[str, Callable[[Path], None]] = {
    "stable_diffusion": build_stable_diffusion,
    "sdxl": tiny_image.build_sdxl,
    "sd3": tiny_image.build_sd3,
    "pixart": tiny_image.build_pixart,
    "flux": tiny_image.build_flux,
    "speecht5": build_speecht5,
    "vits": build_vits,
    "audioldm": build_audioldm,
    "audioldm2": tiny_audio.build_audioldm2,
    "stable_audio": tiny_audio.build_stable_audio,
}

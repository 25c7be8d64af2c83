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

from gptfl_hpc.durable import atomic_directory
from gptfl_hpc.synth import tiny_audio, tiny_image

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "tiny"
TINY_XVECTORS = ASSETS / "xvectors.npy"
TINY_SEED = 0
TEXT_LENGTH = 77  # tokens per prompt, as in Stable Diffusion and AudioLDM
VOCODER_SUBDIR = "vocoder"  # speecht5: the HiFi-GAN lives beside the acoustic model
# HiFi-GAN's default init (std 0.01) makes a random vocoder output ~1e-8, i.e. silence in int16;
# this std gives audible noise of roughly unit scale, as a trained vocoder would.
TINY_VOCODER_INIT = 0.15


def ensure_tiny(kind: str, directory: Path) -> Path:
    """Build the tiny ``kind`` generator into ``directory`` unless it is already there.

    The build happens in a hidden sibling directory of its own that is renamed into place, so
    readers see either nothing or a complete model; of concurrent callers (array tasks starting
    together) the first rename wins and the others discard their identical copies.
    """
    if kind not in BUILDERS:
        raise ValueError(f"no tiny model for generator kind {kind!r}; known: {sorted(BUILDERS)}")
    directory = Path(directory)
    if directory.is_dir():
        return directory

    def build(staging: Path) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
            BUILDERS[kind](staging)

    if atomic_directory(directory, build):
        logger.info("built tiny %s generator in %s", kind, directory)
    return directory


# --- Stable Diffusion -------------------------------------------------------------------------


def build_stable_diffusion(directory: Path) -> None:
    """A two-level UNet on 4-channel latents, a VAE with scale factor 2 (so 32x32 images from
    16x16 latents), a CLIP text encoder over a byte-level vocabulary; no safety checker."""
    import torch
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(ASSETS / "clip", model_max_length=TEXT_LENGTH)
    torch.manual_seed(TINY_SEED)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=TEXT_LENGTH,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        algorithm_type="dpmsolver++",
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
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
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import (
        ClapTextConfig,
        ClapTextModelWithProjection,
        RobertaTokenizer,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
    )

    tokenizer = RobertaTokenizer.from_pretrained(ASSETS / "roberta", model_max_length=TEXT_LENGTH)
    projection_dim = 8
    mel_bins = 16
    torch.manual_seed(TINY_SEED)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=(8, 16),
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=projection_dim,
        class_embeddings_concat=True,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
    )
    text_encoder = ClapTextModelWithProjection(
        ClapTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
            projection_dim=projection_dim,
            max_position_embeddings=TEXT_LENGTH + tokenizer.pad_token_id + 1,  # RoBERTa positions start after pad
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    vocoder = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=mel_bins,
            sampling_rate=16000,
            upsample_initial_channel=16,
            upsample_rates=[10, 4, 4],
            upsample_kernel_sizes=[20, 8, 8],
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3]],
            normalize_before=False,
            initializer_range=TINY_VOCODER_INIT,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.0015,
        beta_end=0.0195,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline = AudioLDMPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler, vocoder=vocoder
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

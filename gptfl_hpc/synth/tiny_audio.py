"""Tiny randomly initialised text-to-audio pipelines beyond AudioLDM: AudioLDM 2 and Stable Audio
Open, each its real diffusers class built from a small config (see ``tiny``)."""

from __future__ import annotations

from pathlib import Path

from gptfl_hpc.synth.tiny_image import WIDTH, t5_encoder, t5_tokenizer
from gptfl_hpc.synth.tiny_parts import (
    TEXT_LENGTH,
    TINY_SEED,
    UNET_LAYOUT,
    audioldm_scheduler,
    audioldm_vocoder,
    clap_text_config,
    mel_vae,
    roberta_tokenizer,
)

#: Stable Audio's tiny DiT sees this many latent frames, the longest clip it makes: 512 frames x
#: a hop of 32 samples at 16 kHz = 1.024 s.
STABLE_AUDIO_FRAMES = 512


def build_stable_audio(directory: Path) -> None:
    """Stable Audio Open's shape at toy width: a T5 text encoder, seconds-start/-total conditioning,
    a DiT over Oobleck latents (hop 32, stereo) and the EDM DPM-Solver++ scheduler it ships with."""
    import torch
    from diffusers import AutoencoderOobleck, EDMDPMSolverMultistepScheduler, StableAudioDiTModel, StableAudioPipeline
    from diffusers.pipelines.stable_audio.modeling_stable_audio import StableAudioProjectionModel

    tokenizer = t5_tokenizer()
    torch.manual_seed(TINY_SEED)
    latent_channels = 4
    conditioning = 8
    transformer = StableAudioDiTModel(
        sample_size=STABLE_AUDIO_FRAMES,
        in_channels=latent_channels,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        num_key_value_attention_heads=1,
        out_channels=latent_channels,
        cross_attention_dim=16,
        time_proj_dim=8,
        global_states_input_dim=2 * conditioning,  # seconds start and total, concatenated
        cross_attention_input_dim=conditioning,
    )
    vae = AutoencoderOobleck(
        encoder_hidden_size=4,
        downsampling_ratios=[2, 4, 4],
        channel_multiples=[1, 2, 2],
        decoder_channels=4,
        decoder_input_channels=latent_channels,
        audio_channels=2,
        sampling_rate=16000,
    )
    projection_model = StableAudioProjectionModel(
        text_encoder_dim=WIDTH, conditioning_dim=conditioning, min_value=0, max_value=512
    )
    scheduler = EDMDPMSolverMultistepScheduler(
        solver_order=2, prediction_type="v_prediction", sigma_data=1.0, sigma_schedule="exponential"
    )
    pipeline = StableAudioPipeline(
        vae=vae,
        text_encoder=t5_encoder(tokenizer),
        projection_model=projection_model,
        tokenizer=tokenizer,
        transformer=transformer,
        scheduler=scheduler,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)


def build_audioldm2(directory: Path) -> None:
    """AudioLDM 2's components at toy width: CLAP (text and audio towers) and T5 encoders, the
    projection into GPT-2, which generates the 8 conditioning vectors, a UNet cross-attending to
    them and to T5, a 1-channel mel VAE and a HiFi-GAN with AudioLDM's hop of 160 at 16 kHz."""
    import torch
    from diffusers import AudioLDM2Pipeline
    from diffusers.pipelines.audioldm2.modeling_audioldm2 import (
        AudioLDM2ProjectionModel,
        AudioLDM2UNet2DConditionModel,
    )
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, GPT2Config, GPT2LMHeadModel

    tokenizer = roberta_tokenizer()
    tokenizer_2 = t5_tokenizer()
    clap_dim, gpt_dim, mel_bins = 8, 16, 16
    torch.manual_seed(TINY_SEED)
    text_encoder = ClapModel(
        ClapConfig(
            text_config=clap_text_config(tokenizer, clap_dim, num_hidden_layers=1),
            audio_config=ClapAudioConfig(
                spec_size=8,
                window_size=4,
                num_mel_bins=8,
                intermediate_size=37,
                depths=[1, 1],
                num_attention_heads=[1, 1],
                num_hidden_layers=1,
                hidden_size=16,
                projection_dim=clap_dim,
                patch_size=2,
                patch_stride=2,
                patch_embed_input_channels=4,
            ),
            projection_dim=clap_dim,
        )
    )
    text_encoder_2 = t5_encoder(tokenizer_2)
    language_model = GPT2LMHeadModel(
        GPT2Config(
            n_embd=gpt_dim, n_head=2, n_layer=1, vocab_size=8, n_positions=TEXT_LENGTH + 16,
            bos_token_id=7, eos_token_id=7,
        )
    )
    language_model.config.max_new_tokens = 8  # the conditioning vectors GPT-2 generates
    projection_model = AudioLDM2ProjectionModel(
        text_encoder_dim=clap_dim, text_encoder_1_dim=WIDTH, langauge_model_dim=gpt_dim
    )
    unet = AudioLDM2UNet2DConditionModel(
        sample_size=32, **UNET_LAYOUT, cross_attention_dim=([None, gpt_dim, WIDTH], [None, gpt_dim, WIDTH])
    )
    vae = mel_vae()
    vocoder = audioldm_vocoder(mel_bins)
    pipeline = AudioLDM2Pipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        projection_model=projection_model,
        language_model=language_model,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        feature_extractor=ClapFeatureExtractor(),
        unet=unet,
        scheduler=audioldm_scheduler(),
        vocoder=vocoder,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)

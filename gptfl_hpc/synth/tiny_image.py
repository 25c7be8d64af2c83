"""Tiny randomly initialised text-to-image pipelines beyond Stable Diffusion 1.x/2.x: SDXL, SD3,
PixArt and FLUX, each its real diffusers class built from a small config (see ``tiny``).

They share a CLIP tokenizer over a byte-level vocabulary and a T5 tokenizer shipped in
``gptfl_hpc/assets/tiny``; latents are 16x16 for 32x32 images (VAE scale factor 2).
"""

from __future__ import annotations

from pathlib import Path

from gptfl_hpc.synth.tiny_parts import (
    ASSETS,
    TINY_SEED,
    UNET_LAYOUT,
    clip_text_config,
    clip_tokenizer,
    dpm_solver_scheduler,
    image_vae,
)

T5_LENGTH = 32  # tokens per T5 prompt: real models take 120-512; the tiny ones need few
WIDTH = 32  # text embedding width of every tiny text encoder


def t5_tokenizer():
    from transformers import T5Tokenizer

    return T5Tokenizer.from_pretrained(ASSETS / "t5", model_max_length=T5_LENGTH)


def clip_text_encoder(tokenizer, projection: bool, hidden: int = WIDTH):
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    config = clip_text_config(tokenizer, hidden, projection_dim=hidden)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def t5_encoder(tokenizer):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=WIDTH,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
    )


def build_sdxl(directory: Path) -> None:
    """SDXL's two CLIP encoders (the second with a projection, whose pooled output and the
    micro-conditioning sizes feed the UNet's added embedding)."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    tokenizer = clip_tokenizer()
    torch.manual_seed(TINY_SEED)
    text_encoder = clip_text_encoder(tokenizer, projection=False)
    text_encoder_2 = clip_text_encoder(tokenizer, projection=True)
    time_ids_dim = 8
    unet = UNet2DConditionModel(
        sample_size=16,
        **UNET_LAYOUT,
        cross_attention_dim=2 * WIDTH,  # both encoders' hidden states, concatenated
        attention_head_dim=2,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_ids_dim,
        projection_class_embeddings_input_dim=WIDTH + 6 * time_ids_dim,  # pooled text + 6 size numbers
        transformer_layers_per_block=1,
    )
    pipeline = StableDiffusionXLPipeline(
        vae=image_vae(4),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=dpm_solver_scheduler(),
        add_watermarker=False,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)


def build_sd3(directory: Path) -> None:
    """SD3's MMDiT over 16-channel latents, two CLIP encoders with projections and a T5 encoder."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer = clip_tokenizer()
    tokenizer_3 = t5_tokenizer()
    torch.manual_seed(TINY_SEED)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=WIDTH,
        caption_projection_dim=16,
        pooled_projection_dim=2 * WIDTH,  # both CLIP encoders' pooled outputs, concatenated
        pos_embed_max_size=16,
    )
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=image_vae(16, shift_factor=0.0609, scaling_factor=1.5305),
        text_encoder=clip_text_encoder(tokenizer, projection=True),
        tokenizer=tokenizer,
        text_encoder_2=clip_text_encoder(tokenizer, projection=True),
        tokenizer_2=tokenizer,
        text_encoder_3=t5_encoder(tokenizer_3),
        tokenizer_3=tokenizer_3,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)


def build_pixart(directory: Path) -> None:
    """PixArt-Sigma's DiT (learned variance: 8 output channels for 4 latent ones) over a T5 encoder."""
    import torch
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    tokenizer = t5_tokenizer()
    torch.manual_seed(TINY_SEED)
    transformer = PixArtTransformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        cross_attention_dim=16,
        caption_channels=WIDTH,
        norm_num_groups=4,
    )
    pipeline = PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=t5_encoder(tokenizer),
        vae=image_vae(4),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(),
    )
    pipeline.save_pretrained(directory, safe_serialization=True)


def build_flux(directory: Path) -> None:
    """FLUX.1 dev's shape: a double- and a single-stream block over 2x2-packed 4-channel latents,
    embedded guidance, a CLIP encoder for the pooled prompt and T5 for the sequence."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tokenizer = clip_tokenizer()
    tokenizer_2 = t5_tokenizer()
    torch.manual_seed(TINY_SEED)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels x 2x2 packing
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=WIDTH,
        pooled_projection_dim=WIDTH,
        guidance_embeds=True,
        axes_dims_rope=(2, 2, 4),
    )
    pipeline = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=image_vae(4, shift_factor=0.0, scaling_factor=1.0),
        text_encoder=clip_text_encoder(tokenizer, projection=False),
        tokenizer=tokenizer,
        text_encoder_2=t5_encoder(tokenizer_2),
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)

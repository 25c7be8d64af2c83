"""Tiny randomly initialised text-to-image pipelines beyond Stable Diffusion 1.x/2.x: SDXL, SD3,
PixArt and FLUX, each its real diffusers class built from a small config (see ``tiny``).

They share a CLIP tokenizer over a byte-level vocabulary and a T5 tokenizer shipped in
``gptfl_hpc/assets/tiny``; latents are 16x16 for 32x32 images (VAE scale factor 2).
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "tiny"
TINY_SEED = 0
CLIP_LENGTH = 77  # tokens per CLIP prompt, as in every family here
T5_LENGTH = 32  # tokens per T5 prompt: real models take 120-512; the tiny ones need few
WIDTH = 32  # text embedding width of every tiny text encoder


def clip_tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(ASSETS / "clip", model_max_length=CLIP_LENGTH)


def t5_tokenizer():
    from transformers import T5Tokenizer

    return T5Tokenizer.from_pretrained(ASSETS / "t5", model_max_length=T5_LENGTH)


def clip_text_encoder(tokenizer, projection: bool, hidden: int = WIDTH):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=CLIP_LENGTH,
        projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
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


def vae(latent_channels: int, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=32,
        **extra,
    )


def build_sdxl(directory: Path) -> None:
    """SDXL's two CLIP encoders (the second with a projection, whose pooled output and the
    micro-conditioning sizes feed the UNet's added embedding)."""
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    tokenizer = clip_tokenizer()
    torch.manual_seed(TINY_SEED)
    text_encoder = clip_text_encoder(tokenizer, projection=False)
    text_encoder_2 = clip_text_encoder(tokenizer, projection=True)
    time_ids_dim = 8
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * WIDTH,  # both encoders' hidden states, concatenated
        attention_head_dim=2,
        norm_num_groups=4,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_ids_dim,
        projection_class_embeddings_input_dim=WIDTH + 6 * time_ids_dim,  # pooled text + 6 size numbers
        transformer_layers_per_block=1,
    )
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", algorithm_type="dpmsolver++", steps_offset=1
    )
    pipeline = StableDiffusionXLPipeline(
        vae=vae(4),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
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
        vae=vae(16, shift_factor=0.0609, scaling_factor=1.5305),
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
        vae=vae(4),
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
        vae=vae(4, shift_factor=0.0, scaling_factor=1.0),
        text_encoder=clip_text_encoder(tokenizer, projection=False),
        tokenizer=tokenizer,
        text_encoder_2=t5_encoder(tokenizer_2),
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)

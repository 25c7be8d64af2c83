"""What the tiny generators and tiny score models share: where their assets live, the seed, the
race-safe build into a folder, and the small components several families use alike.

Each component is built where its family's builder calls it, so the order in which parameters
are drawn from the seeded RNG, and with it every saved byte, is the builder's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from gptfl_hpc.durable import atomic_directory

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "tiny"
TINY_SEED = 0
TEXT_LENGTH = 77  # tokens per CLIP or RoBERTa prompt, as in Stable Diffusion and AudioLDM
# HiFi-GAN's default init (std 0.01) makes a random vocoder output ~1e-8, i.e. silence in int16;
# this std gives audible noise of roughly unit scale, as a trained vocoder would.
TINY_VOCODER_INIT = 0.15

#: The two-level UNet every tiny UNet family starts from (4-channel latents, one cross-attention level).
UNET_LAYOUT: dict[str, Any] = dict(
    in_channels=4,
    out_channels=4,
    layers_per_block=1,
    block_out_channels=(8, 16),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    norm_num_groups=4,
)


def build_once(directory: Path, builder: Callable[[Path], None]) -> bool:
    """Run ``builder`` into ``directory`` unless it is already there; returns whether this call built it.

    The build happens in a hidden sibling directory of its own that is renamed into place, so
    readers see either nothing or a complete model; of concurrent callers (array tasks starting
    together) the first rename wins and the others discard their identical copies. The caller's
    RNG stream is left untouched.
    """
    directory = Path(directory)
    if directory.is_dir():
        return False

    def build(staging: Path) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
            builder(staging)

    return atomic_directory(directory, build)


# --- tokenizers (no RNG) ----------------------------------------------------------------------


def clip_tokenizer():
    """CLIP's tokenizer over the tiny byte-level vocabulary."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(ASSETS / "clip", model_max_length=TEXT_LENGTH)


def roberta_tokenizer():
    """The RoBERTa tokenizer CLAP text towers read, over the tiny vocabulary."""
    from transformers import RobertaTokenizer

    return RobertaTokenizer.from_pretrained(ASSETS / "roberta", model_max_length=TEXT_LENGTH)


# --- configs and components -------------------------------------------------------------------


def clip_text_config(tokenizer, hidden: int = 32, **extra):
    """A 2-layer CLIP text tower config over ``tokenizer``."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TEXT_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def clap_text_config(tokenizer, projection_dim: int, num_hidden_layers: int):
    """A 16-wide CLAP text tower config over the RoBERTa ``tokenizer``."""
    from transformers import ClapTextConfig

    return ClapTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=37,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        projection_dim=projection_dim,
        max_position_embeddings=TEXT_LENGTH + tokenizer.pad_token_id + 1,  # RoBERTa positions start after pad
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def image_vae(latent_channels: int, **extra):
    """An RGB VAE with scale factor 2: 32x32 images, 16x16 latents."""
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


def mel_vae():
    """AudioLDM's 1-channel mel-spectrogram VAE with scale factor 2, 4 latent channels."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
    )


def audioldm_vocoder(mel_bins: int):
    """A HiFi-GAN over ``mel_bins`` mel bins with AudioLDM's hop of 160 samples at 16 kHz."""
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    return SpeechT5HifiGan(
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


def audioldm_scheduler():
    """The DDIM scheduler AudioLDM and AudioLDM 2 ship with."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.0015,
        beta_end=0.0195,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def dpm_solver_scheduler():
    """Stable Diffusion's noise schedule under DPM-Solver++ (SD 1.x and SDXL)."""
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        algorithm_type="dpmsolver++",
        steps_offset=1,
    )

"""Train the demo generator on printed digits and save it as a ``StableDiffusionPipeline`` folder.

Two phases, each from fixed seeds: the one-level VAE learns a near-identity 8 x 8 code of the
rendered glyphs; then, on the frozen encoder's latents, the UNet and the text encoder learn to
remove noise (Stable Diffusion's schedule, epsilon prediction with min-SNR weighting) from a
glyph given one of its prompts -- replaced by the empty prompt with probability
``prompt_dropout``, so classifier-free guidance has an unconditional model to push away from.
The exponential moving average of the weights is what is saved.

Everything random draws from generators seeded by ``seed``, and the thread count is pinned, so a
rerun on the same machine writes the same bytes.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gptfl_hpc.demo_generator.model import build_components, training_prompts
from gptfl_hpc.demo_generator.render import render_digits
from gptfl_hpc.demo_generator.settings import TrainSettings
from gptfl_hpc.durable import atomic_directory

logger = logging.getLogger(__name__)

MIN_SNR_GAMMA = 5.0


def glyph_images(settings: TrainSettings) -> tuple[torch.Tensor, np.ndarray]:
    """The rendered glyphs as the pipeline's images: dark ink on white, 3 channels, in [-1, 1]."""
    ink, labels = render_digits(settings.glyphs, settings.seed)
    paper = 1.0 - torch.from_numpy(ink).unsqueeze(1).repeat(1, 3, 1, 1)
    return paper * 2.0 - 1.0, labels


def train(out: Path, settings: TrainSettings = TrainSettings()) -> dict[str, Any]:
    """Train and publish the pipeline folder ``out`` (atomically); returns the training record."""
    out = Path(out)
    record: dict[str, Any] = {}

    def build(staging: Path) -> None:
        record.update(_train_into(staging, settings))

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            atomic_directory(out, build)
    finally:
        torch.set_num_threads(previous_threads)
    return record


def _train_into(directory: Path, settings: TrainSettings) -> dict[str, Any]:
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    started = time.monotonic()
    torch.manual_seed(settings.seed)
    with tempfile.TemporaryDirectory() as scratch:
        parts = build_components(Path(scratch))
    images, labels = glyph_images(settings)
    rendered = time.monotonic()
    logger.info("rendered %d glyphs in %.0f s", len(labels), rendered - started)

    vae_loss = train_vae(parts["vae"], images, settings)
    latents = encode(parts["vae"], images)
    scale = 1.0 / float(latents.std())
    parts["vae"].register_to_config(scaling_factor=scale)
    autoencoded = time.monotonic()
    logger.info("VAE: reconstruction loss %.4f after %d steps (%.0f s)", vae_loss, settings.vae_steps,
                autoencoded - rendered)

    noise_schedule = DDPMScheduler.from_config(parts["scheduler"].config)
    denoise_loss = train_denoiser(parts, latents * scale, labels, noise_schedule, settings)
    trained = time.monotonic()
    logger.info("denoiser: loss %.4f after %d steps (%.0f s)", denoise_loss, settings.steps, trained - autoencoded)

    pipeline = StableDiffusionPipeline(
        **parts, safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False
    )
    pipeline.save_pretrained(directory, safe_serialization=True)
    return {
        "settings": asdict(settings),
        "vae_reconstruction_loss": round(vae_loss, 5),
        "denoise_loss": round(denoise_loss, 5),
        "latent_scaling_factor": scale,
        "seconds": {"render": round(rendered - started, 1), "vae": round(autoencoded - rendered, 1),
                    "denoiser": round(trained - autoencoded, 1), "total": round(time.monotonic() - started, 1)},
    }


def learning_rate(step: int, settings: TrainSettings, total: int) -> float:
    """Linear warmup, then cosine decay to a tenth."""
    warmup = min(settings.warmup_steps, max(1, total // 10))
    if step < warmup:
        return settings.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return settings.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train_vae(vae, images: torch.Tensor, settings: TrainSettings) -> float:
    """Reconstruction (MSE) with a small KL term, so the code stays close to deterministic."""
    generator = torch.Generator().manual_seed(settings.seed + 1)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=settings.lr, weight_decay=0.0)
    vae.train()
    running = float("nan")
    for step in range(settings.vae_steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, settings, settings.vae_steps)
        batch = images[torch.randint(len(images), (settings.batch_size,), generator=generator)]
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample(generator=generator)).sample
        loss = F.mse_loss(reconstruction, batch) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running = loss.item() if step == 0 else 0.98 * running + 0.02 * loss.item()
        if settings.log_every and (step + 1) % settings.log_every == 0:
            logger.info("VAE step %d/%d: loss %.4f", step + 1, settings.vae_steps, running)
    vae.eval()
    return running


@torch.no_grad()
def encode(vae, images: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    return torch.cat([vae.encode(images[i : i + chunk]).latent_dist.mean for i in range(0, len(images), chunk)])


def prompt_ids(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``(10, T, L)`` of every digit's template prompts, and ``(L,)`` of the empty prompt,
    padded exactly as the pipeline pads them."""
    def ids(texts: list[str]) -> torch.Tensor:
        return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids

    return torch.stack([ids(prompts) for prompts in training_prompts()]), ids([""])[0]


def train_denoiser(parts: dict, latents: torch.Tensor, labels: np.ndarray, noise_schedule,
                   settings: TrainSettings) -> float:
    unet, text_encoder = parts["unet"], parts["text_encoder"]
    prompts, empty = prompt_ids(parts["tokenizer"])
    rng = np.random.default_rng(settings.seed + 2)
    generator = torch.Generator().manual_seed(settings.seed + 3)
    trained = [p for module in (unet, text_encoder) for p in module.parameters()]
    optimizer = torch.optim.AdamW(trained, lr=settings.lr, weight_decay=0.01)
    average = [p.detach().clone() for p in trained]
    alphas = noise_schedule.alphas_cumprod
    snr = alphas / (1.0 - alphas)
    weights = torch.clamp(snr, max=MIN_SNR_GAMMA) / snr  # min-SNR-gamma for epsilon prediction
    unet.train()
    text_encoder.train()
    running = float("nan")
    for step in range(settings.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, settings, settings.steps)
        rows = rng.integers(len(latents), size=settings.batch_size)
        templates = rng.integers(prompts.shape[1], size=settings.batch_size)
        dropped = rng.random(settings.batch_size) < settings.prompt_dropout
        ids = prompts[torch.from_numpy(labels[rows]), torch.from_numpy(templates)]
        ids[torch.from_numpy(dropped)] = empty
        clean = latents[torch.from_numpy(rows)]
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(noise_schedule.config.num_train_timesteps, (settings.batch_size,), generator=generator)
        noisy = noise_schedule.add_noise(clean, noise, timesteps)
        context = text_encoder(ids)[0]
        predicted = unet(noisy, timesteps, encoder_hidden_states=context).sample
        per_sample = F.mse_loss(predicted, noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_sample * weights[timesteps]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        decay = min(settings.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for kept, current in zip(average, trained):
                kept.lerp_(current.detach(), 1.0 - decay)
        running = loss.item() if step == 0 else 0.99 * running + 0.01 * loss.item()
        if settings.log_every and (step + 1) % settings.log_every == 0:
            logger.info("denoiser step %d/%d: loss %.4f", step + 1, settings.steps, running)
    with torch.no_grad():
        for parameter, kept in zip(trained, average):
            parameter.copy_(kept)
    unet.eval()
    text_encoder.eval()
    return running



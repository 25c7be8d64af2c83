#!/usr/bin/env python
"""Images/s and estimated MFU of a text-to-image denoising loop at production shapes, with random
weights built from config on the device (no download):

    .venv/bin/python benchmarks/bench_denoiser.py                 # SD 2.1 at 512^2 and SDXL at 1024^2
    .venv/bin/python benchmarks/bench_denoiser.py --tiny --cpu    # a seconds-long dry run of the same code

One batch is ``steps`` UNet calls on the conditional and unconditional halves (classifier-free
guidance doubles the UNet batch) plus one VAE decode, as in synthesis. FLOPs are counted once per
UNet call and VAE decode with ``torch.utils.flop_counter``; MFU = counted FLOP/s over the GPU's dense
bf16 peak (``--peak-tflops``, or read from the device name).
"""

from __future__ import annotations

import argparse
import time

import torch

#: Dense bf16 tensor-core peaks (TFLOP/s) by device-name fragment.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}

SD21_UNET = dict(
    sample_size=64,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024,
    use_linear_projection=True,
    layers_per_block=2,
)
SDXL_UNET = dict(
    sample_size=128,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(5, 10, 20),
    transformer_layers_per_block=(1, 2, 10),
    cross_attention_dim=2048,
    use_linear_projection=True,
    layers_per_block=2,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,  # 1280 pooled text + 6 x 256 size embeddings
)
VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4,
    layers_per_block=2,
)
TINY_UNET = dict(
    sample_size=8,
    block_out_channels=(8, 16),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=2,
    cross_attention_dim=32,
    norm_num_groups=4,
    layers_per_block=1,
)
TINY_VAE = dict(
    block_out_channels=(8, 16),
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    latent_channels=4,
    norm_num_groups=4,
    layers_per_block=1,
)
TEXT_TOKENS = 77


def measure(name: str, unet_config: dict, vae_config: dict, side: int, args: argparse.Namespace) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    device = torch.device("cpu" if args.cpu else "cuda")
    dtype = torch.float32 if args.cpu else torch.bfloat16
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**unet_config).to(device, dtype).eval()
    vae = AutoencoderKL(**vae_config).to(device, dtype).eval()
    if not args.cpu:
        unet.to(memory_format=torch.channels_last)
        vae.to(memory_format=torch.channels_last)
    if args.compile:
        unet.compile(dynamic=False)
    scale = 2 ** (len(vae_config["block_out_channels"]) - 1)
    batch = args.batch
    latents = torch.randn(2 * batch, 4, side // scale, side // scale, device=device, dtype=dtype)
    text = torch.randn(2 * batch, TEXT_TOKENS, unet_config["cross_attention_dim"], device=device, dtype=dtype)
    extra = {}
    if unet_config.get("addition_embed_type") == "text_time":
        pooled = unet_config["projection_class_embeddings_input_dim"] - 6 * unet_config["addition_time_embed_dim"]
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.randn(2 * batch, pooled, device=device, dtype=dtype),
            "time_ids": torch.tensor([[side, side, 0, 0, side, side]] * 2 * batch, device=device, dtype=dtype),
        }

    def one_batch() -> None:
        x = latents
        for step in range(args.steps):
            t = torch.full((2 * batch,), 999 - step * (1000 // args.steps), device=device)
            x = unet(x, t, encoder_hidden_states=text, **extra).sample
        vae.decode(x[:batch] / 0.18215)

    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            unet(latents, torch.full((2 * batch,), 500, device=device), encoder_hidden_states=text, **extra)
        unet_flops = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            vae.decode(latents[:batch])
        flops = unet_flops * args.steps + counter.get_total_flops()
        for _ in range(args.warmup):
            one_batch()
        if not args.cpu:
            torch.cuda.synchronize()
        began = time.perf_counter()
        for _ in range(args.repeats):
            one_batch()
        if not args.cpu:
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - began) / args.repeats
    images_s = batch / seconds
    line = (f"{name}: {side}x{side}, batch {batch}, {args.steps} steps (CFG: UNet batch {2 * batch}): "
            f"{images_s:.2f} images/s, {flops / seconds / 1e12:.1f} TFLOP/s counted")
    peak = args.peak_tflops or next(
        (value for key, value in PEAK_TFLOPS.items() if not args.cpu and key in torch.cuda.get_device_name()), None
    )
    if peak:
        line += f", MFU {flops / seconds / (peak * 1e12):.1%} of {peak:.0f} TFLOP/s bf16"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet (synth.model.compile)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak (default: by name)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU in fp32 (with --tiny: a dry run)")
    parser.add_argument("--tiny", action="store_true", help="tiny configs of the same classes instead")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA device; pass --cpu (with --tiny for a quick dry run)")
    if args.tiny:
        args.batch, args.steps, args.repeats, args.warmup = min(args.batch, 2), min(args.steps, 2), 1, 0
        measure("tiny UNet", TINY_UNET, TINY_VAE, 32, args)
        measure("tiny SDXL-shaped UNet", {**TINY_UNET, "addition_embed_type": "text_time",
                                          "addition_time_embed_dim": 8,
                                          "projection_class_embeddings_input_dim": 32 + 48}, TINY_VAE, 32, args)
        return
    measure("SD 2.1 UNet (865M)", SD21_UNET, VAE, 512, args)
    measure("SDXL UNet (2.6B)", SDXL_UNET, VAE, 1024, args)


if __name__ == "__main__":
    main()

"""``gptfl demo-generator train OUT [--steps N] [--seed S]``: train the demo text-to-image model.

It renders digits from the fonts bundled with matplotlib, trains the small Stable Diffusion of
``gptfl_hpc.demo_generator`` on them and writes a ``StableDiffusionPipeline`` folder to OUT, the
folder that ``synth.model.weights: demo`` names when it is the shipped one. The defaults are the
shipped model's recipe; the same arguments on the same machine write the same bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptfl_hpc.commands.common import whole_number
from gptfl_hpc.errors import UserError


_positive = whole_number(1)
_seed = whole_number(0)


def register(subparsers: argparse._SubParsersAction) -> None:
    from gptfl_hpc.demo_generator.settings import TrainSettings

    defaults = TrainSettings()
    parser = subparsers.add_parser("demo-generator", help="train the small demo text-to-image model on printed digits")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = actions.add_parser("train", help="render font digits, train, save a StableDiffusionPipeline folder to OUT")
    train.add_argument("out", help="folder to create (must not exist)")
    train.add_argument("--steps", type=_positive, default=defaults.steps,
                       help=f"denoiser training steps (default {defaults.steps})")
    train.add_argument("--vae-steps", type=_positive, default=defaults.vae_steps,
                       help=f"autoencoder training steps (default {defaults.vae_steps})")
    train.add_argument("--glyphs", type=_positive, default=defaults.glyphs,
                       help=f"rendered training images (default {defaults.glyphs})")
    train.add_argument("--batch-size", type=_positive, default=defaults.batch_size,
                       help=f"images per training step, both phases (default {defaults.batch_size})")
    train.add_argument("--seed", type=_seed, default=defaults.seed, help=f"seed of every random draw (default {defaults.seed})")
    train.add_argument("--threads", type=_positive, default=defaults.threads,
                       help=f"CPU threads; the same count gives the same bytes (default {defaults.threads})")
    train.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptfl_hpc.demo_generator.settings import TrainSettings
    from gptfl_hpc.demo_generator.train import train

    out = Path(args.out)
    if out.exists():
        raise UserError(f"{out} already exists; name a new folder for the trained generator")
    settings = TrainSettings(steps=args.steps, vae_steps=args.vae_steps, glyphs=args.glyphs,
                             batch_size=args.batch_size, seed=args.seed,
                             threads=args.threads)
    record = train(out, settings)
    print(json.dumps({"out": str(out.resolve()), **record}, indent=2))
    return 0

"""``gptfl sweep GRID.yaml``: every point of an experiment grid, with the upstream stages shared.

    gptfl sweep GRID.yaml [key=value ...] [--executor inline|local|slurm|debug] [--dry-run] [--wait]
    gptfl sweep CONFIG.yaml --axis seed=0,1,2 --axis federate.clients_per_round=5,10 [--sweep-dir DIR]

Each point is a run directory ``SWEEP_DIR/<name>`` named from its axis values. Points share the
prompts and synthesis of a shared run when they differ only in keys synthesis never reads (model,
pretrain, federate, data.partition), and its pretrained model when they differ only in federate-only
keys (federate, data.partition). On Slurm: one prompts job and one synthesis array per shared
synthesis run, one pretrain job per shared pretrain run, one chain per point (federate after its
pretrain job, the from-scratch baseline beside it, its report) and the combined report after every
point. Locally the points run one after another, each shared run before the first point that needs
it. Running it again skips what is done, waits for what is queued and resumes the rest.
``gptfl status SWEEP_DIR`` and ``gptfl report SWEEP_DIR`` read the sweep; ``docs/sweeps.md`` is the guide.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gptfl_hpc.commands.common import add_executor_arguments
from gptfl_hpc.orchestrate.sweep import submit_sweep
from gptfl_hpc.sweep import load_sweep, parse_axis_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep", help="every point of an experiment grid, upstream stages shared", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("grid", help="GRID.yaml (a base config and axes), or a config file with --axis")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="set a config value in every point")
    parser.add_argument("--axis", action="append", default=[], metavar="KEY=V1,V2",
                        help="one more axis, e.g. --axis seed=0,1,2 (repeatable)")
    parser.add_argument("--sweep-dir", type=Path, metavar="DIR", help="where the points' run directories go "
                        "(default: the grid's sweep_dir, else runs/sweeps/NAME)")
    parser.add_argument("--shared-dir", type=Path, metavar="DIR", help="where the shared upstream runs go "
                        "(default: the grid's shared_dir, else SWEEP_DIR/shared)")
    add_executor_arguments(parser)
    parser.add_argument("--wait", action="store_true", help="wait for another command using these run directories; "
                        "with --executor slurm also for every job to finish")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + ([f"launcher.executor={args.executor}"] if args.executor else [])
    axes = [parse_axis_option(text) for text in args.axis]
    sweep = load_sweep(Path(args.grid), overrides, axes, args.sweep_dir, args.shared_dir)
    return submit_sweep(sweep, dry_run=args.dry_run, wait=args.wait)

"""``gptfl validate CONFIG [overrides]``: print the resolved config, or one line saying what is wrong.

A config that still holds a ``/path/to/...`` placeholder (the paper configs' data roots and
weights) is refused with one line naming every such key. ``gptfl validate GRID.yaml`` checks every
point of a sweep grid the same way and prints the points and the runs they share.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gptfl_hpc.commands.common import add_config_arguments, config_from_args
from gptfl_hpc.config import Config, dump_yaml, placeholder_paths, read_yaml_mapping
from gptfl_hpc.errors import UserError
from gptfl_hpc.sweep import is_grid, load_sweep


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("validate", help="check a config (or a sweep grid) and print it resolved")
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def refuse_placeholders(config: Config, where: str = "config") -> None:
    found = placeholder_paths(config)
    if found:
        shown = ", ".join(f"{key} ({value})" for key, value in found)
        raise UserError(f"{where}: still a placeholder: {shown}; set each to your local copy (or override it, "
                        f"e.g. {found[0][0]}=/data/...)")


def run(args: argparse.Namespace) -> int:
    if Path(args.config).is_file() and is_grid(read_yaml_mapping(args.config, "config file")):
        return validate_grid(args)
    config = config_from_args(args)
    refuse_placeholders(config)
    labels = config.labels.load()
    print(f"# config hash {config.hash}")
    print(f"# {len(labels)} labels from {config.labels.source}: {', '.join(labels[:5])}{' ...' if len(labels) > 5 else ''}")
    print(dump_yaml(config), end="")
    return 0


def validate_grid(args: argparse.Namespace) -> int:
    sweep = load_sweep(Path(args.config), args.overrides)
    for point in sweep.points:
        refuse_placeholders(point.config, f"grid {args.config}: point {point.name}")
        point.config.labels.load()
    print(f"# grid {args.config}: {len(sweep.points)} points in {sweep.sweep_dir}")
    for run in sweep.shared.values():
        print(f"# shared {run.level} run {run.name} ({run.describe}): {len(run.points)} point(s)")
    for point in sweep.points:
        print(f"{point.name}  config hash {point.config.hash}  reads {point.pretrain}")
    return 0

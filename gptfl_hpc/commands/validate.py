"""``gptfl validate CONFIG [overrides]``: print the resolved config, or one line saying what is wrong."""

from __future__ import annotations

import argparse

from gptfl_hpc.commands.common import add_config_arguments, config_from_args
from gptfl_hpc.config import dump_yaml


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("validate", help="check a config and print it resolved")
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    labels = config.labels.load()
    print(f"# config hash {config.hash}")
    print(f"# {len(labels)} labels from {config.labels.source}: {', '.join(labels[:5])}{' ...' if len(labels) > 5 else ''}")
    print(dump_yaml(config), end="")
    return 0

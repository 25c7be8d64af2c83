"""Arguments shared by the commands that take a config: ``CONFIG [key.sub=value ...]``."""

from __future__ import annotations

import argparse
from typing import Callable, Optional

from gptfl_hpc.config import Config, load_config

EXECUTORS = ("inline", "local", "slurm", "debug")


def whole_number(minimum: int, says: str = "takes a whole number of {minimum} or more") -> Callable[[str], int]:
    """An argparse ``type`` for whole numbers of at least ``minimum``; anything else is refused with
    ``says`` (``{minimum}`` filled in) and the text given."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{says.format(minimum=minimum)}, got {text!r}")
        return value

    return parse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file, e.g. configs/quickstart.yaml")
    # default=[]: argparse would otherwise call the optional overrides required when the config is missing
    parser.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="override a config value, e.g. seed=3")


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executor", choices=EXECUTORS, help="where to run (default: launcher.executor)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run and submit nothing")


def add_job_parser(
    subparsers: argparse._SubParsersAction, name: str, help: str, description: Optional[str] = None
) -> argparse.ArgumentParser:
    """A command that submits jobs: ``CONFIG [key=value ...] [--executor] [--dry-run] [--wait]``."""
    parser = subparsers.add_parser(
        name, help=help, description=description or help, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser)
    add_executor_arguments(parser)
    parser.add_argument("--wait", action="store_true", help="wait for another command using the run_dir; "
                        "with --executor slurm also for the jobs to finish")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    if getattr(args, "executor", None):
        overrides.append(f"launcher.executor={args.executor}")
    return load_config(args.config, overrides)

"""Arguments shared by the commands that take a config: ``CONFIG [key.sub=value ...]``."""

from __future__ import annotations

import argparse

from gptfl_hpc.config import Config, load_config

EXECUTORS = ("inline", "local", "slurm", "debug")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file, e.g. configs/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override a config value, e.g. seed=3")


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executor", choices=EXECUTORS, help="where to run (default: launcher.executor)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run and submit nothing")


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    if getattr(args, "executor", None):
        overrides.append(f"launcher.executor={args.executor}")
    return load_config(args.config, overrides)

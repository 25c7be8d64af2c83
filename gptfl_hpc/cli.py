"""``gptfl``: the command line. Each subcommand lives in ``gptfl_hpc.commands``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

from gptfl_hpc import __version__
from gptfl_hpc.errors import UserError, disk_full_error
from gptfl_hpc.launch import JobFailed

#: Modules under gptfl_hpc.commands, in the order ``gptfl --help`` lists them.
COMMANDS = ("validate", "labels", "partition", "prompts", "synth", "pretrain", "federate", "run", "sweep", "status", "report", "demo_generator")


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage mistakes are one ``UserError`` line (exit 2) instead of the usage block;
    its subcommand parsers are of this class too."""

    def error(self, message: str) -> None:
        raise UserError(f"{message}; see `{self.prog} --help`")


class CommandParser(OneLineParser):
    """A subcommand's parser: ``key=value`` overrides may stand before or after the flags
    (``gptfl synth CONFIG --dry-run run_dir=X``), as with ``parse_intermixed_args``."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        nested = any(action.nargs == argparse.PARSER for action in self._get_positional_actions())
        if self._intermixing or nested:  # intermixed parsing calls back here; it cannot take subcommands
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="gptfl", description="GPT-FL on Slurm: label names -> synthetic data -> pretrained model -> federated model."
    )
    parser.add_argument("--version", action="version", version=f"gptfl-hpc {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=CommandParser)
    for name in COMMANDS:
        importlib.import_module(f"gptfl_hpc.commands.{name}").register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"gptfl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except JobFailed as exc:
        print(f"gptfl: job failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk met by this process itself, outside the durable writers
        full = disk_full_error(exc)
        if full is None:
            raise
        print(f"gptfl: error: {full}", file=sys.stderr)
        return full.exit_code


if __name__ == "__main__":
    sys.exit(main())

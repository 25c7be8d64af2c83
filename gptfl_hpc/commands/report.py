"""``gptfl report RUN``: ``RUN/report/report.md`` and PNG plots, GPT-FL against FL from scratch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptfl_hpc.rundir import load_run


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="write RUN/report/report.md with plots")
    parser.add_argument("run_dir", help="a run directory (the run_dir of a config)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from gptfl_hpc.report import make_report

    written = make_report(load_run(Path(args.run_dir)))
    print(json.dumps(written, indent=2))
    return 0

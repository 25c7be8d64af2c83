"""``gptfl report RUN``: ``RUN/report/report.md`` and PNG plots, GPT-FL against FL from scratch.

``gptfl report SWEEP_DIR`` (a ``gptfl sweep`` directory): the sweep's combined report in
``SWEEP_DIR/report/``, mean ± std over seeds per setting and method, as Markdown and LaTeX.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptfl_hpc.commands.common import whole_number
from gptfl_hpc.rundir import load_run
from gptfl_hpc.sweep import is_sweep_dir


_window = whole_number(1, "--smooth takes a number of rounds ({minimum} or more)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="write RUN/report/report.md with plots, or a sweep's combined report")
    parser.add_argument("run_dir", help="a run directory (the run_dir of a config) or a sweep directory")
    parser.add_argument("--smooth", type=_window, default=1, metavar="ROUNDS",
                        help="draw gradient diversity as a trailing mean over this many rounds (default 1: raw)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    path = Path(args.run_dir)
    if is_sweep_dir(path):
        from gptfl_hpc.sweep_report import make_sweep_report

        written = make_sweep_report(path, smooth=args.smooth)
    else:
        from gptfl_hpc.report import make_report

        written = make_report(load_run(path), smooth=args.smooth)
    print(json.dumps(written, indent=2))
    return 0

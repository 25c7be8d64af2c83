"""``gptfl status RUN``."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("status", help="what a run has done")
    parser.add_argument("run_dir")
    parser.set_defaults(func=lambda args: 0)

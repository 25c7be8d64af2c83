"""``gptfl labels``: discover the union of the clients' label names under secure aggregation.

One round (see docs/label-discovery.md)::

    gptfl labels params --expected-labels 500 --out params.json          # server
    gptfl labels keygen --client-id 3 --out keys/                        # each client
    gptfl labels encode --client-id 3 --labels-file mine.txt \\
        --private-key keys/3.key --public-keys pub/ --params params.json --out masked_3.npz
    gptfl labels reveal --client-id 3 --private-key keys/3.key \\
        --public-keys pub/ --dropped 5 --out reveal_3.json                # only if someone dropped
    gptfl labels aggregate masked_*.npz --reveals reveal_*.json \\
        --params params.json --out labels.json [--counts]                 # server

This module parses arguments and prints; the steps and the file formats are ``gptfl_hpc.labels``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gptfl_hpc.labels import iblt, steps


def _client_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"client id must be a non-negative integer, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"client id must be a non-negative integer, got {text!r}")
    return value


def _id_list(text: str) -> list[int]:
    ids = [_client_id(part.strip()) for part in text.split(",") if part.strip()]
    if not ids:
        raise argparse.ArgumentTypeError("give at least one client id, e.g. 3,5")
    return sorted(set(ids))


# --------------------------------------------------------------------------- commands


def cmd_keygen(args: argparse.Namespace) -> int:
    private_path, public_path = steps.keygen(args.out, args.client_id)
    print(f"wrote {private_path} (keep secret) and {public_path} (share with the other clients)")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    params = steps.make_params(
        args.out,
        args.expected_labels,
        seed=args.seed,
        failure_prob=args.failure_prob,
        max_label_bytes=args.max_label_bytes,
        min_cells=args.min_cells,
    )
    print(f"wrote {args.out}: {params.cells} cells x {params.columns} words for up to {args.expected_labels} labels")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    encoded = steps.encode(
        args.out, args.client_id, args.private_key, args.public_keys, args.params,
        labels=args.labels, labels_file=args.labels_file,
    )  # fmt: skip
    print(f"wrote {args.out}: {encoded.labels} labels, masked with {encoded.peers} peers")
    return 0


def cmd_reveal(args: argparse.Namespace) -> int:
    steps.reveal(args.out, args.client_id, args.private_key, args.public_keys, args.dropped)
    print(f"wrote {args.out}: seeds with dropped clients {args.dropped}")
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    union = steps.aggregate(args.out, args.masked, args.reveals or [], args.params, with_counts=args.counts)
    print(f"wrote {args.out}: {len(union.counts)} labels from {union.clients} clients ({union.dropped} dropped)")
    return 0


# --------------------------------------------------------------------------- argparse


def register(subparsers: Any) -> None:
    """Add ``labels`` with its sub-commands to ``gptfl``'s subparsers."""
    labels = subparsers.add_parser(
        "labels",
        help="discover the union of client label names (IBLT + secure aggregation)",
        description="Label-name discovery: the server learns the union of the clients' label names, not who holds which.",
    )
    commands = labels.add_subparsers(dest="labels_command", metavar="STEP", required=True)

    keygen = commands.add_parser("keygen", help="client: make a Diffie-Hellman key pair")
    keygen.add_argument("--client-id", type=_client_id, required=True)
    keygen.add_argument("--out", type=Path, required=True, help="directory for ID.key (secret, mode 600) and ID.pub")
    keygen.set_defaults(func=cmd_keygen)

    params = commands.add_parser("params", help="server: size the table and fix its hash seed")
    params.add_argument("--expected-labels", type=int, required=True, help="upper estimate of the distinct labels in the union")
    params.add_argument("--failure-prob", type=float, default=iblt.DEFAULT_FAILURE_PROB, help="target decode failure probability")
    params.add_argument("--seed", help="hash seed (default: random); use a fresh one every round")
    params.add_argument("--max-label-bytes", type=int, default=iblt.DEFAULT_MAX_LABEL_BYTES, help="longest label, UTF-8 bytes")
    params.add_argument("--min-cells", type=int, default=0, help="at least this many cells (to retry after a failed decode)")
    params.add_argument("--out", type=Path, required=True)
    params.set_defaults(func=cmd_params)

    encode = commands.add_parser("encode", help="client: encode and mask its label names")
    encode.add_argument("--client-id", type=_client_id, required=True)
    source = encode.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", help='comma-separated label names, e.g. "cat,dog"')
    source.add_argument("--labels-file", type=Path, help="UTF-8 file, one label name per line")
    encode.add_argument("--private-key", type=Path, required=True)
    encode.add_argument("--public-keys", type=Path, required=True, help="directory with every participant's .pub file")
    encode.add_argument("--params", type=Path, required=True)
    encode.add_argument("--out", type=Path, required=True)
    encode.set_defaults(func=cmd_encode)

    reveal = commands.add_parser("reveal", help="surviving client: reveal its seeds with dropped clients")
    reveal.add_argument("--client-id", type=_client_id, required=True)
    reveal.add_argument("--private-key", type=Path, required=True)
    reveal.add_argument("--public-keys", type=Path, required=True)
    reveal.add_argument("--dropped", type=_id_list, required=True, help="comma-separated ids of the clients that dropped out")
    reveal.add_argument("--out", type=Path, required=True)
    reveal.set_defaults(func=cmd_reveal)

    aggregate = commands.add_parser("aggregate", help="server: sum the masked tables and decode the label union")
    aggregate.add_argument("masked", nargs="+", metavar="MASKED", help="masked_*.npz from the clients")
    aggregate.add_argument("--reveals", nargs="+", metavar="REVEAL", help="reveal_*.json, needed when clients dropped")
    aggregate.add_argument("--params", type=Path, required=True)
    aggregate.add_argument("--out", type=Path, required=True)
    aggregate.add_argument("--counts", action="store_true", help="also write how many clients hold each label")
    aggregate.set_defaults(func=cmd_aggregate)


__all__ = ["register"]

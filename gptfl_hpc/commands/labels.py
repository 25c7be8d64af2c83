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

Every check runs before anything is written, and every file is written atomically.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from gptfl_hpc import secure_sum
from gptfl_hpc.durable import atomic_path, atomic_write_bytes, atomic_write_json
from gptfl_hpc.errors import UserError
from gptfl_hpc.prompts import iblt

PRIVATE_KEY_FORMAT = "gptfl-dh-private-key/1"
PUBLIC_KEY_FORMAT = "gptfl-dh-public-key/1"
MASKED_FORMAT = "gptfl-masked-iblt/1"
REVEAL_FORMAT = "gptfl-seed-reveal/1"


# --------------------------------------------------------------------------- parsing helpers


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


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist; check the path") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{what} {path} is not readable JSON ({exc}); regenerate it") from None


def _hex_int(value: Any, path: Path, what: str) -> int:
    try:
        return int(value, 16)
    except (TypeError, ValueError):
        raise UserError(f"{path} has no valid hex '{what}' field; regenerate it with `gptfl labels keygen`") from None


def _load_params(path: Path) -> iblt.IbltParams:
    return iblt.IbltParams.from_dict(_read_json(path, "params file"), source=f"params file {path}")


def _load_private_key(path: Path, client_id: int) -> int:
    data = _read_json(path, "private key")
    if not isinstance(data, dict) or data.get("format") != PRIVATE_KEY_FORMAT or data.get("group") != secure_sum.GROUP_NAME:
        raise UserError(f"{path} is not a {secure_sum.GROUP_NAME} private key; create one with `gptfl labels keygen`")
    if data.get("client_id") != client_id:
        raise UserError(f"{path} belongs to client {data.get('client_id')}, not --client-id {client_id}; pass that client's key")
    private = _hex_int(data.get("private"), path, "private")
    if not 2 <= private < secure_sum.MODP_2048_Q:
        raise UserError(f"{path} holds an out-of-range private key; regenerate it with `gptfl labels keygen`")
    return private


def _load_public_keys(directory: Path) -> dict[int, int]:
    """client id -> public key, from every ``*.pub`` file in ``directory``."""
    if not Path(directory).is_dir():
        raise UserError(f"public keys directory {directory} does not exist; collect every client's .pub file there")
    keys: dict[int, int] = {}
    sources: dict[int, Path] = {}
    for path in sorted(Path(directory).glob("*.pub")):
        data = _read_json(path, "public key")
        if not isinstance(data, dict) or data.get("format") != PUBLIC_KEY_FORMAT or data.get("group") != secure_sum.GROUP_NAME:
            raise UserError(f"{path} is not a {secure_sum.GROUP_NAME} public key; recreate it with `gptfl labels keygen`")
        owner = data.get("client_id")
        if not isinstance(owner, int) or isinstance(owner, bool) or owner < 0:
            raise UserError(f"{path} has no valid client_id; recreate it with `gptfl labels keygen`")
        if owner in keys:
            raise UserError(f"{sources[owner]} and {path} are both keys of client {owner}; keep one per client")
        value = _hex_int(data.get("public"), path, "public")
        secure_sum.check_public_key(value, f"client {owner} ({path})")
        keys[owner], sources[owner] = value, path
    if not keys:
        raise UserError(f"no .pub files in {directory}; collect every client's public key there")
    return keys


def _participants(client_id: int, private_key: int, public_keys: dict[int, int], directory: Path) -> list[int]:
    own = public_keys.get(client_id)
    if own is None:
        raise UserError(f"{directory} has no public key of client {client_id}; add its .pub file so every client masks with the same set")
    if own != secure_sum.public_key(private_key):
        raise UserError(f"the public key of client {client_id} in {directory} does not match its private key; redistribute {client_id}.pub")
    if len(public_keys) < 2:
        raise UserError(f"{directory} holds only client {client_id}'s key; masking needs at least two clients")
    return sorted(public_keys)


def _read_labels(args: argparse.Namespace) -> list[str]:
    """Labels from --labels "a,b" or --labels-file (one per line); trimmed, blank entries skipped."""
    if args.labels is not None:
        raw = args.labels.split(",")
        source = "--labels"
    else:
        try:
            raw = Path(args.labels_file).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise UserError(f"labels file {args.labels_file} does not exist; check the path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"labels file {args.labels_file} is not readable UTF-8 text ({exc}); fix the file") from None
        source = f"labels file {args.labels_file}"
    labels = [label.strip() for label in raw if label.strip()]
    if not labels:
        raise UserError(f"{source} holds no label names; give at least one label")
    return list(dict.fromkeys(labels))


# --------------------------------------------------------------------------- masked tables and reveals


def _masked_npz(table: np.ndarray, client_id: int, participants: list[int], params: iblt.IbltParams) -> bytes:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        format=np.array(MASKED_FORMAT),
        table=table,
        client_id=np.array(client_id, dtype=np.int64),
        participants=np.array(participants, dtype=np.int64),
        params_fingerprint=np.array(params.fingerprint),
        modulus_bits=np.array(iblt.MODULUS_BITS, dtype=np.int64),
    )
    return buffer.getvalue()


def _load_masked(path: Path, params: iblt.IbltParams) -> tuple[int, list[int], np.ndarray]:
    """(client id, participants, table) from a masked table file, after checking it fits ``params``."""
    needed = ("format", "table", "client_id", "participants", "params_fingerprint", "modulus_bits")
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"masked table {path} does not exist; check the path") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"masked table {path} is not a readable .npz file ({exc}); have the client re-encode") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise UserError(f"{path} is not a masked label table (.npz); create it with `gptfl labels encode`")
    with data:
        if any(name not in data.files for name in needed):
            raise UserError(f"{path} is not a masked label table; create it with `gptfl labels encode`")
        try:
            if str(data["format"]) != MASKED_FORMAT:
                raise UserError(f"{path} is not a masked label table ({MASKED_FORMAT}); create it with `gptfl labels encode`")
            table = data["table"]
            client_id = int(data["client_id"])
            participants = [int(x) for x in np.atleast_1d(data["participants"])]
            fingerprint = str(data["params_fingerprint"])
            modulus_bits = int(data["modulus_bits"])
        except (OSError, ValueError, TypeError, zipfile.BadZipFile) as exc:
            raise UserError(f"masked table {path} is damaged ({exc}); have the client re-encode") from None
    if modulus_bits != iblt.MODULUS_BITS:
        raise UserError(f"{path} was masked modulo 2^{modulus_bits}, expected 2^{iblt.MODULUS_BITS}; re-encode with this version")
    if fingerprint != params.fingerprint:
        raise UserError(f"{path} was encoded with other params (fingerprint {fingerprint[:12]}); re-encode with {params.fingerprint[:12]}")
    iblt.check_table(table, params, source=str(path))
    if participants != sorted(set(participants)) or client_id not in participants:
        raise UserError(f"{path} has an inconsistent participant list; have client {client_id} re-encode")
    return client_id, participants, table


def _load_reveal(path: Path, participants: list[int]) -> tuple[int, dict[int, bytes]]:
    """(revealing client, {dropped client: seed}) from a reveal file made with the same key set."""
    data = _read_json(path, "reveal file")
    if not isinstance(data, dict) or data.get("format") != REVEAL_FORMAT:
        raise UserError(f"{path} is not a seed reveal; create it with `gptfl labels reveal`")
    try:
        seeds = {int(peer): bytes.fromhex(seed) for peer, seed in data["seeds"].items()}
        client_id = int(data["client_id"])
        revealed_with = sorted(int(x) for x in data["participants"])
    except (KeyError, AttributeError, TypeError, ValueError):
        raise UserError(f"{path} is damaged (client_id, participants or seeds unreadable); rerun `gptfl labels reveal`") from None
    if any(len(seed) != 32 for seed in seeds.values()):
        raise UserError(f"{path} holds a seed that is not 32 bytes; rerun `gptfl labels reveal`")
    if revealed_with != participants:
        raise UserError(f"{path} was made with another public key set than the masked tables; rerun `gptfl labels reveal` with this round's keys")
    return client_id, seeds


# --------------------------------------------------------------------------- commands


def cmd_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    private_path, public_path = out / f"{args.client_id}.key", out / f"{args.client_id}.pub"
    if private_path.exists() or public_path.exists():
        raise UserError(f"{private_path} or {public_path} already exists; delete both for a new key or choose another --out")
    private = secure_sum.generate_private_key()
    public = secure_sum.public_key(private)
    common = {"group": secure_sum.GROUP_NAME, "client_id": args.client_id, "public": format(public, "x")}
    private_doc = {"format": PRIVATE_KEY_FORMAT, **common, "private": format(private, "x")}
    public_doc = {"format": PUBLIC_KEY_FORMAT, **common}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(private_path) as tmp:
        os.chmod(tmp, 0o600)  # before the secret is in it
        tmp.write_text(json.dumps(private_doc, indent=2) + "\n", encoding="utf-8")
    with atomic_path(public_path) as tmp:
        os.chmod(tmp, 0o644)
        tmp.write_text(json.dumps(public_doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {private_path} (keep secret) and {public_path} (share with the other clients)")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else secrets.token_hex(16)
    params = iblt.params_for(
        args.expected_labels,
        seed=seed,
        failure_prob=args.failure_prob,
        max_label_bytes=args.max_label_bytes,
        min_cells=args.min_cells,
    )
    document = params.to_dict(expected_labels=args.expected_labels, failure_prob=args.failure_prob)
    atomic_write_json(args.out, document)
    print(f"wrote {args.out}: {params.cells} cells x {params.columns} words for up to {args.expected_labels} labels")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    params = _load_params(args.params)
    labels = _read_labels(args)
    private = _load_private_key(args.private_key, args.client_id)
    public_keys = _load_public_keys(args.public_keys)
    participants = _participants(args.client_id, private, public_keys, args.public_keys)
    table = iblt.encode_labels(params, labels)
    masked = secure_sum.mask_table(table, args.client_id, private, public_keys, params.fingerprint.encode())
    atomic_write_bytes(args.out, _masked_npz(masked, args.client_id, participants, params))
    print(f"wrote {args.out}: {len(labels)} labels, masked with {len(participants) - 1} peers")
    return 0


def cmd_reveal(args: argparse.Namespace) -> int:
    private = _load_private_key(args.private_key, args.client_id)
    public_keys = _load_public_keys(args.public_keys)
    participants = _participants(args.client_id, private, public_keys, args.public_keys)
    dropped = args.dropped
    if args.client_id in dropped:
        raise UserError(f"--dropped names client {args.client_id} itself; a client reveals only seeds with others")
    unknown = sorted(set(dropped) - set(participants))
    if unknown:
        raise UserError(f"--dropped names clients {unknown} with no public key in {args.public_keys}; check the ids")
    if len(participants) - len(dropped) < 2:
        raise UserError(f"--dropped leaves client {args.client_id} as the only survivor, which would expose its labels; refused")
    seeds = secure_sum.pairwise_seeds(args.client_id, private, public_keys, dropped)
    document = {
        "format": REVEAL_FORMAT,
        "client_id": args.client_id,
        "participants": participants,
        "seeds": {str(peer): seed.hex() for peer, seed in seeds.items()},
    }
    atomic_write_json(args.out, document)
    print(f"wrote {args.out}: seeds with dropped clients {dropped}")
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    params = _load_params(args.params)
    tables: dict[int, np.ndarray] = {}
    sources: dict[int, Path] = {}
    participant_sets: set[tuple[int, ...]] = set()
    for path in args.masked:
        client_id, participants, table = _load_masked(Path(path), params)
        if client_id in tables:
            raise UserError(f"{sources[client_id]} and {path} both come from client {client_id}; pass each client's table once")
        tables[client_id], sources[client_id] = table, Path(path)
        participant_sets.add(tuple(participants))
    if len(participant_sets) != 1:
        raise UserError("the masked tables were made with different public key sets; every client must mask with the same keys")
    participants = list(participant_sets.pop())
    reveals: dict[int, dict[int, bytes]] = {}
    for path in args.reveals or []:
        client_id, seeds = _load_reveal(Path(path), participants)
        if client_id in reveals:
            raise UserError(f"two reveal files come from client {client_id}; pass one per client")
        reveals[client_id] = seeds
    total = secure_sum.unmask_sum(tables, participants, reveals, params.fingerprint.encode())
    counts = iblt.decode(params, total)
    if not counts:
        raise UserError("the aggregated table is empty; no client contributed a label")
    document = iblt.label_union_document(counts, clients=len(tables), with_counts=args.counts)
    atomic_write_json(args.out, document)
    dropped = len(participants) - len(tables)
    print(f"wrote {args.out}: {len(counts)} labels from {len(tables)} clients ({dropped} dropped)")
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

"""The five steps of a label-discovery round; each checks all its inputs before it writes anything.

1. ``make_params`` (server): size the table and fix its hash seed;
2. ``keygen`` (each client): a Diffie-Hellman key pair;
3. ``encode`` (each client): its label names as a table, masked with every other participant;
4. ``reveal`` (survivors, only after a dropout): the seeds shared with the dropped clients;
5. ``aggregate`` (server): sum the masked tables, remove the dropped clients' masks, decode.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from gptfl_hpc import secure_sum
from gptfl_hpc.errors import UserError
from gptfl_hpc.labels import files, iblt


def make_params(
    out: Path,
    expected_labels: int,
    seed: Optional[str] = None,
    failure_prob: float = iblt.DEFAULT_FAILURE_PROB,
    max_label_bytes: int = iblt.DEFAULT_MAX_LABEL_BYTES,
    min_cells: int = 0,
) -> iblt.IbltParams:
    """Write the params file; ``seed`` defaults to a fresh random one (use a new one every round)."""
    params = iblt.params_for(
        expected_labels,
        seed=seed if seed is not None else secrets.token_hex(16),
        failure_prob=failure_prob,
        max_label_bytes=max_label_bytes,
        min_cells=min_cells,
    )
    files.write_params(out, params, expected_labels=expected_labels, failure_prob=failure_prob)
    return params


def keygen(out: Path, client_id: int) -> tuple[Path, Path]:
    """Write a new key pair ``OUT/ID.key`` and ``OUT/ID.pub``; refuses to replace an existing one."""
    private_path, public_path = files.key_paths(out, client_id)
    if private_path.exists() or public_path.exists():
        raise UserError(f"{private_path} or {public_path} already exists; delete both for a new key or choose another --out")
    private = secure_sum.generate_private_key()
    return files.write_key_pair(out, client_id, private, secure_sum.public_key(private))


def participants(client_id: int, private_key: int, public_keys: dict[int, int], directory: Path) -> list[int]:
    """The round's participants (every key in ``directory``), after checking the client is one of them."""
    own = public_keys.get(client_id)
    if own is None:
        raise UserError(f"{directory} has no public key of client {client_id}; add its .pub file so every client masks with the same set")
    if own != secure_sum.public_key(private_key):
        raise UserError(f"the public key of client {client_id} in {directory} does not match its private key; redistribute {client_id}.pub")
    if len(public_keys) < 2:
        raise UserError(f"{directory} holds only client {client_id}'s key; masking needs at least two clients")
    return sorted(public_keys)


@dataclass(frozen=True)
class Encoded:
    labels: int  # distinct label names encoded
    peers: int  # other participants masked with


def encode(
    out: Path,
    client_id: int,
    private_key: Path,
    public_keys: Path,
    params: Path,
    labels: Optional[str] = None,
    labels_file: Optional[Path] = None,
) -> Encoded:
    """Write the client's masked table of its label names: ``labels`` ("a,b") or ``labels_file``."""
    table_params = files.load_params(params)
    names = files.read_label_names(labels, labels_file)
    private = files.load_private_key(private_key, client_id)
    keys = files.load_public_keys(public_keys)
    members = participants(client_id, private, keys, public_keys)
    table = iblt.encode_labels(table_params, names)
    masked = secure_sum.mask_table(table, client_id, private, keys, table_params.fingerprint.encode())
    files.write_masked_table(out, masked, client_id, members, table_params)
    return Encoded(labels=len(names), peers=len(members) - 1)


def reveal(out: Path, client_id: int, private_key: Path, public_keys: Path, dropped: Sequence[int]) -> None:
    """Write the seeds ``client_id`` shares with the ``dropped`` clients, so the server can remove
    their masks; refuses to leave a single survivor (its labels would be exposed)."""
    private = files.load_private_key(private_key, client_id)
    keys = files.load_public_keys(public_keys)
    members = participants(client_id, private, keys, public_keys)
    if client_id in dropped:
        raise UserError(f"--dropped names client {client_id} itself; a client reveals only seeds with others")
    unknown = sorted(set(dropped) - set(members))
    if unknown:
        raise UserError(f"--dropped names clients {unknown} with no public key in {public_keys}; check the ids")
    if len(members) - len(dropped) < 2:
        raise UserError(f"--dropped leaves client {client_id} as the only survivor, which would expose its labels; refused")
    seeds = secure_sum.pairwise_seeds(client_id, private, keys, dropped)
    files.write_reveal(out, client_id, members, seeds)


@dataclass(frozen=True)
class LabelUnion:
    counts: dict[str, int]  # label -> how many clients hold it
    clients: int  # clients whose tables were summed
    dropped: int  # participants without a table


def aggregate(
    out: Path, masked: Sequence[Path], reveals: Sequence[Path], params: Path, with_counts: bool = False
) -> LabelUnion:
    """Sum the masked tables, remove the masks of dropped clients with the reveals, decode, and
    write the label union file."""
    table_params = files.load_params(params)
    tables: dict[int, np.ndarray] = {}
    sources: dict[int, Path] = {}
    participant_sets: set[tuple[int, ...]] = set()
    for path in masked:
        client_id, members, table = files.load_masked_table(Path(path), table_params)
        if client_id in tables:
            raise UserError(f"{sources[client_id]} and {path} both come from client {client_id}; pass each client's table once")
        tables[client_id], sources[client_id] = table, Path(path)
        participant_sets.add(tuple(members))
    if len(participant_sets) != 1:
        raise UserError("the masked tables were made with different public key sets; every client must mask with the same keys")
    members = list(participant_sets.pop())
    revealed: dict[int, dict[int, bytes]] = {}
    for path in reveals:
        client_id, seeds = files.load_reveal(Path(path), members)
        if client_id in revealed:
            raise UserError(f"two reveal files come from client {client_id}; pass one per client")
        revealed[client_id] = seeds
    total = secure_sum.unmask_sum(tables, members, revealed, table_params.fingerprint.encode())
    counts = iblt.decode(table_params, total)
    if not counts:
        raise UserError("the aggregated table is empty; no client contributed a label")
    files.write_label_union(out, counts, clients=len(tables), with_counts=with_counts)
    return LabelUnion(counts=counts, clients=len(tables), dropped=len(members) - len(tables))

"""Secure summation with pairwise masks (Bonawitz et al., without secret sharing).

Shared by label discovery (``labels/steps.py`` masks IBLT tables, ``labels/iblt.py``) and the
simulator's secure aggregation (``fl/aggregate.py`` masks fixed-point client updates), so it
belongs to neither package and federated learning does not depend on label discovery.

Every pair of clients ``i < j`` agrees on a seed by finite-field Diffie-Hellman in the RFC 3526
2048-bit MODP group (group 14). The seed is ``SHA-256(tag || g^(x_i x_j) || i || j)`` with the
ids in ascending order, and expands into a mask as long as the table with the SHAKE-256
extendable-output function (a cryptographic PRG; one C call per mask). Client ``i`` adds the mask
it shares with every ``j > i`` and subtracts the one it shares with every ``j < i``, modulo 2^64,
so the masks cancel exactly in the sum over all clients, while a single masked table is
uniformly random to anyone without the seeds.

The mask stream is additionally bound to a *context* (the IBLT params fingerprint), so the same
keys never produce the same mask for two different tables. Keys should still be fresh per round:
a revealed seed exposes every mask that pair ever derived from it.

Dropout: if client ``d`` sends its keys but not its masked table, the survivors' masks with ``d``
no longer cancel. Each survivor ``i`` then reveals ``seed_id``, and the server removes exactly the
masks ``i`` applied with ``d``. (Bonawitz et al. reconstruct ``d``'s key from Shamir shares
instead, and add a self-mask so that a late-arriving table stays private; neither is done here;
see docs/label-discovery.md.)
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from functools import lru_cache
from typing import Iterable, Mapping

import numpy as np

from gptfl_hpc.errors import UserError

GROUP_NAME = "rfc3526-modp-2048"
#: RFC 3526 section 3: the 2048-bit MODP group (group 14), a safe prime p = 2q + 1, generator 2.
MODP_2048_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
MODP_2048_G = 2
MODP_2048_Q = (MODP_2048_P - 1) // 2
ELEMENT_BYTES = (MODP_2048_P.bit_length() + 7) // 8

_SEED_TAG = b"gptfl-secure-sum/pair-seed/1"
_MASK_TAG = b"gptfl-secure-sum/mask/1"


# --------------------------------------------------------------------------- Diffie-Hellman


def generate_private_key() -> int:
    """A uniform exponent in [2, q - 1] from the operating system's CSPRNG."""
    return 2 + secrets.randbelow(MODP_2048_Q - 2)


def public_key(private_key: int) -> int:
    return pow(MODP_2048_G, private_key, MODP_2048_P)


@lru_cache(maxsize=4096)
def _in_prime_subgroup(value: int) -> bool:
    return 2 <= value <= MODP_2048_P - 2 and pow(value, MODP_2048_Q, MODP_2048_P) == 1


def check_public_key(value: int, owner: object = "a peer") -> None:
    """Reject keys outside the order-q subgroup (0, 1, p - 1, non-residues leak key bits)."""
    if not isinstance(value, int) or not _in_prime_subgroup(value):
        raise UserError(f"the public key of {owner} is not a valid {GROUP_NAME} key; regenerate it with `gptfl labels keygen`")


def shared_secret(private_key: int, peer_public_key: int, peer: object = "a peer") -> bytes:
    """``peer_public^private mod p`` as fixed-width big-endian bytes."""
    check_public_key(peer_public_key, peer)
    return pow(peer_public_key, private_key, MODP_2048_P).to_bytes(ELEMENT_BYTES, "big")


def pair_seed(secret: bytes, id_a: int, id_b: int) -> bytes:
    """SHA-256 of the shared secret and the two client ids in ascending order."""
    low, high = sorted((int(id_a), int(id_b)))
    return hashlib.sha256(_SEED_TAG + secret + struct.pack(">QQ", low, high)).digest()


# --------------------------------------------------------------------------- masks


def expand_mask(seed: bytes, shape: tuple[int, ...], context: bytes) -> np.ndarray:
    """A uniform uint64 array of ``shape`` from SHAKE-256(tag || seed || context)."""
    if len(seed) != 32:
        raise UserError("a pairwise seed must be 32 bytes; the reveal file is damaged")
    words = int(np.prod(shape, dtype=np.int64))
    stream = hashlib.shake_256(_MASK_TAG + seed + context).digest(8 * words)
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64).reshape(shape)


def mask_sign(own_id: int, peer_id: int) -> int:
    """+1: ``own_id`` adds the pair's mask; -1: it subtracts it."""
    return 1 if peer_id > own_id else -1


def _apply(total: np.ndarray, mask: np.ndarray, sign: int) -> None:
    if sign > 0:
        total += mask
    else:
        total -= mask


def pairwise_seeds(client_id: int, private_key: int, public_keys: Mapping[int, int], peers: Iterable[int]) -> dict[int, bytes]:
    """The seed ``client_id`` shares with each of ``peers`` (all must be in ``public_keys``)."""
    seeds = {}
    for peer in peers:
        if peer == client_id:
            raise UserError(f"client {client_id} cannot share a seed with itself")
        if peer not in public_keys:
            raise UserError(f"no public key for client {peer}; put its .pub file in the public keys directory")
        secret = shared_secret(private_key, public_keys[peer], f"client {peer}")
        seeds[peer] = pair_seed(secret, client_id, peer)
    return seeds


def mask_table(
    table: np.ndarray, client_id: int, private_key: int, public_keys: Mapping[int, int], context: bytes
) -> np.ndarray:
    """``table`` plus the masks ``client_id`` shares with every other key holder, modulo 2^64.

    ``public_keys`` maps every participating client id (this one included or not) to its key.
    """
    peers = sorted(peer for peer in public_keys if peer != client_id)
    if not peers:
        raise UserError("masking needs at least one other client's public key; collect every client's .pub file")
    masked = table.astype(np.uint64, copy=True)
    for peer, seed in pairwise_seeds(client_id, private_key, public_keys, peers).items():
        _apply(masked, expand_mask(seed, table.shape, context), mask_sign(client_id, peer))
    return masked


def unmask_sum(
    masked_tables: Mapping[int, np.ndarray],
    participants: Iterable[int],
    reveals: Mapping[int, Mapping[int, bytes]],
    context: bytes,
) -> np.ndarray:
    """Sum the survivors' masked tables and strip the masks they shared with dropped clients.

    ``masked_tables``: survivor id -> masked table. ``participants``: every client whose public key
    the survivors used. ``reveals``: survivor id -> {dropped id: pairwise seed}. Every survivor
    must reveal its seed with every dropped client; a reveal naming a survivor is refused, since
    it would unmask that survivor's own table.
    """
    participants = set(participants)
    survivors = set(masked_tables)
    if not survivors:
        raise UserError("no masked tables to aggregate; pass the clients' masked_*.npz files")
    strangers = survivors - participants
    if strangers:
        raise UserError(f"masked tables from clients {sorted(strangers)} who are not among the participants; use one key set per round")
    dropped = participants - survivors
    for revealer, seeds in reveals.items():
        if revealer not in survivors:
            raise UserError(f"a reveal comes from client {revealer}, whose masked table is missing; pass its table or drop its reveal")
        exposed = set(seeds) & survivors
        if exposed:
            raise UserError(
                f"client {revealer} revealed seeds with clients {sorted(exposed)} whose tables are present; "
                "reveal only seeds with dropped clients"
            )
    for survivor in sorted(survivors):
        missing = dropped - set(reveals.get(survivor, {}))
        if missing:
            raise UserError(
                f"clients {sorted(missing)} dropped out but client {survivor} has not revealed its seeds with them; "
                f"run `gptfl labels reveal --client-id {survivor} --dropped {','.join(map(str, sorted(dropped)))}` "
                "and pass the file with --reveals"
            )
    tables = list(masked_tables.values())
    total = tables[0].astype(np.uint64, copy=True)
    for table in tables[1:]:
        total += table
    for survivor in survivors:
        for gone in dropped:
            mask = expand_mask(reveals[survivor][gone], total.shape, context)
            _apply(total, mask, -mask_sign(survivor, gone))  # undo what the survivor applied
    return total

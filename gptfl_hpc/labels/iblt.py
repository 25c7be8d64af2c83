"""Invertible Bloom Lookup Table (IBLT) of label names, linear modulo 2^64.

A table is a ``(cells, columns)`` numpy ``uint64`` array; numpy's unsigned arithmetic wraps, so
tables add and subtract modulo 2^64 and a sum of tables is the table of the multiset union. That
linearity is what lets clients mask their tables with pairwise masks (``gptfl_hpc.secure_sum``) and the
server decode only the sum.

Each cell holds::

    column 0            count       how many (client, label) insertions landed here
    column 1            length      byte length of the UTF-8 label
    columns 2 .. 2+D-1  data        the UTF-8 bytes, 4 bytes (32 bits) per uint64 word, zero padded
    column -1           check       a 64-bit keyed hash of the label

Every key word carries only 32 data bits inside a 64-bit word. A label inserted ``c`` times adds
``c * word`` to its cells, and with ``c < 2^32`` that product never wraps, so a pure cell (one
label, any count) gives the label back by exact integer division. Hence at most 2^32 - 1 clients.

Hashing follows Goodrich & Mitzenmacher with ``hash_count`` partitioned sub-tables: hash ``j``
picks a cell in sub-table ``j``, so a label never lands twice in one cell. Cell indices and the
check hash come from BLAKE2b keyed with a key derived from the table's ``seed``; the result is
the same in every process and on every machine.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Mapping

import numpy as np

from gptfl_hpc.errors import UserError
from gptfl_hpc.identity import sha256_json

PARAMS_FORMAT = "gptfl-iblt-params/1"
MODULUS_BITS = 64
DATA_BITS_PER_WORD = 32
DATA_BYTES_PER_WORD = DATA_BITS_PER_WORD // 8
MAX_COUNT = 2**DATA_BITS_PER_WORD - 1
DEFAULT_MAX_LABEL_BYTES = 256
DEFAULT_FAILURE_PROB = 1e-6
#: Cells per distinct label never go below this; the k=3 peeling threshold is ~1.222.
MIN_CELLS_PER_LABEL = 2.0
SUPPORTED_HASH_COUNTS = range(3, 7)

COUNT_COL = 0
LENGTH_COL = 1
DATA_START_COL = 2
CHECK_COL = -1

_MOD = 2**MODULUS_BITS
_HASH_PERSON = b"gptfl-iblt/1"
_SEED_PERSON = b"gptfl-iblt-seed"


class IbltDecodeError(UserError):
    """Peeling left a non-empty table: the table was too small (or a table was corrupt)."""

    def __init__(self, message: str, residual_cells: int, suggested_cells: int):
        super().__init__(message)
        self.residual_cells = residual_cells
        self.suggested_cells = suggested_cells


@dataclass(frozen=True)
class IbltParams:
    """Everything that fixes a table's layout and hashing; clients and server must agree on it.

    ``seed`` keys the hash functions (a fresh random seed per round keeps cell positions
    unpredictable across rounds). ``fingerprint`` names the parameters in every masked table.
    """

    cells_per_hash: int
    seed: str
    max_label_bytes: int = DEFAULT_MAX_LABEL_BYTES
    hash_count: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.cells_per_hash, int) or self.cells_per_hash < 1:
            raise UserError(f"IBLT cells_per_hash must be a positive integer, got {self.cells_per_hash!r}")
        if self.hash_count not in SUPPORTED_HASH_COUNTS:
            raise UserError(f"IBLT hash_count must be 3 to 6, got {self.hash_count!r}")
        if not isinstance(self.max_label_bytes, int) or not 1 <= self.max_label_bytes <= MAX_COUNT:
            raise UserError(f"IBLT max_label_bytes must be a positive integer, got {self.max_label_bytes!r}")
        if not isinstance(self.seed, str) or not self.seed:
            raise UserError("IBLT seed must be a non-empty string; pass --seed or let `gptfl labels params` pick one")

    # ----------------------------------------------------------------- layout

    @property
    def cells(self) -> int:
        return self.hash_count * self.cells_per_hash

    @property
    def data_words(self) -> int:
        return -(-self.max_label_bytes // DATA_BYTES_PER_WORD)

    @property
    def columns(self) -> int:
        return DATA_START_COL + self.data_words + 1

    @property
    def shape(self) -> tuple[int, int]:
        return (self.cells, self.columns)

    def empty_table(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=np.uint64)

    # ----------------------------------------------------------------- identity

    def defining_fields(self) -> dict:
        return {
            "format": PARAMS_FORMAT,
            "hash_count": self.hash_count,
            "cells_per_hash": self.cells_per_hash,
            "max_label_bytes": self.max_label_bytes,
            "modulus_bits": MODULUS_BITS,
            "seed": self.seed,
        }

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of the canonical JSON of the defining fields."""
        return sha256_json(self.defining_fields())

    @cached_property
    def _hash_key(self) -> bytes:
        return hashlib.blake2b(self.seed.encode("utf-8"), digest_size=32, person=_SEED_PERSON).digest()

    def to_dict(self, **info) -> dict:
        """The JSON form; ``info`` (e.g. expected_labels) is stored but not part of the fingerprint."""
        return {**self.defining_fields(), "cells": self.cells, "fingerprint": self.fingerprint, **info}

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "params") -> "IbltParams":
        if not isinstance(data, Mapping) or data.get("format") != PARAMS_FORMAT:
            raise UserError(f"{source} is not an IBLT params file ({PARAMS_FORMAT}); create it with `gptfl labels params`")
        if data.get("modulus_bits") != MODULUS_BITS:
            raise UserError(f"{source} has modulus_bits {data.get('modulus_bits')!r}, this version uses {MODULUS_BITS}")
        try:
            params = cls(
                cells_per_hash=data["cells_per_hash"],
                seed=data["seed"],
                max_label_bytes=data["max_label_bytes"],
                hash_count=data["hash_count"],
            )
        except KeyError as missing:
            raise UserError(f"{source} lacks the field {missing}; recreate it with `gptfl labels params`") from None
        if "fingerprint" in data and data["fingerprint"] != params.fingerprint:
            raise UserError(f"{source} was edited (its fingerprint does not match its fields); recreate it with `gptfl labels params`")
        return params


# --------------------------------------------------------------------------- sizing


def cells_per_hash_for(expected_labels: int, failure_prob: float, hash_count: int = 3) -> int:
    """Sub-table size ``s`` so that peeling ``expected_labels`` distinct labels fails with prob <= ``failure_prob``.

    Rule: ``s = max(ceil(2 n / k), smallest s with s^k >= n (n - 1) / failure_prob)``.

    Above the peeling threshold (k=3: 1.222 cells per label) decoding fails almost only on small
    stopping sets, and the commonest is two labels that share their cell in every sub-table:
    the expected number of such pairs is ``C(n, 2) / s^k``, which the second term keeps at or
    below ``failure_prob / 2``. The first term (at least 2 cells per label) keeps the table well
    above the threshold where that approximation holds. Measured failure rates are in
    docs/label-discovery.md.
    """
    n = int(expected_labels)
    if n < 1:
        raise UserError(f"--expected-labels must be at least 1, got {expected_labels}")
    if not 0 < failure_prob < 1:
        raise UserError(f"--failure-prob must lie strictly between 0 and 1, got {failure_prob}")
    load_term = math.ceil(MIN_CELLS_PER_LABEL * n / hash_count)
    pairs = n * (n - 1)
    pair_term = max(1, math.floor((pairs / failure_prob) ** (1.0 / hash_count)))
    while pair_term**hash_count * failure_prob < pairs:  # exact integer check after float root
        pair_term += 1
    return max(load_term, pair_term, 2)


def params_for(
    expected_labels: int,
    seed: str,
    failure_prob: float = DEFAULT_FAILURE_PROB,
    max_label_bytes: int = DEFAULT_MAX_LABEL_BYTES,
    min_cells: int = 0,
    hash_count: int = 3,
) -> IbltParams:
    """Table parameters sized by :func:`cells_per_hash_for`, with at least ``min_cells`` cells."""
    per_hash = cells_per_hash_for(expected_labels, failure_prob, hash_count)
    per_hash = max(per_hash, -(-int(min_cells) // hash_count))
    return IbltParams(cells_per_hash=per_hash, seed=seed, max_label_bytes=max_label_bytes, hash_count=hash_count)


# --------------------------------------------------------------------------- keys and hashes


def label_bytes(label: str, params: IbltParams) -> bytes:
    """The UTF-8 bytes of ``label``; rejects non-strings, empty labels and labels over the limit."""
    if not isinstance(label, str):
        raise UserError(f"label {label!r} is not a string")
    if not label:
        raise UserError("a label name is empty; remove the empty entry")
    try:
        data = label.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"label {label!r} is not valid Unicode text (lone surrogate); fix the label") from None
    if len(data) > params.max_label_bytes:
        raise UserError(
            f"label {label[:40]!r}... is {len(data)} UTF-8 bytes, over the table's max_label_bytes "
            f"{params.max_label_bytes}; shorten it or create params with a larger --max-label-bytes"
        )
    return data


def _key_words(encoded: list[bytes], params: IbltParams) -> np.ndarray:
    """``(n, 1 + D)`` uint64: the byte length, then the zero-padded bytes 4 per word."""
    width = params.data_words * DATA_BYTES_PER_WORD
    packed = b"".join(struct.pack(">I", len(b)) + b.ljust(width, b"\0") for b in encoded)
    words = np.frombuffer(packed, dtype=">u4").reshape(len(encoded), 1 + params.data_words)
    return words.astype(np.uint64)


def _hashes(data: bytes, params: IbltParams) -> tuple[list[int], int]:
    """Cell index in each sub-table, and the 64-bit check hash, of one label's bytes."""
    k = params.hash_count
    digest = hashlib.blake2b(
        struct.pack(">I", len(data)) + data, key=params._hash_key, digest_size=8 * (k + 1), person=_HASH_PERSON
    ).digest()
    words = struct.unpack(f"<{k + 1}Q", digest)
    s = params.cells_per_hash
    return [j * s + words[j] % s for j in range(k)], words[k]


def _rows(encoded: list[bytes], counts: list[int], params: IbltParams) -> tuple[np.ndarray, np.ndarray]:
    """Cell rows (count-weighted, mod 2^64) and their ``(n, k)`` cell indices."""
    n = len(encoded)
    indices = np.empty((n, params.hash_count), dtype=np.intp)
    checks = np.empty(n, dtype=np.uint64)
    for i, data in enumerate(encoded):
        cells, check = _hashes(data, params)
        indices[i] = cells
        checks[i] = check
    rows = np.empty((n, params.columns), dtype=np.uint64)
    rows[:, COUNT_COL] = 1
    rows[:, LENGTH_COL:CHECK_COL] = _key_words(encoded, params)
    rows[:, CHECK_COL] = checks
    rows *= np.asarray(counts, dtype=np.uint64)[:, None]  # wraps mod 2^64 only in the check column
    return rows, indices


# --------------------------------------------------------------------------- encoding


def encode_counts(params: IbltParams, counts: Mapping[str, int]) -> np.ndarray:
    """The table holding each label ``counts[label]`` times (the sum of that many one-label tables)."""
    labels = list(counts)
    encoded = [label_bytes(label, params) for label in labels]
    multiplicities = [int(counts[label]) for label in labels]
    if any(not 1 <= c <= MAX_COUNT for c in multiplicities):
        raise UserError(f"label counts must lie in 1..{MAX_COUNT}")
    table = params.empty_table()
    if not labels:
        return table
    rows, indices = _rows(encoded, multiplicities, params)
    np.add.at(table, indices.ravel(), np.repeat(rows, params.hash_count, axis=0))
    return table


def encode_labels(params: IbltParams, labels: Iterable[str]) -> np.ndarray:
    """A client's table: each distinct label once, so a decoded count is a number of clients."""
    distinct = dict.fromkeys(labels)
    if not distinct:
        raise UserError("the label set is empty; give at least one label name")
    return encode_counts(params, {label: 1 for label in distinct})


def sum_tables(tables: Iterable[np.ndarray]) -> np.ndarray:
    """Cell-wise sum modulo 2^64."""
    total = None
    for table in tables:
        total = table.astype(np.uint64, copy=True) if total is None else total + table
    if total is None:
        raise UserError("no tables to add")
    return total


def check_table(table: np.ndarray, params: IbltParams, source: str = "table") -> None:
    """Raise :class:`UserError` unless ``table`` is a uint64 array of ``params.shape``."""
    if not isinstance(table, np.ndarray) or table.dtype != np.uint64:
        dtype = getattr(table, "dtype", type(table).__name__)
        raise UserError(f"{source} has dtype {dtype}, expected uint64 (modulus 2^{MODULUS_BITS}); re-encode it with these params")
    if table.shape != params.shape:
        raise UserError(f"{source} has shape {table.shape}, the params say {params.shape}; re-encode it with the same params file")


# --------------------------------------------------------------------------- decoding


@dataclass
class PeelResult:
    """Labels (with their counts) recovered by peeling, and how many cells stayed non-empty."""

    counts: dict[str, int]
    residual_cells: int


def _candidate_cells(table: np.ndarray, cells: np.ndarray, params: IbltParams) -> np.ndarray:
    """Among ``cells``, those that could hold one label: count in range, words divisible by it."""
    sub = table[cells]
    count = sub[:, COUNT_COL]
    ok = (count >= 1) & (count <= MAX_COUNT)
    divisor = np.where(ok, count, 1)[:, None]
    keys = sub[:, LENGTH_COL:CHECK_COL]
    ok &= (keys % divisor == 0).all(axis=1)
    quotient = keys // divisor
    ok &= (quotient < 2**DATA_BITS_PER_WORD).all(axis=1)
    length = quotient[:, 0]
    ok &= (length >= 1) & (length <= params.max_label_bytes)
    return cells[ok]


def _verified_label(table: np.ndarray, cell: int, params: IbltParams) -> tuple[str, bytes, int] | None:
    """The label in ``cell`` if the cell is pure: length prefix, padding, UTF-8, check hash, position."""
    row = table[cell]
    count = int(row[COUNT_COL])
    key = (row[LENGTH_COL:CHECK_COL] // np.uint64(count)).astype(">u4").tobytes()
    length = int.from_bytes(key[:4], "big")
    body = key[4:]
    data = body[:length]
    if any(body[length:]):
        return None
    cells, check = _hashes(data, params)
    if cell not in cells or (count * check) % _MOD != int(row[CHECK_COL]):
        return None
    try:
        return data.decode("utf-8"), data, count
    except UnicodeDecodeError:
        return None


def peel(params: IbltParams, table: np.ndarray) -> PeelResult:
    """Peel ``table``: repeatedly take a pure cell's label out of all its cells.

    Each round checks only the cells the previous round changed, takes every verified label at
    once, and subtracts them in one vectorised update.
    """
    check_table(table, params)
    work = table.copy()
    found: dict[str, int] = {}
    dirty = np.flatnonzero(work.any(axis=1))
    while dirty.size:
        peeled: dict[str, tuple[bytes, int]] = {}
        for cell in _candidate_cells(work, dirty, params):
            verified = _verified_label(work, int(cell), params)
            if verified is None:
                continue
            label, data, count = verified
            if label in found:  # a label cannot come back after removal unless a table is corrupt
                continue
            peeled.setdefault(label, (data, count))
        if not peeled:
            break
        encoded = [data for data, _ in peeled.values()]
        rows, indices = _rows(encoded, [count for _, count in peeled.values()], params)
        np.subtract.at(work, indices.ravel(), np.repeat(rows, params.hash_count, axis=0))
        for label, (_, count) in peeled.items():
            found[label] = count
        dirty = np.unique(indices)
        dirty = dirty[work[dirty].any(axis=1)]
    residual = int(np.count_nonzero(work.any(axis=1)))
    return PeelResult(counts=found, residual_cells=residual)


def decode(params: IbltParams, table: np.ndarray) -> dict[str, int]:
    """All labels in ``table`` with their counts; raises :class:`IbltDecodeError` rather than return part."""
    result = peel(params, table)
    if result.residual_cells:
        bigger = 2 * params.cells
        raise IbltDecodeError(
            f"IBLT decode failed: {result.residual_cells} of {params.cells} cells still hold entries after "
            f"peeling {len(result.counts)} labels, so the table is too small for this label set (or a table is "
            f"corrupt); retry the round with a table of at least {bigger} cells "
            f"(`gptfl labels params ... --min-cells {bigger}`) and re-encode every client",
            residual_cells=result.residual_cells,
            suggested_cells=bigger,
        )
    return result.counts


__all__ = [
    "DEFAULT_FAILURE_PROB",
    "DEFAULT_MAX_LABEL_BYTES",
    "IbltDecodeError",
    "IbltParams",
    "PeelResult",
    "cells_per_hash_for",
    "check_table",
    "decode",
    "encode_counts",
    "encode_labels",
    "params_for",
    "peel",
    "sum_tables",
]

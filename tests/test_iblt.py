"""The IBLT: lossless Unicode round trips, linearity, verification, sizing and its failure rate."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from scipy.stats import binom

from gptfl_hpc.errors import UserError
from gptfl_hpc.labels import files, iblt
from gptfl_hpc.labels.iblt import IbltDecodeError, IbltParams

TRICKY_LABELS = [
    "cat",
    "猫",  # CJK
    "東京タワー",
    "👩‍👩‍👧‍👦",  # emoji ZWJ sequence
    "🏳️‍🌈",
    "e\u0301",  # e + combining acute: distinct from the precomposed form
    "\u00e9",
    "Z\u0324\u0354\u0367\u0311a\u0308\u0356l\u036e",  # stacked combining marks
    "قطة",  # right-to-left
    "a,b with comma",
    " padded ",
    "長" * 85,  # 255 bytes
    "🙂" * 64,  # exactly 256 bytes
    "x" * 256,
    "\x00nul inside\x00",
]


def vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    """``size`` distinct labels mixing scripts, emoji, combining marks and names up to 256 bytes."""
    pieces = ["bird", "鳥", "🦜", "o\u0308", "ñ", "дерево", "שלום", "ก", "\u0915\u094d\u0937"]
    words = list(TRICKY_LABELS)
    while len(words) < size:
        parts = rng.choice(pieces, size=int(rng.integers(1, 40)))
        word = f"{len(words)}-" + "".join(parts)
        while len(word.encode("utf-8")) > 256:
            word = word[:-1]
        words.append(word)
    return words


def test_unicode_and_long_labels_round_trip_losslessly():
    params = IbltParams(cells_per_hash=64, seed="round-trip")
    decoded = iblt.decode(params, iblt.encode_labels(params, TRICKY_LABELS))
    assert decoded == {label: 1 for label in TRICKY_LABELS}


def test_client_labels_are_deduplicated_so_counts_are_client_counts():
    params = IbltParams(cells_per_hash=16, seed="dedupe")
    table = iblt.encode_labels(params, ["dog", "dog", "cat", "dog"])
    assert iblt.decode(params, table) == {"dog": 1, "cat": 1}


def test_sum_of_client_tables_equals_the_multiset_table():
    rng = np.random.default_rng(0)
    words = vocabulary(60, rng)
    params = iblt.params_for(len(words), seed="linear", failure_prob=1e-3)
    clients = [list(rng.choice(words, size=int(rng.integers(1, 30)), replace=False)) for _ in range(25)]
    total = iblt.sum_tables(iblt.encode_labels(params, labels) for labels in clients)
    multiset = Counter(label for labels in clients for label in labels)
    assert np.array_equal(total, iblt.encode_counts(params, multiset))
    assert iblt.decode(params, total) == dict(multiset)


def test_tables_wrap_modulo_2_64():
    params = IbltParams(cells_per_hash=8, seed="wrap")
    table = iblt.encode_labels(params, ["a"])
    shift = np.full(params.shape, np.uint64(2**64 - 1))
    assert np.array_equal((table + shift) - shift, table)


def test_hashing_is_keyed_by_the_seed_and_the_same_in_another_process():
    params = IbltParams(cells_per_hash=32, seed="cross-process")
    here = iblt.encode_labels(params, ["猫", "dog"])
    code = (
        "import sys, numpy as np; from gptfl_hpc.labels.iblt import IbltParams, encode_labels;"
        "p = IbltParams(cells_per_hash=32, seed='cross-process');"
        "sys.stdout.write(encode_labels(p, ['猫', 'dog']).tobytes().hex())"
    )
    env = {"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert there == here.tobytes().hex()
    other = IbltParams(cells_per_hash=32, seed="another seed")
    assert not np.array_equal(iblt.encode_labels(other, ["猫", "dog"]), here)
    assert other.fingerprint != params.fingerprint


def test_too_long_label_is_refused_with_the_limit_named():
    params = IbltParams(cells_per_hash=8, seed="long", max_label_bytes=10)
    with pytest.raises(UserError, match="max_label_bytes 10"):
        iblt.encode_labels(params, ["ok", "é" * 6])  # 12 bytes


@pytest.mark.parametrize("labels", [[], [""]])
def test_empty_label_set_or_name_is_refused(labels):
    params = IbltParams(cells_per_hash=8, seed="empty")
    with pytest.raises(UserError):
        iblt.encode_labels(params, labels)


def test_wrong_shape_or_dtype_is_refused():
    params = IbltParams(cells_per_hash=8, seed="shape")
    with pytest.raises(UserError, match="shape"):
        iblt.decode(params, np.zeros((params.cells + 3, params.columns), dtype=np.uint64))
    with pytest.raises(UserError, match="uint64"):
        iblt.decode(params, np.zeros(params.shape, dtype=np.uint32))


def test_overfull_table_raises_with_a_retry_size_instead_of_a_partial_result():
    params = IbltParams(cells_per_hash=4, seed="small")
    table = iblt.encode_labels(params, [f"label {i}" for i in range(40)])
    with pytest.raises(IbltDecodeError) as failure:
        iblt.decode(params, table)
    message = str(failure.value)
    assert "decode failed" in message and str(2 * params.cells) in message and "\n" not in message
    assert failure.value.suggested_cells == 2 * params.cells


def test_a_corrupted_cell_is_never_decoded_into_a_wrong_label():
    params = IbltParams(cells_per_hash=32, seed="tamper")
    table = iblt.encode_labels(params, ["alpha", "beta", "gamma"])
    cell = int(np.flatnonzero(table[:, 0])[0])
    table[cell, iblt.DATA_START_COL] ^= np.uint64(1)  # one data bit
    result = iblt.peel(params, table)
    assert set(result.counts) <= {"alpha", "beta", "gamma"}
    assert result.residual_cells > 0
    with pytest.raises(IbltDecodeError):
        iblt.decode(params, table)


def test_sizing_rule():
    for n in (1, 2, 10, 150, 1000, 10_000):
        for delta in (0.1, 1e-3, 1e-6):
            s = iblt.cells_per_hash_for(n, delta)
            assert 3 * s >= 2 * n
            assert s**3 * delta >= n * (n - 1)  # expected all-cells-shared pairs <= delta / 2
            assert s == 2 or 3 * (s - 1) < 2 * n or (s - 1) ** 3 * delta < n * (n - 1)  # and minimal
    assert iblt.params_for(10, seed="x", min_cells=3000).cells >= 3000
    with pytest.raises(UserError):
        iblt.cells_per_hash_for(0, 0.01)
    with pytest.raises(UserError):
        iblt.cells_per_hash_for(10, 1.5)


def test_params_round_trip_through_json_and_detect_edits():
    params = iblt.params_for(100, seed="json")
    document = json.loads(json.dumps(params.to_dict(expected_labels=100)))
    assert IbltParams.from_dict(document) == params
    document["cells_per_hash"] += 1
    with pytest.raises(UserError, match="fingerprint"):
        IbltParams.from_dict(document)
    with pytest.raises(UserError, match="modulus"):
        IbltParams.from_dict({**params.to_dict(), "modulus_bits": 32})


@pytest.mark.slow
def test_100_clients_union_decodes_in_1000_trials_within_the_failure_bound():
    """1,000 rounds with 100 clients at the table size the rule gives for failure_prob = 1%.

    Each round uses a fresh hash seed and fresh client label sets. The summed plain table equals
    the table of the (client, label) multiset (test_sum_of_client_tables_equals_the_multiset_table)
    and masks cancel exactly (test_secure_sum), so each round encodes that multiset directly.
    """
    rng = np.random.default_rng(2024)
    words = vocabulary(150, rng)
    failure_prob, trials, clients = 0.01, 1000, 100
    failures = 0
    for trial in range(trials):
        params = iblt.params_for(len(words), seed=f"trial-{trial}", failure_prob=failure_prob)
        held = Counter()
        for _ in range(clients):
            held.update(rng.choice(len(words), size=int(rng.integers(10, 50)), replace=False).tolist())
        truth = {words[i]: count for i, count in held.items()}
        try:
            decoded = iblt.decode(params, iblt.encode_counts(params, truth))
        except IbltDecodeError:
            failures += 1
            continue
        assert decoded == truth  # never a wrong or partial union
    bound = binom.ppf(1 - 1e-6, trials, failure_prob)  # ~26: flakes with probability < 1e-6
    print(f"IBLT decode failures: {failures}/{trials} at {params.cells} cells for {len(words)} labels")
    assert failures <= bound


def test_load_label_union(tmp_path):
    path = tmp_path / "labels.json"
    document = files.label_union_document({"猫": 2, "cat": 1, "Zebra": 1}, clients=3, with_counts=True)
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    assert files.load_label_union(path) == ["Zebra", "cat", "猫"]
    assert document["counts"] == {"Zebra": 1, "cat": 1, "猫": 2}
    path.write_text('{"labels": []}')
    with pytest.raises(UserError):
        files.load_label_union(path)
    with pytest.raises(UserError, match="does not exist"):
        files.load_label_union(tmp_path / "missing.json")

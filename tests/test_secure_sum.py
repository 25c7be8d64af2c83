"""Pairwise masking: real Diffie-Hellman, exact cancellation, uniform masked tables, dropout recovery."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare

from gptfl_hpc import secure_sum
from gptfl_hpc.errors import UserError
from gptfl_hpc.labels import iblt
from gptfl_hpc.labels.iblt import IbltDecodeError

P = secure_sum.MODP_2048_P
CLIENT_IDS = [0, 3, 4, 7, 11, 12]
CLIENT_LABELS = {
    0: ["cat", "dog", "猫"],
    3: ["dog", "🦜 parrot", "e\u0301clair"],
    4: ["cat", "長" * 80],
    7: ["ant", "dog"],
    11: ["bee", "cat"],
    12: ["only-twelve", "dog"],
}


@pytest.fixture(scope="module")
def keys() -> dict[int, int]:
    return {client: secure_sum.generate_private_key() for client in CLIENT_IDS}


@pytest.fixture(scope="module")
def public_keys(keys) -> dict[int, int]:
    return {client: secure_sum.public_key(private) for client, private in keys.items()}


@pytest.fixture(scope="module")
def params() -> iblt.IbltParams:
    return iblt.params_for(20, seed="secure-sum-test", failure_prob=1e-6)


@pytest.fixture(scope="module")
def masked(keys, public_keys, params) -> dict[int, np.ndarray]:
    context = params.fingerprint.encode()
    return {
        client: secure_sum.mask_table(iblt.encode_labels(params, CLIENT_LABELS[client]), client, keys[client], public_keys, context)
        for client in CLIENT_IDS
    }


def test_diffie_hellman_agrees_and_keys_are_fresh(keys, public_keys):
    a, b = 0, 3
    assert secure_sum.shared_secret(keys[a], public_keys[b]) == secure_sum.shared_secret(keys[b], public_keys[a])
    assert len(set(keys.values())) == len(keys)
    seed_ab = secure_sum.pair_seed(secure_sum.shared_secret(keys[a], public_keys[b]), a, b)
    assert seed_ab == secure_sum.pair_seed(secure_sum.shared_secret(keys[b], public_keys[a]), b, a)
    assert len(seed_ab) == 32


@pytest.mark.parametrize("bad", [0, 1, P - 1, P, P - 2, -5])  # P - 2 is a non-residue (p = 7 mod 8)
def test_public_keys_outside_the_prime_order_subgroup_are_refused(bad):
    with pytest.raises(UserError, match="not a valid"):
        secure_sum.check_public_key(bad)


def test_masks_cancel_exactly_in_the_sum(masked, params):
    plain = iblt.sum_tables(iblt.encode_labels(params, CLIENT_LABELS[c]) for c in CLIENT_IDS)
    assert np.array_equal(iblt.sum_tables(masked.values()), plain)
    assert np.array_equal(secure_sum.unmask_sum(masked, CLIENT_IDS, {}, params.fingerprint.encode()), plain)
    expected = Counter(label for labels in CLIENT_LABELS.values() for label in labels)
    assert iblt.decode(params, plain) == dict(expected)


def test_a_single_masked_table_decodes_to_nothing(masked, params):
    table = masked[4]
    assert iblt.peel(params, table).counts == {}
    with pytest.raises(IbltDecodeError):
        iblt.decode(params, table)


def test_a_single_masked_table_looks_uniform(masked):
    cells = masked[7].ravel()
    top_bytes = (cells >> np.uint64(56)).astype(np.int64)
    observed = np.bincount(top_bytes, minlength=256)
    assert chisquare(observed).pvalue > 1e-6
    bits = ((cells[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).mean(axis=0)
    sigma = 0.5 / np.sqrt(cells.size)
    assert np.all(np.abs(bits - 0.5) < 6 * sigma)  # every bit position fair, 6 standard deviations


def test_masks_depend_on_the_context():
    seed = bytes(range(32))
    first = secure_sum.expand_mask(seed, (4, 5), b"round-1")
    assert np.array_equal(first, secure_sum.expand_mask(seed, (4, 5), b"round-1"))
    assert not np.array_equal(first, secure_sum.expand_mask(seed, (4, 5), b"round-2"))


def test_dropped_clients_are_recovered_from_the_survivors_reveals(keys, public_keys, masked, params):
    dropped = [3, 12]
    survivors = [c for c in CLIENT_IDS if c not in dropped]
    reveals = {c: secure_sum.pairwise_seeds(c, keys[c], public_keys, dropped) for c in survivors}
    total = secure_sum.unmask_sum({c: masked[c] for c in survivors}, CLIENT_IDS, reveals, params.fingerprint.encode())
    expected = Counter(label for c in survivors for label in CLIENT_LABELS[c])
    assert iblt.decode(params, total) == dict(expected)
    assert "only-twelve" not in iblt.decode(params, total)


def test_without_reveals_the_dropped_masks_leave_noise(masked, params):
    # the server's own sum of survivors is useless until the reveals arrive
    survivors = {c: masked[c] for c in CLIENT_IDS if c != 3}
    with pytest.raises(IbltDecodeError):
        iblt.decode(params, iblt.sum_tables(survivors.values()))


def test_missing_or_overreaching_reveals_are_refused(keys, public_keys, masked, params):
    context = params.fingerprint.encode()
    survivors = {c: masked[c] for c in CLIENT_IDS if c != 3}
    partial = {c: secure_sum.pairwise_seeds(c, keys[c], public_keys, [3]) for c in list(survivors)[1:]}
    with pytest.raises(UserError, match="has not revealed"):
        secure_sum.unmask_sum(survivors, CLIENT_IDS, partial, context)
    exposing = {0: secure_sum.pairwise_seeds(0, keys[0], public_keys, [3, 4])}
    with pytest.raises(UserError, match="tables are present"):
        secure_sum.unmask_sum(survivors, CLIENT_IDS, exposing, context)


def test_masking_needs_a_peer(keys, public_keys, params):
    table = iblt.encode_labels(params, ["solo"])
    with pytest.raises(UserError, match="at least one other"):
        secure_sum.mask_table(table, 0, keys[0], {0: public_keys[0]}, b"")

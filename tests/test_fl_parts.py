"""Sampling, rank assignment, secure aggregation, metrics: the simulator's parts, one process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from gptfl_hpc.fl.aggregate import RoundAggregator
from gptfl_hpc.fl.metrics import accuracy, gradient_diversity, macro_f1
from gptfl_hpc.fl.sampling import assign_to_ranks, client_seed, sample_clients

CPU = torch.device("cpu")


def test_cohort_is_keyed_on_seed_and_round_without_replacement():
    cohorts = [sample_clients(0, t, 100, 10) for t in range(1, 6)]
    for cohort in cohorts:
        assert len(set(cohort.tolist())) == 10 and cohort.min() >= 0 and cohort.max() < 100
        assert list(cohort) == sorted(cohort)
    assert np.array_equal(sample_clients(0, 3, 100, 10), cohorts[2])  # a resumed run draws the same
    assert len({tuple(c) for c in cohorts}) == 5
    assert not np.array_equal(sample_clients(1, 3, 100, 10), cohorts[2])
    assert sorted(sample_clients(0, 1, 10, 10).tolist()) == list(range(10))


def test_client_streams_depend_on_seed_round_and_client_only():
    seeds = {client_seed(s, t, c) for s in range(2) for t in range(3) for c in range(4)}
    assert len(seeds) == 24 and client_seed(0, 1, 2) == client_seed(0, 1, 2)
    assert all(0 <= s < 2**63 for s in seeds)


def test_assignment_balances_samples_and_covers_every_client_once():
    clients = [3, 8, 11, 20, 42, 57]
    costs = [500, 100, 80, 70, 60, 40]
    two = assign_to_ranks(clients, costs, 2)
    assert sorted(c for rank in two for c in rank) == clients
    loads = [sum(costs[clients.index(c)] for c in rank) for rank in two]
    assert loads == [500, 350]  # the big client alone; the rest together
    assert assign_to_ranks(clients, costs, 2) == two
    assert assign_to_ranks(clients, costs, 1) == [clients]
    assert assign_to_ranks([1], [5], 3) == [[1], [], []]


# --------------------------------------------------------------------------- secure aggregation


def aggregate(deltas: dict[int, torch.Tensor], weights: dict[int, float], frac_bits=None, control=False):
    state = next(iter(deltas.values())).numel()
    agg = RoundAggregator(state, state - 2, len(deltas), control, CPU, frac_bits, seed=4)
    agg.begin(7, sorted(deltas), weights)
    for client, delta in deltas.items():
        kwargs = {}
        if control:
            kwargs = dict(control_delta=delta[: state - 2] * 0.5, new_control=delta[: state - 2] * 2)
        agg.add(client, delta, mean_loss=0.1 * client, steps=client, **kwargs)
    return agg, agg.reduce(False)


def random_round(k: int = 5, size: int = 300, scale: float = 1.0):
    g = torch.Generator().manual_seed(k)
    deltas = {c: torch.randn(size, generator=g) * scale for c in range(2, 2 + k)}
    weights = {c: float(10 + 3 * c) for c in deltas}
    return deltas, weights


def test_plain_aggregate_is_the_weighted_mean_and_diversity_formula():
    deltas, weights = random_round()
    _, sums = aggregate(deltas, weights)
    total = sum(weights.values())
    want = sum(weights[c] * deltas[c].double() for c in deltas) / total
    torch.testing.assert_close(sums.update, want, rtol=1e-12, atol=1e-12)
    params = [d[:-2].double() for d in deltas.values()]
    expected = sum(float(p @ p) for p in params) / float(sum(params) @ sum(params))
    assert gradient_diversity(sums.sq_norm_sum, sums.plain_sq_norm) == pytest.approx(expected, rel=1e-12)
    assert sums.weight_total == total and sums.steps == sum(deltas)
    assert sums.loss == pytest.approx(sum(weights[c] * 0.1 * c for c in deltas) / total)


def test_equal_weights_need_no_extra_sum_for_diversity():
    deltas, _ = random_round(k=4)
    agg, sums = aggregate(deltas, {c: 1.0 for c in deltas})
    assert not agg.layout.plain
    params = [d[:-2].double() for d in deltas.values()]
    expected = sum(float(p @ p) for p in params) / float(sum(params) @ sum(params))
    assert gradient_diversity(sums.sq_norm_sum, sums.plain_sq_norm) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("frac_bits", [16, 32])
def test_secure_aggregate_equals_plain_within_the_quantization_bound(frac_bits):
    deltas, weights = random_round(k=5, scale=3.0)
    _, plain = aggregate(deltas, weights, control=True)
    agg, secure = aggregate(deltas, weights, frac_bits, control=True)
    bound = len(deltas) * 2.0 ** -(frac_bits + 1)
    assert (secure.update - plain.update).abs().max() <= bound
    assert (secure.control_sum - plain.control_sum).abs().max() <= bound
    assert secure.weight_total == plain.weight_total  # integers are exact in fixed point
    assert abs(secure.sq_norm_sum - plain.sq_norm_sum) <= bound
    assert torch.equal(secure.client_state, plain.client_state)  # client state rows travel bit-exact
    assert (secure.update - plain.update).abs().max() > 0  # it really went through fixed point


def test_secure_masks_hide_each_client_and_cancel_in_the_sum():
    deltas, weights = random_round(k=3)
    agg = RoundAggregator(300, 298, 3, False, CPU, 32, seed=4)
    agg.begin(1, sorted(deltas), weights)
    first = sorted(deltas)[0]
    agg.add(first, deltas[first], 0.0, 1)
    masked = agg.buffer[: agg.layout.masked_size].clone()
    encoded = torch.round(deltas[first].double() * weights[first] / sum(weights.values()) * 2.0**32).to(torch.int64)
    assert (masked[:300] == encoded).float().mean() < 0.01  # one client's share alone looks random
    for client in sorted(deltas)[1:]:
        agg.add(client, deltas[client], 0.0, 1)
    sums = agg.reduce(False)
    want = sum(weights[c] * deltas[c].double() for c in deltas) / sum(weights.values())
    assert (sums.update - want).abs().max() <= 3 * 2.0**-33


def test_secure_overflow_is_refused():
    deltas, weights = random_round(k=2, scale=1e12)
    with pytest.raises(OverflowError, match="frac_bits"):
        aggregate(deltas, weights, frac_bits=32)


# --------------------------------------------------------------------------- metrics


def test_accuracy_and_macro_f1_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 4, 200))
    confusion = np.zeros((6, 6), np.int64)
    np.add.at(confusion, (y, pred), 1)
    assert accuracy(confusion) == pytest.approx(np.mean(y == pred))
    assert macro_f1(confusion) == pytest.approx(f1_score(y, pred, average="macro"))
    assert gradient_diversity(1.0, 0.0) is None


def test_audio_samples_of_no_index_are_empty_tensors(tmp_path):
    """A rank's share of a test set smaller than one batch per rank holds nothing, also for audio."""
    from fixtures_data import write_speech_commands

    from gptfl_hpc.data.config import DataConfig
    from gptfl_hpc.data.factory import feature_transform, open_dataset
    from gptfl_hpc.fl.clientdata import load_samples

    config = DataConfig(dataset="speech_commands", root=write_speech_commands(tmp_path, ["yes/spk0_nohash_0.wav"]))
    train = open_dataset(config)
    empty = load_samples(train, [], CPU, feature_transform(config, train.modality))
    assert len(empty) == 0 and empty.lengths is not None and len(empty.lengths) == 0

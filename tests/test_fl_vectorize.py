"""Vectorized cohorts (``federate.vectorize``) against sequential local training.

Tolerance: the batched kernels (grouped convolution, batched matrix products) add up the same
products in another order than the per-client kernels, so every operation may differ in the last
float32 bits (~1e-7 relative), and SGD carries that through the local steps. On these small,
well-conditioned problems one client's trained parameters stay within 1e-5 of its sequential
update (seen: ~1e-7), and two whole rounds of every algorithm within 1e-5 as well. (Training can
amplify last-bit differences far more: on the quickstart's digits, sequential training on one
thread and on two threads already ends 1e-4 apart after one local epoch. Hence small problems here.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gptfl_hpc.fl.client import FlatModel, LocalTrainer
from gptfl_hpc.fl.clientdata import Samples
from gptfl_hpc.fl.cohort import CohortTrainer, unsupported_reason
from gptfl_hpc.fl.config import ClientConfig, FederateConfig
from gptfl_hpc.fl.simulator import FederationData, Simulation
from gptfl_hpc.models.convnet import ConvNet
from gptfl_hpc.models.registry import build_model

TOLERANCE = 1e-5
SIZES = [23, 7, 16, 40, 3, 11, 29, 18]  # batch 5: short last batches, 1 to 8 steps per epoch
CLASSES = 10


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def client_data(sizes=SIZES, image_size: int = 16) -> list[Samples]:
    g = torch.Generator().manual_seed(0)
    return [
        Samples(torch.randn(n, 3, image_size, image_size, generator=g), torch.randint(0, CLASSES, (n,), generator=g))
        for n in sizes
    ]


def small_model(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return ConvNet(CLASSES, width=8, depth=2, image_size=16)


CLIENT_SETTINGS = {
    "sgd": dict(config=dict(batch_size=5, lr=0.05), prox_mu=0.0, correction=False),
    "momentum, weight decay, 2 epochs": dict(
        config=dict(batch_size=5, lr=0.05, momentum=0.9, weight_decay=1e-3, local_epochs=2), prox_mu=0.0, correction=False
    ),
    "fedprox": dict(config=dict(batch_size=5, lr=0.05), prox_mu=0.5, correction=False),
    "scaffold correction": dict(config=dict(batch_size=5, lr=0.05, momentum=0.5), prox_mu=0.0, correction=True),
}


@pytest.mark.parametrize("setting", list(CLIENT_SETTINGS))
def test_each_client_update_equals_its_sequential_update(setting):
    spec = CLIENT_SETTINGS[setting]
    config = ClientConfig(**spec["config"])
    flat = FlatModel(small_model(), torch.device("cpu"))
    global_state = flat.state.clone()
    data = client_data()
    seeds = [1000 + i for i in range(len(data))]
    g = torch.Generator().manual_seed(7)
    corrections = 0.01 * torch.randn(len(data), flat.num_params, generator=g) if spec["correction"] else None
    sequential = LocalTrainer(flat, config, spec["prox_mu"])
    vectorized = CohortTrainer(flat, config, capacity=5, prox_mu=spec["prox_mu"], control=spec["correction"])
    for chunk in (list(range(5)), [5, 6, 7]):  # a full chunk, then a smaller one
        results = vectorized.train(
            global_state, [data[i] for i in chunk], [seeds[i] for i in chunk],
            corrections[chunk] if corrections is not None else None,
        )
        updates = vectorized.updates(global_state)
        for slot, i in enumerate(chunk):
            expected = sequential.train(
                global_state, data[i], seeds[i], corrections[i].clone() if corrections is not None else None
            )
            reference = flat.state.clone()
            trained = global_state + updates[slot]
            assert results[slot].steps == expected.steps == config.local_epochs * -(-SIZES[i] // config.batch_size)
            assert results[slot].mean_loss == pytest.approx(expected.mean_loss, rel=TOLERANCE)
            assert float((trained - reference).abs().max()) <= TOLERANCE
            assert float((reference - global_state).abs().max()) > 100 * TOLERANCE  # the client did move


def simulation(algorithm: str, vectorize, rounds: int = 2) -> Simulation:
    data = client_data()
    test = client_data([20])[0]
    fed = FederateConfig(
        algorithm=algorithm, init="scratch", rounds=rounds, clients_per_round=5, eval_every=rounds, vectorize=vectorize,
        client=ClientConfig(batch_size=5, lr=0.05, momentum=0.5 if algorithm == "fedavgm" else 0.0),
    )
    federation = FederationData(dict(enumerate(data)), np.array(SIZES), test, [str(k) for k in range(CLASSES)])
    return Simulation(0, 1, fed, 0, small_model(), federation, torch.device("cpu"))


@pytest.mark.parametrize("algorithm", ["fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "fedprox", "scaffold"])
def test_vectorized_rounds_equal_sequential_rounds(algorithm):
    sequential, vectorized = simulation(algorithm, None), simulation(algorithm, 3)
    sequential.run()
    vectorized.run()
    assert float((vectorized.global_state - sequential.global_state).abs().max()) <= TOLERANCE
    for ours, theirs in zip(vectorized.records, sequential.records):
        assert ours.get("clients") == theirs.get("clients")
        assert ours.get("local_steps") == theirs.get("local_steps")
        if "train_loss" in ours:
            assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=TOLERANCE)
    if algorithm == "scaffold":
        assert float((vectorized.algorithm.control.clients - sequential.algorithm.control.clients).abs().max()) <= 1e-3  # c_i = dy / (K lr)
        assert float((vectorized.algorithm.control.c - sequential.algorithm.control.c).abs().max()) <= 1e-3


def test_vectorized_runs_repeat_bit_identically():
    first, second = simulation("fedavg", 4, rounds=3), simulation("fedavg", 4, rounds=3)
    first.run()
    second.run()
    assert torch.equal(first.global_state, second.global_state)
    assert first.records == second.records


def test_parameters_are_laid_out_like_their_batched_gradients():
    """A Linear weight's batched gradient comes back transposed; its stacked copy is stored that way."""
    flat = FlatModel(small_model(), torch.device("cpu"))
    trainer = CohortTrainer(flat, ClientConfig(batch_size=5, lr=0.05), capacity=3)
    data = client_data([10, 10, 10])
    trainer.train(flat.state.clone(), data, [1, 2, 3])
    names = trainer.names
    linear = trainer.params[names.index("classifier.weight")]
    conv = trainer.params[names.index("features.0.weight")]
    assert conv.is_contiguous() and not linear.is_contiguous()
    assert linear.transpose(1, 2).is_contiguous()
    for leaf in trainer._leaves_for(3):
        assert leaf.grad is not None and leaf.grad.stride() == leaf.stride()


@pytest.mark.parametrize(
    "name, options, layer",
    [
        ("resnet18", {}, "BatchNorm2d"),
        ("audio_crnn", {"n_mels": 16}, "Dropout"),
        ("audio_crnn", {"n_mels": 16, "dropout": 0.0}, "GRU"),
    ],
)
def test_models_that_cannot_match_sequential_training_are_refused(name, options, layer):
    model = build_model(name, CLASSES, **options)
    reason = unsupported_reason(model)
    assert reason is not None and layer in reason and "federate.vectorize=null" in reason
    with pytest.raises(ValueError, match=layer):
        CohortTrainer(FlatModel(model, torch.device("cpu")), ClientConfig(), capacity=2)


@pytest.mark.parametrize("name", ["convnet", "vgg19"])
def test_convnet_and_vgg19_are_supported(name):
    with torch.device("meta"):
        model = build_model(name, CLASSES)
    assert unsupported_reason(model) is None


@pytest.mark.parametrize("control", [False, True])
def test_adding_many_clients_at_once_equals_adding_them_one_by_one(control):
    from gptfl_hpc.fl.aggregate import RoundAggregator

    g = torch.Generator().manual_seed(3)
    cohort, state, params = [2, 5, 9, 11], 12, 10
    weights = {2: 3.0, 5: 1.0, 9: 7.0, 11: 2.0}
    deltas = torch.randn(4, state, generator=g)
    control_deltas, new_controls = torch.randn(4, params, generator=g), torch.randn(4, params, generator=g)
    losses, steps = [0.5, 1.5, 2.0, 0.25], [3, 1, 7, 2]
    one, many = (RoundAggregator(state, params, 4, control, torch.device("cpu")) for _ in range(2))
    for aggregator in (one, many):
        aggregator.begin(1, cohort, weights)
    for client in [9, 2, 11, 5]:  # another order than the cohort's
        row = [9, 2, 11, 5].index(client)
        one.add(client, deltas[row], losses[row], steps[row], control_deltas[row] if control else None,
                new_controls[row] if control else None)
    many.add_many([9, 2, 11, 5], deltas, losses, steps, control_deltas if control else None, new_controls if control else None)
    a, b = one.reduce(False), many.reduce(False)
    assert torch.allclose(a.update, b.update, rtol=0, atol=1e-12)
    assert (a.weight_total, a.steps) == (b.weight_total, b.steps) == (13.0, 13)
    assert a.loss == pytest.approx(b.loss, abs=1e-12) and a.sq_norm_sum == pytest.approx(b.sq_norm_sum, rel=1e-12)
    assert a.plain_sq_norm == pytest.approx(b.plain_sq_norm, rel=1e-12)
    if control:
        assert torch.equal(a.client_state, b.client_state)
        assert torch.allclose(a.control_sum, b.control_sum, rtol=0, atol=1e-12)

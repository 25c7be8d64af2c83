"""Client algorithms as plug-in objects: the registry, each one's terms and state against the papers' math,
checkpoint round trips, and a guard that the round loop never branches on an algorithm's name."""

from __future__ import annotations

import ast
import inspect
import io
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gptfl_hpc import durable
from gptfl_hpc.fl import client, cohort, simulator
from gptfl_hpc.fl.aggregate import RoundAggregator
from gptfl_hpc.fl.algorithms import ALGORITHMS, FedAvg, FedProx, Scaffold, make_algorithm
from gptfl_hpc.fl.client import FlatModel, LocalTrainer
from gptfl_hpc.fl.clientdata import Samples
from gptfl_hpc.fl.cohort import stacked_bytes
from gptfl_hpc.fl.config import Algorithm, ClientConfig, FederateConfig
from gptfl_hpc.fl.simulator import ALGORITHM_STATE, FederationData, Simulation

CPU = torch.device("cpu")


def federate_config(algorithm: str, **client) -> FederateConfig:
    return FederateConfig(algorithm=algorithm, client=ClientConfig(**client))


# --------------------------------------------------------------------------- registry


def test_every_configurable_name_maps_to_its_client_algorithm():
    assert set(ALGORITHMS) == set(typing.get_args(Algorithm))
    for name in ("fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad"):
        algorithm = make_algorithm(federate_config(name, prox_mu=0.3))
        assert type(algorithm) is FedAvg
        assert (algorithm.prox_mu, algorithm.stateful_clients, algorithm.extra_stacks) == (0.0, False, 0)
    fedprox = make_algorithm(federate_config("fedprox", prox_mu=0.3))
    assert type(fedprox) is FedProx and fedprox.prox_mu == 0.3 and not fedprox.stateful_clients
    scaffold = make_algorithm(federate_config("scaffold", lr=0.07))
    assert type(scaffold) is Scaffold and scaffold.lr == 0.07 and scaffold.prox_mu == 0.0


def test_unknown_algorithm_name_is_refused():
    config = FederateConfig().model_copy(update={"algorithm": "fedsgd"})  # past the schema, as a plug-in typo would be
    with pytest.raises(ValueError, match="'fedsgd' is not one of: fedavg, "):
        make_algorithm(config)


def test_memory_estimate_counts_each_algorithms_extra_stacks():
    params, capacity = 1000, 8
    for name, momentum, mu, stacks in [
        ("fedavg", 0.0, 0.01, 3),
        ("fedadam", 0.9, 0.01, 4),
        ("fedprox", 0.0, 0.01, 4),  # the proximal centre
        ("fedprox", 0.0, 0.0, 3),  # mu = 0: no centre is kept
        ("scaffold", 0.9, 0.01, 5),  # momentum and the correction
    ]:
        config = federate_config(name, momentum=momentum, prox_mu=mu)
        needed = stacked_bytes(params, capacity, config.client, make_algorithm(config).extra_stacks)
        assert needed == stacks * capacity * params * 4, name


# --------------------------------------------------------------------------- FedAvg and FedProx


def test_fedavg_adds_no_terms_and_keeps_no_state():
    algorithm = FedAvg()
    algorithm.setup(5, 3, CPU)
    x, y = torch.zeros(3), torch.ones(3)
    assert algorithm.correction(2) is None and algorithm.corrections([0, 2]) is None
    assert algorithm.client_state_change(2, x, y, 4) == (None, None)
    assert algorithm.cohort_state_changes([0, 2], torch.ones(2, 3), [4, 4]) == (None, None)
    assert algorithm.state_dict() == {} and algorithm.extra_traffic(3) == 0


def one_sample_model(weights) -> FlatModel:
    """Logits = w (input 1, no bias): the cross-entropy gradient is softmax(w) - onehot, by hand."""
    model = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor(weights).view(2, 1))
    return FlatModel(model, CPU)


def ce_gradient(w: np.ndarray, label: int) -> np.ndarray:
    softmax = np.exp(w) / np.exp(w).sum()
    return softmax - np.eye(2)[label]


@pytest.mark.parametrize("name, mu", [("fedprox", 0.8), ("fedavg", 0.0)])
def test_fedprox_local_gradient_is_g_plus_mu_times_w_minus_x(name, mu):
    """Two steps on one sample: the first starts at x (no pull), the second adds mu (w1 - x)."""
    lr, label, x = 0.5, 1, np.array([0.3, -0.2])
    config = federate_config(name, batch_size=1, lr=lr, local_epochs=2, prox_mu=0.8)
    algorithm = make_algorithm(config)
    assert algorithm.prox_mu == mu
    flat = one_sample_model(x)
    result = LocalTrainer(flat, config.client, algorithm.prox_mu).train(
        flat.state.clone(), Samples(torch.ones(1, 1), torch.tensor([label])), seed=0, correction=algorithm.correction(0)
    )
    w1 = x - lr * ce_gradient(x, label)
    w2 = w1 - lr * (ce_gradient(w1, label) + mu * (w1 - x))
    assert result.steps == 2
    np.testing.assert_allclose(flat.params.numpy(), w2, atol=1e-7)
    without_pull = w1 - lr * ce_gradient(w1, label)
    assert np.abs(w2 - without_pull).min() == pytest.approx(lr * mu * np.abs(w1 - x).min())  # 0.12 for FedProx


# --------------------------------------------------------------------------- SCAFFOLD


def scaffold_with_state(num_clients: int, num_params: int, lr: float) -> Scaffold:
    algorithm = Scaffold(lr)
    algorithm.setup(num_clients, num_params, CPU)
    g = torch.Generator().manual_seed(11)
    algorithm.control.c.copy_(torch.randn(num_params, generator=g))
    algorithm.control.clients.copy_(torch.randn(num_clients, num_params, generator=g))
    return algorithm


def test_scaffold_correction_client_report_and_server_update_follow_option_two():
    """Karimireddy et al., option II: correction c - c_i; c_i+ = c_i - c + (x - y_i) / (K lr);
    the server stores c_i+ and sets c += (1/N) sum_{i in S} (c_i+ - c_i)."""
    num_clients, num_params, lr = 5, 4, 0.1
    algorithm = scaffold_with_state(num_clients, num_params, lr)
    c, c_clients = algorithm.control.c.double().numpy().copy(), algorithm.control.clients.double().numpy().copy()
    cohort, steps = [3, 1], {3: 4, 1: 7}
    g = torch.Generator().manual_seed(5)
    x = torch.randn(num_params, generator=g)
    ys = {k: x + 0.1 * torch.randn(num_params, generator=g) for k in cohort}

    for k in cohort:
        np.testing.assert_allclose(algorithm.correction(k).numpy(), c - c_clients[k], atol=1e-6)
    np.testing.assert_allclose(algorithm.corrections(cohort).numpy(), c - c_clients[cohort], atol=1e-6)

    want = {k: c_clients[k] - c + (x.double().numpy() - ys[k].double().numpy()) / (steps[k] * lr) for k in cohort}
    aggregator = RoundAggregator(num_params, num_params, len(cohort), True, CPU)
    aggregator.begin(1, cohort, {k: 1.0 for k in cohort})
    for k in cohort:
        change, new = algorithm.client_state_change(k, x, ys[k], steps[k])
        np.testing.assert_allclose(new.numpy(), want[k], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(change.numpy(), want[k] - c_clients[k], rtol=1e-5, atol=1e-5)
        aggregator.add(k, ys[k] - x, 0.0, steps[k], change, new)
    deltas = torch.stack([ys[k] - x for k in cohort])
    changes, news = algorithm.cohort_state_changes(cohort, deltas, [steps[k] for k in cohort])
    np.testing.assert_allclose(news.numpy(), np.stack([want[k] for k in cohort]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(changes.numpy(), np.stack([want[k] - c_clients[k] for k in cohort]), rtol=1e-5, atol=1e-5)

    algorithm.after_round(cohort, aggregator.reduce(False))
    expected_c = c + sum(want[k] - c_clients[k] for k in cohort) / num_clients
    np.testing.assert_allclose(algorithm.control.c.numpy(), expected_c, rtol=1e-5, atol=1e-5)
    for k in range(num_clients):
        np.testing.assert_allclose(algorithm.control.clients[k].numpy(), want.get(k, c_clients[k]), rtol=1e-5, atol=1e-5)
    assert algorithm.extra_traffic(num_params) == num_params  # c down, c_i+ - c_i up


def test_scaffold_state_round_trips_under_the_checkpoint_keys():
    saved = scaffold_with_state(6, 3, 0.1)
    buffer = io.BytesIO()
    torch.save(saved.state_dict(), buffer)
    state = torch.load(io.BytesIO(buffer.getvalue()))
    assert set(state) == {"c", "clients"}  # the keys SCAFFOLD checkpoints have always had
    loaded = Scaffold(0.1)
    loaded.setup(6, 3, CPU)
    assert not torch.equal(loaded.control.clients, saved.control.clients)
    loaded.load_state_dict(state)
    assert torch.equal(loaded.control.c, saved.control.c) and torch.equal(loaded.control.clients, saved.control.clients)
    assert torch.equal(loaded.correction(4), saved.correction(4))


# --------------------------------------------------------------------------- through the round loop

SIZES = [6, 9, 4, 7]


def tiny_simulation(algorithm: str, rounds: int, out_dir: Path) -> Simulation:
    g = torch.Generator().manual_seed(0)
    clients = {c: Samples(torch.randn(n, 3, generator=g), torch.randint(0, 2, (n,), generator=g)) for c, n in enumerate(SIZES)}
    test = Samples(torch.randn(10, 3, generator=g), torch.randint(0, 2, (10,), generator=g))
    fed = FederateConfig(
        algorithm=algorithm, init="scratch", rounds=rounds, clients_per_round=3, eval_every=1, checkpoint_every=1,
        client=ClientConfig(batch_size=3, lr=0.2),
    )
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    return Simulation(0, 1, fed, 0, model, FederationData(clients, np.array(SIZES), test, ["a", "b"]), CPU, out_dir=out_dir)


def test_scaffold_run_resumed_from_its_checkpoint_equals_an_uninterrupted_one(tmp_path):
    whole = tiny_simulation("scaffold", 3, tmp_path / "whole")
    whole.run()
    tiny_simulation("scaffold", 2, tmp_path / "resumed").run()
    checkpoint = durable.load_checkpoint(durable.read_latest(tmp_path / "resumed" / "checkpoints"))
    assert set(checkpoint[ALGORITHM_STATE]) == {"c", "clients"} and ALGORITHM_STATE == "control"
    assert checkpoint[ALGORITHM_STATE]["clients"].abs().sum() > 0  # clients trained: their c_i moved
    resumed = tiny_simulation("scaffold", 3, tmp_path / "resumed")
    resumed.run()
    assert torch.equal(resumed.global_state, whole.global_state)
    assert torch.equal(resumed.algorithm.control.c, whole.algorithm.control.c)
    assert torch.equal(resumed.algorithm.control.clients, whole.algorithm.control.clients)
    assert resumed.records == whole.records
    assert whole.records[1]["params_down"] == 3 * (whole.flat.size + whole.flat.num_params)


def test_stateless_algorithms_write_no_algorithm_state(tmp_path):
    sim = tiny_simulation("fedprox", 1, tmp_path / "fedprox")
    sim.run()
    checkpoint = durable.load_checkpoint(durable.read_latest(tmp_path / "fedprox" / "checkpoints"))
    assert ALGORITHM_STATE not in checkpoint
    assert sim.records[1]["params_down"] == 3 * sim.flat.size


def _compares_algorithm(tree: ast.AST) -> list[str]:
    """Comparisons that read an ``algorithm`` attribute or name (``fed.algorithm == ...``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                if any(isinstance(n, ast.Attribute) and n.attr == "algorithm" for n in ast.walk(operand)):
                    found.append(ast.unparse(node))
    return found


def test_round_loop_and_trainers_never_branch_on_an_algorithm_name():
    source = inspect.getsource(simulator).lower()
    assert [name for name in ALGORITHMS if name in source] == []
    for module in (simulator, client, cohort):
        tree = ast.parse(inspect.getsource(module))
        literals = {n.value.lower() for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert literals.isdisjoint(ALGORITHMS), module.__name__
        assert _compares_algorithm(tree) == [], module.__name__
    # the guard itself can fail: the branching it replaced is caught
    assert _compares_algorithm(ast.parse('prox = fed.algorithm == "fedprox"')) == ["fed.algorithm == 'fedprox'"]

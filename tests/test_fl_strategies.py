"""Server updates: reference formulas (Reddi et al.), Flower's strategies, FedProx, SCAFFOLD by hand.

Fixed client models go through the simulator's own path: ``RoundAggregator`` (sample-weighted
sum) then the server optimizer, in float64 so the comparison is to 1e-6 with room to spare.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gptfl_hpc.fl.aggregate import RoundAggregator
from gptfl_hpc.fl.algorithms import ControlVariates
from gptfl_hpc.fl.client import FlatModel, LocalTrainer
from gptfl_hpc.fl.clientdata import Samples
from gptfl_hpc.fl.config import ClientConfig
from gptfl_hpc.fl.strategies import FedAdagrad, FedAdam, FedAvgM, FedYogi, ServerOptimizer

SIZES = [20, 50, 30]
ROUNDS = 3
DIM = 7


def client_models(round_index: int, x: np.ndarray) -> list[np.ndarray]:
    rng = np.random.default_rng(100 + round_index)
    return [x + rng.normal(0, 0.1, size=x.shape) for _ in SIZES]


def our_run(optimizer: ServerOptimizer, x0: np.ndarray) -> list[np.ndarray]:
    """Global model after each round, through the aggregator and the server step."""
    x = torch.tensor(x0, dtype=torch.float64)
    cohort = list(range(len(SIZES)))
    history = []
    aggregator = RoundAggregator(DIM, DIM, len(SIZES), False, torch.device("cpu"))
    for t in range(1, ROUNDS + 1):
        aggregator.begin(t, cohort, {c: float(n) for c, n in zip(cohort, SIZES)})
        for c, y in zip(cohort, client_models(t, x.numpy())):
            aggregator.add(c, torch.tensor(y - x.numpy(), dtype=torch.float32).double(), 0.0, 1)
        optimizer.step(x, aggregator.reduce(False).update)
        history.append(x.numpy().copy())
    return history


def reference_run(kind: str, x0: np.ndarray, lr: float, b1=0.9, b2=0.99, tau=1e-3, momentum=0.9, bias=False):
    """Reddi et al., Algorithm 2 (m_0 = 0, v_0 = tau^2), written out with NumPy."""
    x, m, v = x0.copy(), np.zeros_like(x0), np.full_like(x0, tau**2)
    history = []
    for t in range(1, ROUNDS + 1):
        ys = [np.float64(np.float32(y - x)) for y in client_models(t, x)]
        delta = sum(n * d for n, d in zip(SIZES, ys)) / sum(SIZES)
        if kind == "fedavg":
            x = x + lr * delta
        elif kind == "fedavgm":
            m = momentum * m + delta
            x = x + lr * m
        else:
            m = b1 * m + (1 - b1) * delta
            if kind == "fedadagrad":
                v = v + delta**2
            elif kind == "fedadam":
                v = b2 * v + (1 - b2) * delta**2
            else:
                v = v - (1 - b2) * delta**2 * np.sign(v - delta**2)
            step = lr * np.sqrt(1 - b2**t) / (1 - b1**t) if bias else lr
            x = x + step * m / (np.sqrt(v) + tau)
        history.append(x)
    return history


X0 = np.random.default_rng(7).normal(size=DIM)


@pytest.mark.parametrize(
    "kind, optimizer, kwargs",
    [
        ("fedavg", lambda: ServerOptimizer(1.0), dict(lr=1.0)),
        ("fedavg", lambda: ServerOptimizer(0.5), dict(lr=0.5)),
        ("fedavgm", lambda: FedAvgM(1.0, 0.9), dict(lr=1.0, momentum=0.9)),
        ("fedadam", lambda: FedAdam(0.01, 0.9, 0.99, 1e-3), dict(lr=0.01)),
        ("fedadam", lambda: FedAdam(0.01, 0.9, 0.99, 1e-3, bias_correction=True), dict(lr=0.01, bias=True)),
        ("fedyogi", lambda: FedYogi(0.01, 0.9, 0.99, 1e-3), dict(lr=0.01)),
        ("fedadagrad", lambda: FedAdagrad(0.1, 0.5, 0.0, 1e-2), dict(lr=0.1, b1=0.5, tau=1e-2)),
    ],
)
def test_server_updates_equal_reference_formulas(kind, optimizer, kwargs):
    ours = our_run(optimizer(), X0)
    reference = reference_run(kind, X0, **kwargs)
    for got, want in zip(ours, reference):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert not np.allclose(ours[-1], X0)


# --------------------------------------------------------------------------- Flower

# Flower is in the dev extra that `make test` installs: a missing Flower is a setup error, not a skip.
import flwr.common as flwr_common  # noqa: E402
import flwr.server.strategy as flwr_strategy  # noqa: E402


def flower_run(strategy, x0: np.ndarray, round_offset: int = 0) -> list[np.ndarray]:
    x = x0.copy()
    history = []
    ok = flwr_common.Status(code=flwr_common.Code.OK, message="")
    for t in range(1, ROUNDS + 1):
        ys = [x + np.float64(np.float32(y - x)) for y in client_models(t, x)]
        results = [
            (None, flwr_common.FitRes(ok, flwr_common.ndarrays_to_parameters([y]), n, {}))
            for y, n in zip(ys, SIZES)
        ]
        params, _ = strategy.aggregate_fit(t + round_offset, results, [])
        (x,) = flwr_common.parameters_to_ndarrays(params)
        history.append(x)
    return history


def flower_strategy(name: str, x0: np.ndarray, **kwargs):
    initial = flwr_common.ndarrays_to_parameters([x0])
    cls = {"fedavg": flwr_strategy.FedAvg, "fedavgm": flwr_strategy.FedAvgM, "fedadam": flwr_strategy.FedAdam,
           "fedyogi": flwr_strategy.FedYogi, "fedadagrad": flwr_strategy.FedAdagrad}[name]
    return cls(initial_parameters=initial, **kwargs)


@pytest.mark.parametrize(
    "name, ours, flower_kwargs, round_offset",
    [
        ("fedavg", lambda: ServerOptimizer(1.0), {}, 0),
        ("fedavgm", lambda: FedAvgM(0.7, 0.9), dict(server_learning_rate=0.7, server_momentum=0.9), 0),
        # Flower's FedAdam bias-corrects with t = server_round + 1: feed it round t - 1.
        ("fedadam", lambda: FedAdam(0.01, 0.9, 0.99, 1e-9, bias_correction=True),
         dict(eta=0.01, beta_1=0.9, beta_2=0.99, tau=1e-9), -1),
        ("fedyogi", lambda: FedYogi(0.01, 0.9, 0.99, 1e-9), dict(eta=0.01, beta_1=0.9, beta_2=0.99, tau=1e-9), 0),
        # Flower's FedAdagrad has no first moment (beta_1 = 0).
        ("fedadagrad", lambda: FedAdagrad(0.1, 0.0, 0.0, 1e-9), dict(eta=0.1, tau=1e-9), 0),
    ],
)
def test_server_updates_equal_flower(name, ours, flower_kwargs, round_offset):
    mine = our_run(ours(), X0)
    theirs = flower_run(flower_strategy(name, X0, **flower_kwargs), X0, round_offset)
    for got, want in zip(mine, theirs):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------- client side


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def tiny_samples(n: int = 10) -> Samples:
    g = torch.Generator().manual_seed(3)
    return Samples(torch.randn(n, 3, generator=g), torch.randint(0, 2, (n,), generator=g))


def train_once(prox_mu: float, momentum: float = 0.0) -> torch.Tensor:
    flat = FlatModel(tiny_model(), torch.device("cpu"))
    start = flat.state.clone()
    cfg = ClientConfig(batch_size=4, lr=0.1, local_epochs=2, momentum=momentum, weight_decay=1e-3, prox_mu=prox_mu)
    LocalTrainer(flat, cfg, prox_mu).train(start, tiny_samples(), seed=5)
    return flat.state.clone()


def test_fedprox_with_mu_zero_equals_fedavg_exactly():
    assert torch.equal(train_once(0.0, momentum=0.9), train_once(0.0, momentum=0.9))
    fedavg = train_once(0.0)
    assert torch.equal(train_once(0.0), fedavg)
    assert not torch.equal(train_once(0.5), fedavg)


def test_local_sgd_matches_torch_sgd_and_fedprox_gradient():
    """Two epochs of 3 batches: the flat optimizer equals torch.optim.SGD on the FedProx objective."""
    mu, lr, wd, momentum = 0.5, 0.1, 1e-3, 0.9
    samples = tiny_samples()
    flat = FlatModel(tiny_model(), torch.device("cpu"))
    global_state = flat.state.clone()
    cfg = ClientConfig(batch_size=4, lr=lr, local_epochs=2, momentum=momentum, weight_decay=wd)
    result = LocalTrainer(flat, cfg, mu).train(global_state, samples, seed=9)

    reference = tiny_model()
    center = [p.detach().clone() for p in reference.parameters()]
    opt = torch.optim.SGD(reference.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    order = torch.Generator().manual_seed(9)
    for _ in range(2):
        perm = torch.randperm(len(samples), generator=order)
        for idx in perm.split(4):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(reference(samples.x[idx]), samples.y[idx])
            loss = loss + mu / 2 * sum(((p - c) ** 2).sum() for p, c in zip(reference.parameters(), center))
            loss.backward()
            opt.step()
    want = torch.cat([p.detach().reshape(-1) for p in reference.parameters()])
    assert result.steps == 6
    torch.testing.assert_close(flat.params, want, rtol=1e-5, atol=1e-6)


def test_scaffold_matches_the_paper_on_a_hand_checkable_case():
    """Logits = w (input 1, no bias), one sample and one step per client: c_i+ = g_i(x) exactly.

    Karimireddy et al. option II: y_i = x - lr (g_i(x) - c_i + c); c_i+ = c_i - c + (x - y_i) / (K lr);
    server x += mean_i (y_i - x); c += (1/N) sum_i (c_i+ - c_i).
    """
    lr, num_clients = 0.5, 4
    cohort, labels = [1, 3], {1: 0, 3: 1}
    model = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.2], [-0.1]]))
    flat = FlatModel(model, torch.device("cpu"))
    x = flat.state.clone()
    control = ControlVariates(num_clients, 2, torch.device("cpu"))
    control.c.copy_(torch.tensor([0.05, -0.02]))
    control.clients[1] = torch.tensor([0.1, 0.0])
    control.clients[3] = torch.tensor([-0.3, 0.4])
    trainer = LocalTrainer(flat, ClientConfig(batch_size=1, lr=lr, local_epochs=1))
    aggregator = RoundAggregator(2, 2, 2, True, torch.device("cpu"))
    aggregator.begin(1, cohort, {1: 1.0, 3: 1.0})
    for client in cohort:
        sample = Samples(torch.ones(1, 1), torch.tensor([labels[client]]))
        result = trainer.train(x, sample, seed=0, correction=control.correction(client))
        new_c = control.client_update(client, x, flat.params, result.steps, lr)
        aggregator.add(client, flat.state - x, result.mean_loss, result.steps, new_c - control.clients[client], new_c)
    sums = aggregator.reduce(False)
    server = ServerOptimizer(1.0)
    x_new = x.clone()
    server.step(x_new, sums.update)
    old_c, old_ci = control.c.clone(), control.clients.clone()
    control.apply(cohort, sums.client_state, sums.control_sum)

    w = np.array([0.2, -0.1])
    softmax = np.exp(w) / np.exp(w).sum()
    grads = {k: softmax - np.eye(2)[labels[k]] for k in cohort}
    c = old_c.numpy().astype(np.float64)
    ys = {k: w - lr * (grads[k] - old_ci[k].numpy() + c) for k in cohort}
    c_plus = {k: old_ci[k].numpy() - c + (w - ys[k]) / lr for k in cohort}
    np.testing.assert_allclose(c_plus[1], grads[1], atol=1e-7)  # the hand-check: c_i+ = g_i(x)
    np.testing.assert_allclose(x_new.numpy(), w + np.mean([ys[k] - w for k in cohort], axis=0), atol=1e-6)
    for k in cohort:
        np.testing.assert_allclose(control.clients[k].numpy(), c_plus[k], atol=1e-6)
    np.testing.assert_allclose(control.clients[0].numpy(), [0, 0])  # unsampled clients keep their c_i
    expected_c = c + sum(c_plus[k] - old_ci[k].numpy() for k in cohort) / num_clients
    np.testing.assert_allclose(control.c.numpy(), expected_c, atol=1e-7)

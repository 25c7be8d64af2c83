"""Server updates: what the (replicated) server does with the round's averaged client update.

``delta`` is the weighted average of ``y_i - x`` over the round's clients (for the trainable
parameters); every strategy updates ``x`` in place (Reddi et al., "Adaptive Federated
Optimization", Algorithm 2, with ``m_0 = 0``, ``v_0 = tau^2``):

* FedAvg / FedProx:  ``x += eta * delta``
* FedAvgM:           ``m = beta * m + delta``; ``x += eta * m``
* FedAdagrad:        ``m = b1 m + (1-b1) delta``; ``v = v + delta^2``;                          ``x += eta m / (sqrt(v) + tau)``
* FedAdam:           ``m = b1 m + (1-b1) delta``; ``v = b2 v + (1-b2) delta^2``;               same step
* FedYogi:           ``m = b1 m + (1-b1) delta``; ``v = v - (1-b2) delta^2 sign(v - delta^2)``; same step

FedAdam optionally scales ``eta`` by Adam's bias correction ``sqrt(1 - b2^t) / (1 - b1^t)``, ``t``
the number of server steps so far. FedProx and SCAFFOLD use FedAvg's server step on ``x``; what
they change on the clients, and SCAFFOLD's control variates, are theirs (``algorithms.py``).

All arithmetic runs in the dtype of ``x`` (float32 in the simulator; the tests use float64).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from gptfl_hpc.fl.config import FederateConfig


class ServerOptimizer:
    """Base: plain averaging with a server learning rate (FedAvg, FedProx, SCAFFOLD's ``x``)."""

    def __init__(self, lr: float = 1.0):
        self.lr = lr
        self.steps = 0

    def step(self, x: torch.Tensor, delta: torch.Tensor) -> None:
        self.steps += 1
        self._update(x, delta.to(x.dtype))

    def _update(self, x: torch.Tensor, delta: torch.Tensor) -> None:
        x.add_(delta, alpha=self.lr)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"steps": torch.tensor(self.steps, dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.steps = int(state["steps"])


class FedAvgM(ServerOptimizer):
    def __init__(self, lr: float, momentum: float):
        super().__init__(lr)
        self.momentum = momentum
        self.m: Optional[torch.Tensor] = None

    def _update(self, x: torch.Tensor, delta: torch.Tensor) -> None:
        if self.m is None:
            self.m = torch.zeros_like(x)
        self.m.mul_(self.momentum).add_(delta)
        x.add_(self.m, alpha=self.lr)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = super().state_dict()
        if self.m is not None:
            state["m"] = self.m
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self.m = state.get("m")


class _Adaptive(ServerOptimizer):
    """The FedOpt family: first moment ``m``, second moment ``v`` (starting at ``tau^2``)."""

    def __init__(self, lr: float, beta1: float, beta2: float, tau: float):
        super().__init__(lr)
        self.beta1, self.beta2, self.tau = beta1, beta2, tau
        self.m: Optional[torch.Tensor] = None
        self.v: Optional[torch.Tensor] = None

    def _second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> None:
        raise NotImplementedError

    def _step_size(self) -> float:
        return self.lr

    def _update(self, x: torch.Tensor, delta: torch.Tensor) -> None:
        if self.m is None:
            self.m = torch.zeros_like(x)
            self.v = torch.full_like(x, self.tau**2)
        self.m.mul_(self.beta1).add_(delta, alpha=1 - self.beta1)
        self._second_moment(self.v, delta * delta)
        x.addcdiv_(self.m, self.v.sqrt().add_(self.tau), value=self._step_size())

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = super().state_dict()
        if self.m is not None:
            state.update(m=self.m, v=self.v)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self.m, self.v = state.get("m"), state.get("v")


class FedAdagrad(_Adaptive):
    def _second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> None:
        v.add_(delta_sq)


class FedAdam(_Adaptive):
    def __init__(self, lr: float, beta1: float, beta2: float, tau: float, bias_correction: bool = False):
        super().__init__(lr, beta1, beta2, tau)
        self.bias_correction = bias_correction

    def _second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> None:
        v.mul_(self.beta2).add_(delta_sq, alpha=1 - self.beta2)

    def _step_size(self) -> float:
        if not self.bias_correction:
            return self.lr
        t = self.steps
        return self.lr * math.sqrt(1 - self.beta2**t) / (1 - self.beta1**t)


class FedYogi(_Adaptive):
    def _second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> None:
        v.sub_(torch.sign(v - delta_sq).mul_(delta_sq), alpha=1 - self.beta2)


def make_server_optimizer(config: FederateConfig) -> ServerOptimizer:
    s, lr = config.server, config.server_lr
    name = config.algorithm
    if name == "fedavgm":
        return FedAvgM(lr, s.momentum)
    if name == "fedadam":
        return FedAdam(lr, s.beta1, s.beta2, s.tau, s.bias_correction)
    if name == "fedyogi":
        return FedYogi(lr, s.beta1, s.beta2, s.tau)
    if name == "fedadagrad":
        return FedAdagrad(lr, s.beta1, s.beta2, s.tau)
    return ServerOptimizer(lr)  # fedavg, fedprox, scaffold


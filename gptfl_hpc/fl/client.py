"""Local training of one client: SGD plus the algorithm's terms (a proximal pull, a gradient correction).

A rank owns one model and trains its clients one after another. ``FlatModel`` rebinds the
model's parameters and floating-point buffers as views into one flat tensor, so loading the
global model and taking the update ``y - x`` are each one vector operation on preallocated memory.
Gradients are left to autograd, which hands each parameter a fresh gradient when ``.grad`` is
None; a gradient kept in a preallocated buffer would cost a zeroing and an accumulating pass over
it on every step (about 10% of a step for a small CNN on CPU).

The optimizer is PyTorch's SGD written as ``foreach`` operations over the parameters (same
arithmetic: weight decay added to the gradient, then heavy-ball momentum without dampening); the
momentum buffer, FedProx's centre and SCAFFOLD's correction are flat vectors seen through
per-parameter views. Each client's shuffling and dropout
come from a seed of ``(run seed, round, client)`` (``sampling.client_seed``), so the update does
not depend on which rank trains the client or what it trained before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from gptfl_hpc.fl.clientdata import Samples
from gptfl_hpc.fl.config import ClientConfig


class FlatModel:
    """``model`` with parameters in ``params`` and float buffers after them, both in ``state``.

    ``state`` = [trainable parameters (``num_params``) | floating-point buffers (e.g. BatchNorm
    running statistics)]; integer buffers (``num_batches_tracked``) are kept aside and reset with
    the global model.
    """

    def __init__(self, model: nn.Module, device: torch.device):
        self.model = model.to(device)
        self.device = device
        params = [p for p in model.parameters() if p.requires_grad]
        buffers = [
            (module, name, buf)
            for module in model.modules()
            for name, buf in module._buffers.items()
            if buf is not None and buf.is_floating_point()
        ]
        self.num_params = sum(p.numel() for p in params)
        self.num_buffers = sum(buf.numel() for _, _, buf in buffers)
        self.state = torch.empty(self.num_params + self.num_buffers, dtype=torch.float32, device=device)
        self.parameters = params
        offset = 0
        for p in params:
            n = p.numel()
            self.state[offset : offset + n].copy_(p.detach().reshape(-1))
            p.data = self.state[offset : offset + n].view_as(p)
            offset += n
        for module, name, buf in buffers:
            n = buf.numel()
            self.state[offset : offset + n].copy_(buf.reshape(-1))
            module._buffers[name] = self.state[offset : offset + n].view_as(buf)
            offset += n
        self.params = self.state[: self.num_params]
        self._int_buffers = [
            (module, name, buf.clone())
            for module in model.modules()
            for name, buf in module._buffers.items()
            if buf is not None and not buf.is_floating_point()
        ]

    def views(self, vector: torch.Tensor) -> list[torch.Tensor]:
        """A parameter-sized flat ``vector`` as one view per parameter (shaped like it)."""
        views, offset = [], 0
        for p in self.parameters:
            views.append(vector[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        return views

    @property
    def size(self) -> int:
        return self.state.numel()

    def load(self, global_state: torch.Tensor) -> None:
        """Make the model the global model again (also its integer buffers)."""
        self.state.copy_(global_state)
        for module, name, value in self._int_buffers:
            module._buffers[name].copy_(value)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        return self.model(x) if lengths is None else self.model(x, lengths)


@dataclass
class LocalResult:
    steps: int
    mean_loss: float


class LocalTrainer:
    """Runs ``local_epochs`` of SGD on one client's resident samples, in place on ``flat``.

    The local objective's extra terms, ``prox_mu`` and each call's ``correction``, are set by the
    client algorithm (``algorithms.py``); the trainer never learns which algorithm that is.
    """

    def __init__(self, flat: FlatModel, config: ClientConfig, prox_mu: float = 0.0):
        self.flat = flat
        self.config = config
        self.prox_mu = prox_mu
        self.velocity = torch.zeros(flat.num_params, device=flat.device) if config.momentum > 0 else None
        self._velocity = flat.views(self.velocity) if self.velocity is not None else None
        self._x = torch.empty(0, device=flat.device)

    def train(
        self,
        global_state: torch.Tensor,
        samples: Samples,
        seed: int,
        correction: Optional[torch.Tensor] = None,
        max_steps: Optional[int] = None,
    ) -> LocalResult:
        """Train from ``global_state``; the client's model is left in ``flat.state``.

        ``correction`` (SCAFFOLD's ``c - c_i``) is added to every gradient; with ``prox_mu > 0``
        the gradient of ``mu/2 ||w - w_global||^2`` is too (FedProx). ``max_steps`` replaces
        ``local_epochs``: exactly that many steps, epochs repeating as needed.
        """
        flat, cfg = self.flat, self.config
        flat.load(global_state)
        if self.velocity is not None:
            self.velocity.zero_()
        torch.manual_seed(seed)  # dropout and any other global-RNG use: per client, not per rank
        order_rng = torch.Generator().manual_seed(seed)
        center = flat.views(global_state[: flat.num_params]) if self.prox_mu > 0 else None
        corrections = flat.views(correction) if correction is not None else None
        params = flat.parameters
        flat.model.train()
        n, batch = len(samples), cfg.batch_size
        loss_sum = torch.zeros((), dtype=torch.float32, device=flat.device)
        steps = 0
        epochs = cfg.local_epochs if max_steps is None else -(-max_steps // -(-n // batch))
        for _ in range(epochs):
            perm = torch.randperm(n, generator=order_rng).to(flat.device)
            x = self._shuffled(samples.x, perm)
            y = samples.y.index_select(0, perm)
            lengths = None if samples.lengths is None else samples.lengths.index_select(0, perm)
            for start in range(0, n, batch):
                if steps == max_steps:
                    break
                xb, yb = x[start : start + batch], y[start : start + batch]
                lb = None
                if lengths is not None:
                    lb = lengths[start : start + batch]
                    xb = xb[:, : int(lb.max())]
                for p in params:
                    p.grad = None
                loss = F.cross_entropy(flat.forward(xb, lb), yb)
                loss.backward()
                loss_sum += loss.detach()
                with torch.no_grad():
                    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]  # unused: zero
                    self._step(params, grads, center, corrections)
                steps += 1
        return LocalResult(steps, float(loss_sum) / max(steps, 1))

    def _shuffled(self, x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """``x[perm]`` into a buffer reused across clients and epochs."""
        if self._x.numel() < x.numel() or self._x.dtype != x.dtype:
            self._x = torch.empty(x.numel(), dtype=x.dtype, device=x.device)
        out = self._x[: x.numel()].view(x.shape)
        torch.index_select(x, 0, perm, out=out)
        return out

    def _step(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        center: Optional[list[torch.Tensor]],
        correction: Optional[list[torch.Tensor]],
    ) -> None:
        cfg = self.config
        if center is not None:
            torch._foreach_add_(grads, params, alpha=self.prox_mu)
            torch._foreach_add_(grads, center, alpha=-self.prox_mu)
        if correction is not None:
            torch._foreach_add_(grads, correction)
        if cfg.weight_decay > 0:
            torch._foreach_add_(grads, params, alpha=cfg.weight_decay)
        if self._velocity is not None:
            torch._foreach_mul_(self._velocity, cfg.momentum)
            torch._foreach_add_(self._velocity, grads)
            torch._foreach_add_(params, self._velocity, alpha=-cfg.lr)
        else:
            torch._foreach_add_(params, grads, alpha=-cfg.lr)

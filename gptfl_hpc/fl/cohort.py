"""Vectorized local training: up to K clients of a round as one batched computation.

Sequential training (``client.LocalTrainer``) runs a small model on batches of ``batch_size``
samples, one client after another; on a GPU that is launch-bound. ``CohortTrainer`` stacks the
parameters of K clients along a leading dimension and runs one ``torch.func.vmap`` of the model
over (client parameters, client batch) per step, so K clients cost one forward, one backward and
one optimizer step.

Each client's update is its sequential one, up to the float rounding of batched kernels:

* the same data order: each client draws its permutations from its own seed, epoch by epoch;
* the same steps: clients are sorted by their number of steps, longest first, so the clients still
  training at step ``s`` are a prefix of the stack; only that prefix is computed and stepped;
* the same batches: a client's last batch of an epoch may be short; it is padded to
  ``batch_size`` with the client's own samples, and the padding is masked out of the loss mean
  (the models allowed here treat every sample on its own, so padding changes nothing else);
* the same optimizer: SGD with weight decay and momentum, FedProx's proximal term and SCAFFOLD's
  correction, as ``foreach`` operations on the stacked tensors in ``LocalTrainer``'s order.

Every stacked parameter is stored in the memory layout in which its batched gradient comes back
(probed once with a two-client step): a Linear layer's weight gradient comes out transposed, and
a parameter stored contiguously would make autograd copy that gradient into its layout on every
step. Models whose training mixes the samples of a batch or draws random numbers cannot match
the sequential update and are refused with one line (:func:`unsupported_reason`).
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from gptfl_hpc.fl.client import FlatModel, LocalResult
from gptfl_hpc.fl.clientdata import Samples
from gptfl_hpc.fl.config import ClientConfig

log = logging.getLogger(__name__)

_FIX = "use a model without it (convnet, vgg19) or federate.vectorize=null"


def unsupported_reason(model: nn.Module) -> Optional[str]:
    """Why ``model`` cannot be trained vectorized, or None if it can."""
    for name, module in model.named_modules():
        kind = type(module).__name__
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return (f"federate.vectorize cannot batch clients through {kind} layer '{name}' (its batch statistics "
                    f"and running buffers are per client); {_FIX}")
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return (f"federate.vectorize cannot batch clients through {kind} layer '{name}' (batched dropout draws "
                    f"other random numbers than the client's own stream); {_FIX}")
        if isinstance(module, nn.RNNBase):
            return (f"federate.vectorize cannot batch clients through {kind} layer '{name}' (variable-length "
                    f"packed sequences); {_FIX}")
    for name, buffer in model.named_buffers():
        if buffer.is_floating_point():
            return f"federate.vectorize cannot batch clients of a model with a floating-point buffer ('{name}'); {_FIX}"
    return None


def stacked_bytes(num_params: int, capacity: int, config: ClientConfig, extra_stacks: int = 0) -> int:
    """Memory of the client-stacked tensors: parameters, gradients, updates, momentum, and the
    algorithm's ``extra_stacks`` (``algorithms.FedAvg.extra_stacks``: a proximal centre, a correction)."""
    stacks = 3 + (config.momentum > 0) + extra_stacks
    return stacks * capacity * num_params * 4


class CohortTrainer:
    """Trains up to ``capacity`` clients at once from the global model held by ``flat``.

    The local objective is ``LocalTrainer``'s: ``prox_mu`` and, with ``control``, a per-client
    gradient correction, both set by the client algorithm (``algorithms.py``).
    """

    def __init__(self, flat: FlatModel, config: ClientConfig, capacity: int, prox_mu: float = 0.0, control: bool = False):
        reason = unsupported_reason(flat.model)
        if reason is not None:
            raise ValueError(reason)
        self.flat, self.config, self.capacity = flat, config, capacity
        self.prox_mu = prox_mu
        self.control = control
        self.names = [n for n, p in flat.model.named_parameters() if p.requires_grad]  # flat.parameters' order
        self.shapes = [tuple(p.shape) for p in flat.parameters]
        self.sizes = [p.numel() for p in flat.parameters]
        self.offsets = [sum(self.sizes[:j]) for j in range(len(self.sizes))]
        self._forward = vmap(self._client_forward)
        self._orders: Optional[list[tuple[int, ...]]] = None
        self._leaves: dict[int, list[torch.Tensor]] = {}
        self._slot: list[int] = []
        self._updates: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ one chunk of clients

    def train(
        self,
        global_state: torch.Tensor,
        clients: Sequence[Samples],
        seeds: Sequence[int],
        corrections: Optional[torch.Tensor] = None,
    ) -> list[LocalResult]:
        """Train ``clients`` (at most ``capacity``) from ``global_state``; results in input order.

        ``seeds[i]`` is client ``i``'s stream (as for ``LocalTrainer.train``); ``corrections`` holds
        each client's gradient correction (SCAFFOLD's ``c - c_i``), one row per client. The trained
        models: :meth:`updates`.
        """
        k = len(clients)
        if not 0 < k <= self.capacity:
            raise ValueError(f"a cohort chunk holds 1 to {self.capacity} clients, got {k}")
        if any(s.lengths is not None for s in clients):
            raise ValueError(f"federate.vectorize cannot batch variable-length inputs; {_FIX}")
        cfg, device = self.config, self.flat.device
        if self._orders is None:
            self._allocate(next((s.x for s in clients if len(s)), None))
        batch = cfg.batch_size
        steps = [cfg.local_epochs * -(-len(s) // batch) for s in clients]
        order = sorted(range(k), key=lambda i: (-steps[i], i))
        self._slot = [0] * k
        for slot, i in enumerate(order):
            self._slot[i] = slot
        x = torch.cat([clients[i].x for i in order])
        y = torch.cat([clients[i].y for i in order])
        index, valid = self._schedule([len(clients[i]) for i in order], [seeds[i] for i in order], steps[order[0]])
        full = valid.all(dim=2)
        index, valid = index.to(device), valid.to(device)
        sorted_steps = [steps[i] for i in order]

        self._load(global_state, k, [corrections[i] for i in order] if corrections is not None else None)
        self.flat.model.train()
        loss_sum = torch.zeros(k, dtype=torch.float32, device=device)
        for step in range(sorted_steps[0]):
            m = sum(1 for s in sorted_steps if s > step)
            idx = index[step, :m].reshape(-1)
            xb = x.index_select(0, idx).view(m, batch, *x.shape[1:])
            yb = y.index_select(0, idx).view(m, batch)
            leaves = self._leaves_for(m)
            logits = self._forward(dict(zip(self.names, leaves)), xb)
            per_sample = F.cross_entropy(logits.flatten(0, 1), yb.reshape(-1), reduction="none").view(m, batch)
            if bool(full[step, :m].all()):
                per_client = per_sample.mean(dim=1)
            else:
                mask = valid[step, :m]
                per_client = (per_sample * mask).sum(dim=1) / mask.sum(dim=1)
            for leaf in leaves:
                leaf.grad = None
            per_client.sum().backward()
            loss_sum[:m] += per_client.detach()
            with torch.no_grad():
                self._step(m, [leaf.grad for leaf in leaves])
        losses = loss_sum.tolist()
        return [LocalResult(steps[i], losses[self._slot[i]] / max(steps[i], 1)) for i in range(k)]

    def updates(self, global_state: torch.Tensor) -> torch.Tensor:
        """The last :meth:`train`'s updates ``y_i - x``, one row per client in input order.

        The rows live in a buffer reused by the next call.
        """
        k = len(self._slot)
        if self._updates is None:
            self._updates = torch.empty(self.capacity, sum(self.sizes), dtype=torch.float32, device=self.flat.device)
        rows = self._updates[:k]
        for stacked, offset, size, shape in zip(self.params, self.offsets, self.sizes, self.shapes):
            rows[:, offset : offset + size].view(k, *shape).copy_(stacked[:k])
        rows.sub_(global_state[: rows.shape[1]])
        if self._slot != sorted(self._slot):
            rows = rows.index_select(0, torch.tensor(self._slot, device=rows.device))
        return rows

    # ------------------------------------------------------------------ internals

    def _client_forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.flat.model, params, (x,))

    def _schedule(self, counts: list[int], seeds: list[int], max_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per step and slot, ``batch_size`` indices into the chunk's concatenated samples, and which are real."""
        k, batch, epochs = len(counts), self.config.batch_size, self.config.local_epochs
        index = torch.zeros(max_steps, k, batch, dtype=torch.int64)
        valid = torch.zeros(max_steps, k, batch, dtype=torch.bool)
        offset = 0
        for slot, (n, seed) in enumerate(zip(counts, seeds)):
            per_epoch = -(-n // batch)
            order_rng = torch.Generator().manual_seed(seed)
            for epoch in range(epochs):
                perm = torch.randperm(n, generator=order_rng)  # the same draws as LocalTrainer.train
                padded = torch.full((per_epoch * batch,), -1, dtype=torch.int64)
                padded[:n] = perm
                rows = slice(epoch * per_epoch, (epoch + 1) * per_epoch)
                index[rows, slot] = padded.clamp_min(0).view(per_epoch, batch) + offset
                valid[rows, slot] = (padded >= 0).view(per_epoch, batch)
            offset += n
        return index, valid

    def _allocate(self, example: Optional[torch.Tensor]) -> None:
        """Stacked parameters (and optimizer state) in the layout of their batched gradients."""
        self._check_memory()
        if example is None:  # nothing to probe with: contiguous layouts (correct, possibly slower)
            self._orders = [tuple(range(len(shape) + 1)) for shape in self.shapes]
        else:
            self._orders = self._probe_layouts(example)
        self.params = self._stack()
        self.velocity = self._stack() if self.config.momentum > 0 else None
        self.center = self._stack() if self.prox_mu > 0 else None
        self.correction = self._stack() if self.control else None

    def _check_memory(self) -> None:
        device = self.flat.device
        extra_stacks = int(self.prox_mu > 0) + int(self.control)  # the centre and correction _allocate makes
        needed = stacked_bytes(sum(self.sizes), self.capacity, self.config, extra_stacks)
        log.info("vectorized clients: %d at once, %.0f MiB of stacked parameters and state on %s",
                 self.capacity, needed / 2**20, device)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if needed > free:
                raise MemoryError(
                    f"federate.vectorize={self.capacity} needs {needed / 2**30:.1f} GiB for the stacked client models "
                    f"but {device} has {free / 2**30:.1f} GiB free; lower federate.vectorize"
                )

    def _probe_layouts(self, example: torch.Tensor) -> list[tuple[int, ...]]:
        """For each parameter, its dimensions from outermost to innermost in its batched gradient."""
        probe = [p.detach().unsqueeze(0).repeat(2, *([1] * p.dim())).requires_grad_() for p in self.flat.parameters]
        xb = example[:1].unsqueeze(0).expand(2, *example[:1].shape)
        logits = self._forward(dict(zip(self.names, probe)), xb)
        grads = torch.autograd.grad(logits.float().square().sum(), probe)
        orders = []
        for grad in grads:
            order = tuple(sorted(range(grad.dim()), key=lambda d: (-grad.stride(d), d)))
            # The client dimension must stay outermost so that a prefix of clients is contiguous.
            orders.append(order if order[0] == 0 else tuple(range(grad.dim())))
        return orders

    def _stack(self) -> list[torch.Tensor]:
        """One ``capacity x shape`` tensor per parameter, all in one allocation, in the probed layouts."""
        storage = torch.zeros(self.capacity * sum(self.sizes), dtype=torch.float32, device=self.flat.device)
        stacked = []
        for offset, size, shape, order in zip(self.offsets, self.sizes, self.shapes, self._orders):
            full = (self.capacity, *shape)
            block = storage[self.capacity * offset : self.capacity * (offset + size)]
            inverse = sorted(range(len(order)), key=lambda d: order[d])
            stacked.append(block.view([full[d] for d in order]).permute(inverse))
        return stacked

    def _leaves_for(self, m: int) -> list[torch.Tensor]:
        """The first ``m`` clients' parameters as autograd leaves sharing the stacked storage."""
        if m not in self._leaves:
            self._leaves[m] = [p[:m].detach().requires_grad_() for p in self.params]
        return self._leaves[m]

    def _load(self, global_state: torch.Tensor, k: int, corrections: Optional[list[torch.Tensor]]) -> None:
        for j, (offset, size, shape) in enumerate(zip(self.offsets, self.sizes, self.shapes)):
            value = global_state[offset : offset + size].view(1, *shape).expand(k, *shape)
            self.params[j][:k].copy_(value)
            if self.center is not None:
                self.center[j][:k].copy_(value)
            if self.velocity is not None:
                self.velocity[j].zero_()
            if self.correction is not None:
                self.correction[j][:k].copy_(torch.stack([c[offset : offset + size].view(shape) for c in corrections]))

    def _step(self, m: int, grads: list[torch.Tensor]) -> None:
        """``LocalTrainer._step`` on the first ``m`` clients."""
        cfg = self.config
        params = [p[:m] for p in self.params]
        if self.center is not None:
            torch._foreach_add_(grads, params, alpha=self.prox_mu)
            torch._foreach_add_(grads, [c[:m] for c in self.center], alpha=-self.prox_mu)
        if self.correction is not None:
            torch._foreach_add_(grads, [c[:m] for c in self.correction])
        if cfg.weight_decay > 0:
            torch._foreach_add_(grads, params, alpha=cfg.weight_decay)
        if self.velocity is not None:
            velocity = [v[:m] for v in self.velocity]
            torch._foreach_mul_(velocity, cfg.momentum)
            torch._foreach_add_(velocity, grads)
            torch._foreach_add_(params, velocity, alpha=-cfg.lr)
        else:
            torch._foreach_add_(params, grads, alpha=-cfg.lr)

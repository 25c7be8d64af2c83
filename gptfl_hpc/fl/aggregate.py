"""The round's aggregate: one flat buffer per rank, summed by one ``all_reduce``.

Each rank adds its clients' contributions into a preallocated float64 buffer (float64 so the sum
barely depends on how clients are spread over ranks); one ``all_reduce(SUM)`` of that buffer per
round then gives every rank the same totals. Layout, in order:

====================  ======================================================================
``update``            ``sum_i p_i (y_i - x)`` over the whole model state, ``p_i = w_i / W``
``plain``             ``sum_i (y_i - x)`` (parameters), for the gradient diversity; only when
                      the round's weights differ (else it is ``K * update``)
``control``           SCAFFOLD: ``sum_i (c_i+ - c_i)``
scalars               ``sum w_i`` (checks that every client was counted), ``sum ||y_i - x||^2``,
                      ``sum p_i loss_i``, ``sum steps_i``
``client state``      SCAFFOLD: one row per cohort slot holding that client's new ``c_i``
                      (simulator bookkeeping of client-held state; each row has one writer)
flag                  number of ranks that saw a preemption request
====================  ======================================================================

Secure mode (``federate.secure``): the part a server would see (update .. scalars) is encoded per
client in fixed point, ``round(v * 2^f)`` as int64, and masked with pairwise masks modulo 2^64
(``gptfl_hpc.secure_sum``: Diffie-Hellman seeds per client pair and round, SHAKE-256 expansion) that
cancel in the sum over the cohort; the buffer is int64 and the sum wraps modulo 2^64. Decoded,
every coordinate is within ``K * 2^-(f+1)`` of the plain sum (``K`` clients; rounding only).
The client-state rows and the flag travel unmasked as raw bits.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist

from gptfl_hpc import secure_sum
from gptfl_hpc.fl.sampling import secure_round_seed

#: int64 headroom: each client's encoded values stay below 2^62 / K, so the sum cannot wrap.
_ENCODE_LIMIT = 2.0**62
#: Exponent size of the simulated clients' Diffie-Hellman keys (NIST SP 800-56A: >= 2x the
#: 112-bit strength of the 2048-bit group); far cheaper than full-size exponents.
_KEY_BYTES = 32
#: add_many converts at most this many update coordinates to float64 at a time (64 MiB).
_BLOCK_ELEMENTS = 8 * 1024 * 1024


@dataclass(frozen=True)
class Layout:
    """Offsets of each part of the round buffer."""

    state: int
    params: int
    cohort: int
    plain: bool
    control: bool

    @property
    def masked_size(self) -> int:
        return self.state + (self.params if self.plain else 0) + (self.params if self.control else 0) + 4

    @property
    def size(self) -> int:
        return self.masked_size + (self.cohort * self.params if self.control else 0) + 1


@dataclass
class RoundSums:
    """The decoded totals of one round, identical on every rank."""

    update: torch.Tensor  # float64, state-sized: weighted average update
    plain_sq_norm: float  # ||sum_i (y_i - x)||^2 over parameters
    sq_norm_sum: float  # sum_i ||y_i - x||^2 over parameters
    weight_total: float
    loss: float  # weighted mean of the clients' mean local losses
    steps: int
    control_sum: Optional[torch.Tensor]  # SCAFFOLD: sum_i (c_i+ - c_i)
    client_state: Optional[torch.Tensor]  # SCAFFOLD: cohort x params, new c_i in cohort order
    preempt: bool


class RoundAggregator:
    """Accumulates this rank's clients of a round, then sums across ranks."""

    def __init__(
        self,
        state_size: int,
        num_params: int,
        max_cohort: int,
        control: bool,
        device: torch.device,
        secure_frac_bits: Optional[int] = None,
        seed: int = 0,
    ):
        self.state_size, self.num_params = state_size, num_params
        self.control = control
        self.device = device
        self.frac_bits = secure_frac_bits
        self.seed = seed
        full = Layout(state_size, num_params, max_cohort, True, control)
        dtype = torch.int64 if self.secure else torch.float64
        self._storage = torch.zeros(full.size, dtype=dtype, device=device)
        self._delta64 = torch.empty(state_size, dtype=torch.float64, device=device)
        self.layout = full

    @property
    def secure(self) -> bool:
        return self.frac_bits is not None

    def begin(self, round_index: int, cohort: list[int], weights: dict[int, float]) -> None:
        """Start a round with the whole cohort and every client's weight ``w_i`` (known on all ranks)."""
        self.round_index = round_index
        self.cohort = list(cohort)
        self.weights = weights
        self.weight_total = float(sum(weights[c] for c in cohort))
        plain = len({weights[c] for c in cohort}) > 1
        self.layout = Layout(self.state_size, self.num_params, len(cohort), plain, self.control)
        self.buffer = self._storage[: self.layout.size]
        self.buffer.zero_()
        self._keys: Optional[dict[int, tuple[int, int]]] = None

    def add(
        self,
        client: int,
        delta: torch.Tensor,
        mean_loss: float,
        steps: int,
        control_delta: Optional[torch.Tensor] = None,
        new_control: Optional[torch.Tensor] = None,
    ) -> None:
        """Add client ``client``'s update ``delta = y_i - x`` (float32, state-sized)."""
        lay = self.layout
        w = self.weights[client]
        p = w / self.weight_total
        d64 = self._delta64.copy_(delta)
        if self.secure:
            target = torch.zeros(lay.masked_size, dtype=torch.float64, device=self.device)
        else:
            target = self.buffer[: lay.masked_size]
        target[: lay.state].add_(d64, alpha=p)
        offset = lay.state
        if lay.plain:
            target[offset : offset + lay.params].add_(d64[: lay.params])
            offset += lay.params
        if lay.control:
            target[offset : offset + lay.params].add_(control_delta.to(torch.float64))
            offset += lay.params
        scalars = target[offset : offset + 4]
        scalars += torch.tensor([w, 0.0, p * mean_loss, float(steps)], dtype=torch.float64, device=self.device)
        scalars[1] += torch.dot(d64[: lay.params], d64[: lay.params])  # stays on the device: no sync per client
        if self.secure:
            self.buffer[: lay.masked_size].add_(self._encode_and_mask(client, target))
        if lay.control:
            self._client_rows()[self.cohort.index(client)].copy_(new_control.to(torch.float64))

    def add_many(
        self,
        clients: list[int],
        deltas: torch.Tensor,
        mean_losses: list[float],
        steps: list[int],
        control_deltas: Optional[torch.Tensor] = None,
        new_controls: Optional[torch.Tensor] = None,
    ) -> None:
        """:meth:`add` for several clients at once (one row of ``deltas`` each), as a few matrix operations.

        Secure mode masks each client apart, so there it adds them one by one.
        """
        if self.secure:
            for i, client in enumerate(clients):
                self.add(
                    client, deltas[i], mean_losses[i], steps[i],
                    control_deltas[i] if control_deltas is not None else None,
                    new_controls[i] if new_controls is not None else None,
                )
            return
        lay = self.layout
        f64 = dict(dtype=torch.float64, device=self.device)
        w = torch.tensor([self.weights[c] for c in clients], **f64)
        p = w / self.weight_total
        target = self.buffer[: lay.masked_size]
        sq_norm = torch.zeros((), **f64)
        rows = max(1, _BLOCK_ELEMENTS // deltas.shape[1])  # float64 copies of a bounded block of rows
        for start in range(0, len(clients), rows):
            d64 = deltas[start : start + rows].to(torch.float64)
            target[: lay.state].addmv_(d64.t(), p[start : start + rows])
            params = d64[:, : lay.params]
            if lay.plain:
                target[lay.state : lay.state + lay.params] += params.sum(dim=0)
            sq_norm += (params * params).sum()
        offset = lay.state + (lay.params if lay.plain else 0)
        if lay.control:
            target[offset : offset + lay.params] += control_deltas.to(torch.float64).sum(dim=0)
            offset += lay.params
        losses = torch.tensor(mean_losses, **f64)
        target[offset : offset + 4] += torch.stack([w.sum(), sq_norm, (p * losses).sum(), torch.tensor(float(sum(steps)), **f64)])
        if lay.control:
            slots = torch.tensor([self.cohort.index(c) for c in clients], device=self.device)
            self._client_rows().index_copy_(0, slots, new_controls.to(torch.float64))

    def _client_rows(self) -> torch.Tensor:
        """SCAFFOLD: the cohort x params block of new ``c_i`` (float64, or its bits in the secure int64 buffer)."""
        lay = self.layout
        rows = self.buffer[lay.masked_size : lay.masked_size + lay.cohort * lay.params]
        return (rows.view(torch.float64) if self.secure else rows).view(lay.cohort, lay.params)

    def reduce(self, preempt_requested: bool) -> RoundSums:
        """Sum over ranks (one all_reduce) and decode."""
        lay = self.layout
        self.buffer[-1] = 1 if preempt_requested else 0
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(self.buffer, op=dist.ReduceOp.SUM)
        if self.secure:
            sums = self.buffer[: lay.masked_size].to(torch.float64).div_(2.0**self.frac_bits)
        else:
            sums = self.buffer[: lay.masked_size]
        update = sums[: lay.state]
        offset = lay.state
        if lay.plain:
            plain_sum = sums[offset : offset + lay.params]
            offset += lay.params
        else:
            plain_sum = update[: lay.params] * len(self.cohort)
        control_sum = None
        if lay.control:
            control_sum = sums[offset : offset + lay.params]
            offset += lay.params
        weight, sq_norm_sum, loss, steps = (float(v) for v in sums[offset : offset + 4].tolist())
        client_state = self._client_rows() if lay.control else None
        return RoundSums(
            update=update,
            plain_sq_norm=float(torch.dot(plain_sum, plain_sum)),
            sq_norm_sum=sq_norm_sum,
            weight_total=weight,
            loss=loss,
            steps=int(round(steps)),
            control_sum=control_sum,
            client_state=client_state,
            preempt=bool(self.buffer[-1].item() > 0),
        )

    # ----------------------------------------------------------------------- secure mode

    def _encode_and_mask(self, client: int, values: torch.Tensor) -> torch.Tensor:
        scale = 2.0**self.frac_bits
        limit = _ENCODE_LIMIT / len(self.cohort)
        peak = float(values.abs().max()) * scale
        if not peak < limit:
            raise OverflowError(
                f"secure aggregation: client {client}'s update {peak / scale:.3g} overflows the fixed-point range; "
                "lower federate.secure.frac_bits"
            )
        encoded = torch.round(values * scale).to(torch.int64)
        mask = self._mask(client, values.numel())
        return encoded.add_(torch.from_numpy(mask.view(np.int64)).to(self.device))

    def _round_keys(self) -> dict[int, tuple[int, int]]:
        """(private, public) Diffie-Hellman keys of the cohort for this round (simulated clients)."""
        if self._keys is None:
            base = secure_round_seed(self.seed, self.round_index)
            self._keys = {}
            for c in self.cohort:
                digest = hashlib.sha256(base + struct.pack(">Q", c)).digest()[:_KEY_BYTES]
                private = 2 + int.from_bytes(digest, "big") % (secure_sum.MODP_2048_Q - 2)
                self._keys[c] = (private, secure_sum.public_key(private))
        return self._keys

    def _mask(self, client: int, length: int) -> np.ndarray:
        """Client ``client``'s total mask: + the masks with higher ids, - those with lower (mod 2^64)."""
        keys = self._round_keys()
        private = keys[client][0]
        public = {c: pub for c, (_, pub) in keys.items()}
        peers = [c for c in self.cohort if c != client]
        context = b"gptfl-fl/round" + struct.pack(">QQ", self.round_index, length)
        total = np.zeros(length, dtype=np.uint64)
        for peer, pair_seed in secure_sum.pairwise_seeds(client, private, public, peers).items():
            mask = secure_sum.expand_mask(pair_seed, (length,), context)
            if secure_sum.mask_sign(client, peer) > 0:
                total += mask
            else:
                total -= mask
        return total

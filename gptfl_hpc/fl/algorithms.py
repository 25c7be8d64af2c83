"""Client-side federated algorithms as plug-in objects, picked by ``federate.algorithm``.

pfl-research's split: an algorithm decides what its clients optimise and what state outlives a
round; ``aggregate.py`` sums whatever the clients send back; the server optimizer
(``strategies.py``) turns the averaged update into the next global model ``x``. The simulator,
the trainers and the aggregator ask the algorithm object and never test its name.

* :class:`FedAvg`: plain local SGD from ``x``; nothing besides ``x`` lasts between rounds.
  FedAvgM, FedAdam, FedYogi and FedAdagrad are FedAvg clients under another server optimizer.
* :class:`FedProx` (Li et al.): the local objective gains ``mu/2 ||w - x||^2``, so every local
  gradient becomes ``g + mu (w - x)``.
* :class:`Scaffold` (Karimireddy et al., option II): every local gradient becomes
  ``g + c - c_i``; after the round, client ``i`` reports ``c_i+`` and the server moves ``c``
  (:class:`ControlVariates`).

The trainers (``client.py``, ``cohort.py``) run the local objective these describe, a proximal
weight and a per-client gradient correction, without knowing which algorithm set them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch

from gptfl_hpc.fl.config import FederateConfig

if TYPE_CHECKING:
    from gptfl_hpc.fl.aggregate import RoundSums

#: (change of a client's state, its new state), or (None, None) when clients keep no state.
StateChange = tuple[Optional[torch.Tensor], Optional[torch.Tensor]]


class FedAvg:
    """Plain local SGD; also the protocol of every algorithm, with its defaults: no terms, no state."""

    #: weight ``mu`` of the proximal term ``mu/2 ||w - x||^2`` (0: none, so no centre is kept)
    prox_mu: float = 0.0
    #: whether clients keep a state vector that corrects their gradients and changes when they train
    stateful_clients: bool = False

    @classmethod
    def from_config(cls, config: FederateConfig) -> "FedAvg":
        return cls()

    def setup(self, num_clients: int, num_params: int, device: torch.device) -> None:
        """Allocate the state of a federation of ``num_clients`` clients and ``num_params`` parameters."""

    @property
    def extra_stacks(self) -> int:
        """Parameter-sized tensors a vectorized client needs besides parameters, gradients, updates, momentum."""
        return int(self.prox_mu > 0) + int(self.stateful_clients)

    def extra_traffic(self, num_params: int) -> int:
        """Parameters each client receives, and sends, per round besides the model."""
        return 0

    def correction(self, client: int) -> Optional[torch.Tensor]:
        """What ``client`` adds to each of its local gradients, or None."""
        return None

    def corrections(self, clients: list[int]) -> Optional[torch.Tensor]:
        """:meth:`correction` of several clients, one row each, or None."""
        return None

    def client_state_change(self, client: int, x: torch.Tensor, y: torch.Tensor, steps: int) -> StateChange:
        """What ``client`` reports besides its update after ``steps`` local steps from ``x`` to ``y`` (parameters)."""
        return None, None

    def cohort_state_changes(self, clients: list[int], deltas: torch.Tensor, steps: list[int]) -> StateChange:
        """:meth:`client_state_change` of several clients from their updates ``y_i - x`` (one row each)."""
        return None, None

    def after_round(self, cohort: list[int], sums: "RoundSums") -> None:
        """Move the server-kept state with the round's decoded sums."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The state a checkpoint must keep (empty: nothing outlives a round)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


class FedProx(FedAvg):
    """FedAvg clients pulled towards the round's global model by ``mu/2 ||w - x||^2``."""

    def __init__(self, prox_mu: float):
        self.prox_mu = prox_mu

    @classmethod
    def from_config(cls, config: FederateConfig) -> "FedProx":
        return cls(config.client.prox_mu)


class ControlVariates:
    """SCAFFOLD's server control variate ``c`` and every client's ``c_i`` (Karimireddy et al., option II).

    Client ``i`` trains with gradients ``g + c - c_i`` for ``K`` steps of size ``lr`` from ``x`` to
    ``y_i``, then ``c_i+ = c_i - c + (x - y_i) / (K lr)``. The server sets
    ``c += (1/N) sum_{i in S} (c_i+ - c_i)``. The ``c_i`` live in host memory on every rank (the
    simulator's stand-in for state each client keeps), so any rank can train any client; they are
    saved with the checkpoint and persist across rounds.
    """

    def __init__(self, num_clients: int, num_params: int, device: torch.device):
        self.num_clients = num_clients
        self.c = torch.zeros(num_params, dtype=torch.float32, device=device)
        self.clients = torch.zeros(num_clients, num_params, dtype=torch.float32)
        self._correction = torch.empty_like(self.c)

    def correction(self, client: int) -> torch.Tensor:
        """``c - c_i``: added to each of client ``i``'s gradients."""
        return torch.sub(self.c, self.clients[client].to(self.c.device, non_blocking=True), out=self._correction)

    def corrections(self, clients: list[int]) -> torch.Tensor:
        """``c - c_i`` for several clients, one row each."""
        rows = self.clients[torch.as_tensor(clients)].to(self.c.device, non_blocking=True)
        return torch.sub(self.c.unsqueeze(0), rows)

    def client_update(self, client: int, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> torch.Tensor:
        """The client's new ``c_i+`` (on the device of ``x``)."""
        c_i = self.clients[client].to(x.device)
        return (x - y).div_(steps * lr).add_(c_i).sub_(self.c)

    def client_updates(self, clients: list[int], deltas: torch.Tensor, steps: list[int], lr: float) -> torch.Tensor:
        """:meth:`client_update` for several clients, from their updates ``y_i - x`` (one row each)."""
        c_i = self.clients[torch.as_tensor(clients)].to(deltas.device)
        step_sizes = torch.tensor([k * lr for k in steps], dtype=deltas.dtype, device=deltas.device)
        return torch.neg(deltas).div_(step_sizes.unsqueeze(1)).add_(c_i).sub_(self.c)

    def apply(self, cohort: list[int], new_client_values: torch.Tensor, delta_sum: torch.Tensor) -> None:
        """Store the cohort's ``c_i+`` (rows of ``new_client_values``) and move ``c``."""
        self.c.add_(delta_sum.to(self.c.dtype), alpha=1.0 / self.num_clients)
        self.clients[torch.as_tensor(cohort)] = new_client_values.to("cpu", torch.float32)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"c": self.c, "clients": self.clients}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.c.copy_(state["c"])
        self.clients.copy_(state["clients"])


class Scaffold(FedAvg):
    """FedAvg clients whose gradients are corrected by control variates (:class:`ControlVariates`).

    Each client receives ``c`` and sends ``c_i+ - c_i`` besides the model; the new ``c_i`` ride
    in the round buffer (each row has one writer) so every rank stores the same ones.
    """

    stateful_clients = True

    def __init__(self, lr: float):
        self.lr = lr  # the clients' step size: c_i+ divides the update by (steps * lr)
        self.control: Optional[ControlVariates] = None

    @classmethod
    def from_config(cls, config: FederateConfig) -> "Scaffold":
        return cls(config.client.lr)

    def setup(self, num_clients: int, num_params: int, device: torch.device) -> None:
        self.control = ControlVariates(num_clients, num_params, device)

    def extra_traffic(self, num_params: int) -> int:
        return num_params

    def correction(self, client: int) -> torch.Tensor:
        return self.control.correction(client)

    def corrections(self, clients: list[int]) -> torch.Tensor:
        return self.control.corrections(clients)

    def client_state_change(self, client: int, x: torch.Tensor, y: torch.Tensor, steps: int) -> StateChange:
        new = self.control.client_update(client, x, y, steps, self.lr)
        return new - self.control.clients[client].to(x.device), new

    def cohort_state_changes(self, clients: list[int], deltas: torch.Tensor, steps: list[int]) -> StateChange:
        new = self.control.client_updates(clients, deltas, steps, self.lr)
        return new - self.control.clients[torch.as_tensor(clients)].to(deltas.device), new

    def after_round(self, cohort: list[int], sums: "RoundSums") -> None:
        self.control.apply(cohort, sums.client_state, sums.control_sum)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.control.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.control.load_state_dict(state)


#: ``federate.algorithm`` -> client algorithm; the FedOpt names differ from FedAvg only in
#: their server optimizer (``strategies.make_server_optimizer``).
ALGORITHMS: dict[str, type[FedAvg]] = {
    "fedavg": FedAvg,
    "fedavgm": FedAvg,
    "fedadam": FedAvg,
    "fedyogi": FedAvg,
    "fedadagrad": FedAvg,
    "fedprox": FedProx,
    "scaffold": Scaffold,
}


def make_algorithm(config: FederateConfig) -> FedAvg:
    """The client algorithm ``config.algorithm`` names, configured but holding no state yet (:meth:`FedAvg.setup`)."""
    algorithm = ALGORITHMS.get(config.algorithm)
    if algorithm is None:
        raise ValueError(f"federate.algorithm {config.algorithm!r} is not one of: {', '.join(ALGORITHMS)}")
    return algorithm.from_config(config)

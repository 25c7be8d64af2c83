"""The ``federate`` config section: the federation, the client and server optimizers, the simulator.

Defaults are the paper's CIFAR setting (100 clients from ``data.partition``, 10 sampled per round,
500 rounds, FedAvg, one local epoch, starting from the pretrain stage's model); the optimizer
constants of the FedOpt family are Reddi et al.'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field

from gptfl_hpc.schema import Section, added, operational, output_choice

Algorithm = Literal["fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "fedprox", "scaffold"]


class ClientConfig(Section):
    """Local training on each sampled client: plain SGD (PyTorch's semantics) over its data."""

    local_epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    prox_mu: float = Field(0.01, ge=0, description="fedprox: weight of (mu/2)||w - w_global||^2")


class ServerConfig(Section):
    """The server update applied to the averaged client update (Reddi et al.'s notation)."""

    lr: Optional[float] = Field(None, gt=0, description="eta; null = 1.0 for fedavg/fedprox/scaffold/fedavgm, 0.01 for adaptive")
    momentum: float = Field(0.9, ge=0, lt=1, description="fedavgm: beta")
    beta1: float = Field(0.9, ge=0, lt=1, description="fedadam/fedyogi/fedadagrad: first moment")
    beta2: float = Field(0.99, ge=0, lt=1, description="fedadam/fedyogi: second moment")
    tau: float = Field(1e-3, gt=0, description="adaptivity; v starts at tau^2")
    bias_correction: bool = Field(False, description="fedadam: Adam's bias correction of the step size")


class SecureConfig(Section):
    """Secure aggregation: fixed-point updates under pairwise masks that cancel in the sum."""

    enabled: bool = False
    frac_bits: int = Field(32, ge=8, le=48, description="fixed-point fraction bits; error <= clients * 2^-(bits+1)")


class ClientEvalConfig(Section):
    """Per-client evaluation: a seeded share of each client's data is held out of training and the
    global model is scored on every client's share."""

    fraction: float = Field(0.2, gt=0, lt=1, description="share of each client's samples held out (rounded to nearest)")
    every: int = Field(10, ge=1, description="score the clients every k rounds (and round 0 and the last)")
    finetune_steps: int = Field(
        0, ge=0, description="also score each client after this many local SGD steps from the global model; 0 = off"
    )


class FederateConfig(Section):
    """Federated training of the downstream model on the clients' private data."""

    algorithm: Algorithm = "fedavg"
    init: Literal["pretrain", "scratch"] = output_choice(
        "pretrain",
        description="pretrain: GPT-FL from the pretrain stage's model into RUN/federate; "
        "scratch: FL from model.* init into RUN/federate-scratch",
    )
    init_path: Optional[Path] = Field(None, description="GPT-FL's start: an exported model other than RUN/pretrain's")
    rounds: int = Field(500, ge=1)
    clients_per_round: int = Field(10, ge=1, description="sampled without replacement, keyed on (seed, round)")
    weighting: Literal["samples", "uniform"] = Field("samples", description="client weight in the average")
    ranks: int = Field(1, ge=1, description="simulator processes, one device each")
    threads_per_rank: Optional[int] = Field(None, ge=1, description="CPU threads per rank; null = cores / ranks")
    vectorize: Optional[int] = added(
        None, ge=1, description="train up to this many of a rank's clients at once as one batched computation; null = one by one"
    )
    eval_every: int = Field(10, ge=1, description="test accuracy and macro-F1 every k rounds (and the last)")
    eval_batch_size: int = Field(256, ge=1)
    checkpoint_every: int = operational(10, ge=1, description="checkpoint every k rounds (and the last)")
    baseline: bool = Field(True, description="gptfl run: also federate from scratch into RUN/federate-scratch")
    target_accuracy: Optional[float] = Field(
        None, gt=0, le=1, description="report the parameters communicated until test accuracy first reaches it"
    )
    client_eval: Optional[ClientEvalConfig] = added(
        None, description="hold out a share of each client's data and score the global model per client; null = off"
    )
    client: ClientConfig = Field(default_factory=ClientConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    secure: SecureConfig = Field(default_factory=SecureConfig)

    @property
    def server_lr(self) -> float:
        if self.server.lr is not None:
            return self.server.lr
        return 0.01 if self.algorithm in ("fedadam", "fedyogi", "fedadagrad") else 1.0

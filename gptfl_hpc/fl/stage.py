"""Stage 4: ``run(config)`` federates from the pretrain stage's model (GPT-FL) into ``RUN/federate``,
or with ``federate.init=scratch`` from the model's own initialisation into ``RUN/federate-scratch``;
``run_baseline(config)`` always runs the latter (FL from scratch, the paper's comparison). Both
live in one run directory: ``federate.init`` picks the output, it is not part of the run's identity.

Both check the configuration in the calling process (``preflight``), so bad input fails with one
line before any rank starts, then run :func:`gptfl_hpc.fl.simulator.simulate` on
``federate.ranks`` ranks: spawned here, or joined when ``srun``/``torchrun`` started this process
as one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from gptfl_hpc.config import Config
from gptfl_hpc.errors import UserError
from gptfl_hpc.locks import output_lock
from gptfl_hpc.ranks import check_rank_devices, launched_world, run_on_ranks
from gptfl_hpc.rundir import prepare_run_dir

def run(config: Config) -> dict[str, Any]:
    """GPT-FL: federated fine-tuning of the pretrained downstream model (or from scratch if so configured)."""
    return federate(config, config.federate.init)


def run_baseline(config: Config) -> dict[str, Any]:
    """The same federation from the model's own initialisation (random or ImageNet weights)."""
    return federate(config, "scratch")


def federate(config: Config, init: str) -> dict[str, Any]:
    from gptfl_hpc.fl.simulator import FederationSetup, simulate

    init_path = preflight(config, init, check_local_devices=True)
    output = config.layout.federation(init)
    rank = (launched_world() or (0, 1))[0]
    with output_lock(config.run_dir, output.name, rank=rank):  # rank 0 holds it for the job
        prepare_run_dir(config)
        return run_on_ranks(simulate, config.federate.ranks, (FederationSetup(config, output, init_path),))


def init_model_path(config: Config, init: str) -> Optional[Path]:
    """The exported model to start from, or None for the model config's own initialisation."""
    if init != "pretrain":
        return None
    return config.federate.init_path or config.layout.pretrained_model


def preflight(
    config: Config, init: Optional[str] = None, check_local_devices: bool = False, model_pending: bool = False
) -> Optional[Path]:
    """Refuse bad input with one ``UserError`` line; return the exported model to start from.
    ``model_pending``: the pretrain stage runs first, so its model is not checked yet."""
    fed = config.federate
    init = init or fed.init
    labels = config.labels.load()
    train = _open_matched(config, labels)  # a bad root or labels the data lacks: one line, here
    if fed.client_eval is not None:
        num_clients = _check_client_holdouts(config, train)
    else:  # the partition itself, not only its size: too few samples or no client ids fail here, in one line
        num_clients = _count_clients(config, train)
    if fed.clients_per_round > num_clients:
        raise UserError(
            f"federate.clients_per_round {fed.clients_per_round} exceeds the {num_clients} clients "
            f"(data.partition.num_clients); sample at most {num_clients}"
        )
    if check_local_devices:
        check_rank_devices("federate.ranks", fed.ranks)
    if fed.vectorize is not None:
        _check_vectorizable(config, labels)
    init_path = init_model_path(config, init)
    if init_path is not None and not (model_pending and config.federate.init_path is None):
        if not init_path.is_file():
            raise UserError(
                f"federate.init is pretrain but {init_path} does not exist; run `gptfl pretrain` first, "
                "set federate.init_path, or use federate.init=scratch"
            )
        _check_init_model(config, labels, init_path)
    return init_path


def _check_init_model(config: Config, labels: list[str], path: Path) -> None:
    """Load the export into the configured model once, so a mismatch fails here with one line."""
    import torch

    from gptfl_hpc.models.config import build_from_config
    from gptfl_hpc.models.export import load_model

    with torch.random.fork_rng(devices=[]):
        model = build_from_config(config.model, len(labels), config.data.image_size, config.data.audio.n_mels)
    load_model(path, model, labels)


def _check_vectorizable(config: Config, labels: list[str]) -> None:
    import torch

    from gptfl_hpc.fl.algorithms import make_algorithm
    from gptfl_hpc.fl.cohort import stacked_bytes, unsupported_reason
    from gptfl_hpc.models.config import build_from_config

    fed = config.federate
    architecture = config.model.model_copy(update={"imagenet_weights": None})  # the layers, not the weights
    with torch.device("meta"):
        model = build_from_config(architecture, len(labels), config.data.image_size, config.data.audio.n_mels)
    reason = unsupported_reason(model)
    if reason is not None:
        raise UserError(f"model.name {config.model.name}: {reason}")
    if torch.cuda.is_available():  # where the ranks' GPUs are visible from here: refuse what cannot fit
        capacity = min(fed.vectorize, fed.clients_per_round)
        num_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        needed = stacked_bytes(num_params, capacity, fed.client, make_algorithm(fed).extra_stacks)
        total = torch.cuda.get_device_properties(0).total_memory
        if needed > total:
            raise UserError(
                f"federate.vectorize={capacity} needs {needed / 2**30:.1f} GiB for the stacked client models of "
                f"model.name {config.model.name}, more than the GPU's {total / 2**30:.1f} GiB; lower federate.vectorize"
            )


def _open_matched(config: Config, labels: list[str]) -> Any:
    """The train split matched to the run's labels; the test split is opened and matched too."""
    from gptfl_hpc.data.factory import open_dataset
    from gptfl_hpc.data.labels import match_labels

    # Listed and their headers checked, not decoded: nothing is written before the jobs run.
    match_labels(open_dataset(config.data, "test", decode=False), labels)
    return match_labels(open_dataset(config.data, "train", decode=False), labels)


def _count_clients(config: Config, train: Any) -> int:
    from gptfl_hpc.data.factory import make_partition

    return make_partition(config.data, train).num_clients


def _check_client_holdouts(config: Config, train: Any) -> int:
    """Every client keeps a holdout and training data under ``federate.client_eval``; the client count."""
    from gptfl_hpc.data.factory import make_partition
    from gptfl_hpc.fl.client_eval import check_holdouts

    partition = make_partition(config.data, train)
    check_holdouts(partition.sizes(), config.federate.client_eval.fraction)
    return partition.num_clients

"""``federate.client_eval``: per-client holdouts and scores, checked against a hand computation.

One 2-rank federation on the quickstart digits (a tiny ConvNet, one thread per rank, real gloo
processes) serves every test here: each rank scores the clients it owns and the counts meet in one
all_reduce, so matching a single-process recomputation also checks that they arrive in client order.
The SIGKILL-resume test with ``client_eval`` on lives beside the other resume tests
(``test_fl_federation.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gptfl_hpc import preemption
from gptfl_hpc.config import load_config
from gptfl_hpc.data.factory import make_partition, open_dataset
from gptfl_hpc.data.images import to_float_images
from gptfl_hpc.fl import stage
from gptfl_hpc.fl.client import FlatModel, LocalTrainer
from gptfl_hpc.fl.client_eval import holdout_size, split_holdouts
from gptfl_hpc.fl.clientdata import Samples
from gptfl_hpc.fl.sampling import finetune_seed
from gptfl_hpc.fl.simulator import load_federation_data
from gptfl_hpc.models.config import build_from_config
from gptfl_hpc.models.export import load_model

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "tests" / "configs" / "tiny-quickstart.yaml"
FRACTION, FINETUNE_STEPS = 0.25, 2
OVERRIDES = [
    "model.width=8", "federate.clients_per_round=4", "federate.threads_per_rank=1", "federate.checkpoint_every=1",
    "federate.init=scratch", "federate.rounds=3", "federate.ranks=2", "federate.eval_every=3",
    f"federate.client_eval.fraction={FRACTION}", "federate.client_eval.every=2",
    f"federate.client_eval.finetune_steps={FINETUNE_STEPS}",
]


def config(run_dir: Path, *extra: str):
    return load_config(QUICKSTART, [f"run_dir={run_dir}", *OVERRIDES, *extra])


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("client-eval")
    cfg = config(run_dir)
    stage.run(cfg)
    out = run_dir / "federate-scratch"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return cfg, out, records, json.loads((out / "summary.json").read_text())


def digits(train, indices: np.ndarray) -> Samples:
    """The quickstart's training images ``indices`` as the model sees them, decoded by hand."""
    x = to_float_images(torch.from_numpy(train.samples[indices]).permute(0, 3, 1, 2))
    return Samples(x, torch.from_numpy(train.targets[indices].astype(np.int64)))


def correct(model: torch.nn.Module, samples: Samples) -> int:
    with torch.no_grad():
        return int((model.eval()(samples.x).argmax(1) == samples.y).sum())


def test_client_scores_equal_a_hand_computation_from_the_saved_model(federation):
    cfg, out, records, summary = federation
    labels = cfg.labels.load()
    train_set = open_dataset(cfg.data, "train")
    partition = make_partition(cfg.data, train_set)
    training, holdouts = split_holdouts(partition.clients, FRACTION, cfg.seed)
    model = load_model(out / "model.safetensors", build_from_config(cfg.model, len(labels), cfg.data.image_size), labels)
    accuracy = [correct(model, digits(train_set, held)) / len(held) for held in holdouts]

    # Personalised: plain SGD from the global model for FINETUNE_STEPS steps on the client's training share.
    flat = FlatModel(model, torch.device("cpu"))
    global_state = flat.state.clone()
    trainer = LocalTrainer(flat, cfg.federate.client)
    finetuned = []
    for client, (train, held) in enumerate(zip(training, holdouts)):
        result = trainer.train(global_state, digits(train_set, train), finetune_seed(cfg.seed, 3, client), max_steps=FINETUNE_STEPS)
        assert result.steps == FINETUNE_STEPS
        finetuned.append(correct(flat.model, digits(train_set, held)) / len(held))

    assert summary["client_eval_round"] == 3
    assert summary["client_accuracy"] == [
        {"client": c, "holdout": len(held), "accuracy": accuracy[c], "finetuned_accuracy": finetuned[c]}
        for c, held in enumerate(holdouts)
    ]
    assert [r["round"] for r in records if "client_accuracy_mean" in r] == [0, 2, 3]  # round 0, every 2, the last
    last = records[-1]
    assert last["client_accuracy_mean"] == float(np.mean(accuracy))
    assert last["client_accuracy_p10"] == float(np.percentile(accuracy, 10))
    assert last["client_accuracy_worst"] == min(accuracy)
    assert last["finetuned_accuracy_mean"] == float(np.mean(finetuned))
    assert last["finetuned_accuracy_worst"] == min(finetuned)
    assert "client_accuracy_mean" not in records[1]


def test_holdouts_are_seeded_disjoint_from_training_and_the_same_on_every_load(federation):
    cfg, out, records, summary = federation
    partition = make_partition(cfg.data, open_dataset(cfg.data, "train"))
    first = load_federation_data(cfg, 0, 1, torch.device("cpu"))
    again = load_federation_data(cfg, 1, 2, torch.device("cpu"))  # another rank, as a resume would load it
    for client, whole in enumerate(partition.clients):
        trained, held = first.clients.clients[client], first.holdouts.clients[client]
        assert len(held) == holdout_size(len(whole), FRACTION) == summary["client_accuracy"][client]["holdout"] > 0
        assert len(np.intersect1d(trained, held)) == 0 and len(trained) > 0
        assert np.array_equal(np.sort(np.concatenate([trained, held])), np.sort(whole))
        assert np.array_equal(held, again.holdouts.clients[client]) and np.array_equal(trained, again.clients.clients[client])
    assert first.sizes.tolist() == [len(c) for c in first.clients.clients]  # client weights count training samples only
    cohort = records[1]["clients"]
    assert records[1]["samples"] == sum(int(first.sizes[c]) for c in cohort)
    other_seed = split_holdouts(partition.clients, FRACTION, cfg.seed + 1)[1]
    assert any(not np.array_equal(a, b) for a, b in zip(other_seed, first.holdouts.clients))


def test_a_run_stopped_after_its_last_round_reports_every_client_when_resumed(tmp_path):
    """The per-client list of the last evaluation travels in the checkpoint, not only in memory."""
    cfg = config(tmp_path, "federate.ranks=1", "federate.rounds=1")
    preemption.request()
    try:
        with pytest.raises(preemption.Preempted):
            stage.run(cfg)  # round 1, the last, is checkpointed; no summary yet
    finally:
        preemption.clear()
    out = tmp_path / "federate-scratch"
    assert not (out / "summary.json").exists()
    stage.run(cfg)
    summary = json.loads((out / "summary.json").read_text())
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert summary["client_eval_round"] == last["round"] == 1 and len(summary["client_accuracy"]) == 10
    assert last["client_accuracy_mean"] == float(np.mean([row["accuracy"] for row in summary["client_accuracy"]]))
    assert last["finetuned_accuracy_worst"] == min(row["finetuned_accuracy"] for row in summary["client_accuracy"])

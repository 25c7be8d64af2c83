"""The benchmark workload as a Flower app (Message API): a ClientApp and a ServerApp running FedAvg.

A module of its own, not part of the driver script, so that Ray actors import the ClientApp by
name (and keep the per-actor data cache) instead of receiving a pickled copy with every message.
"""

from __future__ import annotations

import time

import torch
from flwr.app import ArrayRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from workload import BATCH, COHORT, LR, USERS, pfl_cnn, user_slice, user_tensors

client_app = ClientApp()
_data: list[tuple[torch.Tensor, torch.Tensor]] = []  # per actor process: built once, on its first message


def _user_data(user: int) -> TensorDataset:
    if not _data:
        _data.append(user_tensors())
    x, y = _data[0]
    return TensorDataset(x[user_slice(user)], y[user_slice(user)])


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """One local epoch of SGD on this node's user, as Flower's PyTorch quickstart trains."""
    data = _user_data(int(context.node_config["partition-id"]))
    model = pfl_cnn()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for x, y in DataLoader(data, batch_size=BATCH, shuffle=True):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                          "metrics": MetricRecord({"num-examples": len(data)})})
    return Message(content=content, reply_to=msg)


@client_app.query()
def warm_up(msg: Message, context: Context) -> Message:
    """Start-up work of an actor (imports, data) before the timed rounds."""
    _user_data(int(context.node_config["partition-id"]))
    return Message(content=RecordDict(), reply_to=msg)


def server_app(rounds: int, actors: int, times: dict[str, float], timeout: float) -> ServerApp:
    """A ServerApp running ``rounds`` of FedAvg over COHORT of USERS nodes, no evaluation.

    It first sends one query per Ray actor and waits for the replies, so that Ray's and the
    actors' start-up count as set-up; ``times`` gets the wall-clock start and end of the rounds.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        deadline = time.monotonic() + timeout
        while len(nodes := list(grid.get_node_ids())) < USERS and time.monotonic() < deadline:
            time.sleep(0.01)
        replies = list(grid.send_and_receive(
            [Message(content=RecordDict(), message_type=MessageType.QUERY, dst_node_id=node) for node in nodes[:actors]],
            timeout=deadline - time.monotonic()))
        if len(replies) < actors or any(reply.has_error() for reply in replies):
            raise RuntimeError(f"Flower warm-up: {len(replies)} of {actors} actors answered, or with an error")
        strategy = FedAvg(fraction_train=COHORT / USERS, fraction_evaluate=0.0, min_train_nodes=COHORT,
                          min_available_nodes=USERS)
        initial = ArrayRecord(pfl_cnn().state_dict())
        times["loop_start"] = time.time()
        strategy.start(grid=grid, initial_arrays=initial, num_rounds=rounds, timeout=deadline - time.monotonic())
        times["loop_end"] = time.time()

    return app

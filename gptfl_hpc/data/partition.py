"""Client partitions of a dataset, deterministic from a seed, saved as JSON.

A partition maps client id (``0 .. num_clients-1``) to the sorted indices of its samples; every
sample belongs to exactly one client.

- ``dirichlet_partition``: for each class, client shares are drawn from Dir(alpha) and the class's
  samples are split accordingly (the FedML / pFL recipe, including its cap that stops adding to
  clients already holding more than ``N / num_clients`` samples); the whole draw is repeated with
  the same generator until every client has at least ``min_client_size`` samples.
- ``iid_partition``: a random permutation cut into near-equal parts.
- ``natural_partition``: one client per distinct client id (writer, speaker, hospital), or the
  ids shuffled and merged into ``num_clients`` groups of near-equal id count;
  ``speaker_partition`` is it over Speech Commands' speakers, under the name it had first.

The JSON file is ``{"format": ..., "kind": ..., "seed": ..., "num_samples": N,
"clients": {"0": [indices...], ...}}`` and is written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from gptfl_hpc.durable import atomic_write_text
from gptfl_hpc.errors import UserError

FORMAT = "gptfl-partition/1"
MAX_DIRICHLET_DRAWS = 10_000


@dataclass
class Partition:
    """Client id -> sorted sample indices, plus how it was made."""

    clients: list[np.ndarray]
    kind: str
    seed: int
    num_samples: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    def sizes(self) -> np.ndarray:
        return np.array([len(c) for c in self.clients], dtype=np.int64)

    def class_counts(self, targets: np.ndarray, num_classes: int) -> np.ndarray:
        """``num_clients x num_classes`` sample counts."""
        return (
            np.stack([np.bincount(targets[c], minlength=num_classes) for c in self.clients])
            if self.clients
            else np.zeros((0, num_classes), np.int64)
        )

    def to_json(self) -> str:
        payload = {
            "format": FORMAT,
            "kind": self.kind,
            "seed": self.seed,
            "num_samples": self.num_samples,
            "params": self.params,
            "clients": {str(k): c.tolist() for k, c in enumerate(self.clients)},
        }
        return json.dumps(payload, separators=(",", ":")) + "\n"


# --------------------------------------------------------------------------- algorithms


def dirichlet_partition(
    targets: np.ndarray,
    num_clients: int,
    alpha: float,
    seed: int,
    min_client_size: int = 10,
    num_classes: Optional[int] = None,
) -> Partition:
    targets = np.asarray(targets, dtype=np.int64)
    n = len(targets)
    _check_clients(num_clients, n)
    if alpha <= 0:
        raise UserError(f"data.partition.alpha must be > 0 (got {alpha})")
    if min_client_size * num_clients > n:
        raise UserError(
            f"data.partition.min_client_size {min_client_size} x {num_clients} clients exceeds the {n} samples; "
            "lower min_client_size or num_clients"
        )
    if num_classes is None:
        num_classes = int(targets.max()) + 1 if n else 0
    by_class = [np.flatnonzero(targets == k) for k in range(num_classes)]
    rng = np.random.default_rng(seed)
    for _ in range(MAX_DIRICHLET_DRAWS):
        clients = _dirichlet_draw(by_class, num_clients, alpha, n, rng)
        if min(len(c) for c in clients) >= min_client_size:
            params = {"alpha": alpha, "min_client_size": min_client_size}
            return Partition([np.sort(c) for c in clients], "dirichlet", seed, n, params)
    raise UserError(
        f"no Dirichlet(alpha={alpha}) partition gave all {num_clients} clients {min_client_size} samples "
        f"in {MAX_DIRICHLET_DRAWS} draws; raise alpha or lower min_client_size"
    )


def _dirichlet_draw(
    by_class: list[np.ndarray], num_clients: int, alpha: float, n: int, rng: np.random.Generator
) -> list[np.ndarray]:
    shares: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    sizes = np.zeros(num_clients, dtype=np.int64)
    for members in by_class:
        if len(members) == 0:
            continue
        members = rng.permutation(members)
        proportions = rng.dirichlet(np.full(num_clients, alpha))
        # Stop feeding clients that already hold their fair share: keeps sizes from running away.
        proportions = proportions * (sizes < n / num_clients)
        total = proportions.sum()
        proportions = proportions / total if total > 0 else np.full(num_clients, 1.0 / num_clients)
        cuts = (np.cumsum(proportions) * len(members)).astype(np.int64)[:-1]
        for client, part in enumerate(np.split(members, cuts)):
            shares[client].append(part)
            sizes[client] += len(part)
    return [np.concatenate(parts) if parts else np.zeros(0, np.int64) for parts in shares]


def iid_partition(num_samples: int, num_clients: int, seed: int) -> Partition:
    _check_clients(num_clients, num_samples)
    order = np.random.default_rng(seed).permutation(num_samples)
    return Partition([np.sort(part) for part in np.array_split(order, num_clients)], "iid", seed, num_samples)


def natural_partition(
    client_ids: Sequence[str],
    seed: int,
    num_clients: Optional[int] = None,
    min_client_size: int = 0,
    kind: str = "natural",
) -> Partition:
    """Clients are the distinct ids (sorted), or ``num_clients`` groups of ids shuffled with ``seed``.

    Merging whole ids keeps every writer's (speaker's, hospital's) samples on one client, which is
    what makes the partition natural.
    """
    client_ids = np.asarray(client_ids)
    names, id_of_sample = np.unique(client_ids, return_inverse=True)
    noun = "speakers" if kind == "speaker" else "client ids"
    if num_clients is None:
        groups = [np.array([k]) for k in range(len(names))]
    else:
        if not 1 <= num_clients <= len(names):
            raise UserError(f"data.partition.num_clients {num_clients} must be between 1 and the {len(names)} {noun}")
        order = np.random.default_rng(seed).permutation(len(names))
        groups = np.array_split(order, num_clients)
    if min_client_size * len(groups) > len(client_ids):
        raise UserError(
            f"data.partition.min_client_size {min_client_size} x {len(groups)} clients exceeds the "
            f"{len(client_ids)} samples; lower min_client_size or num_clients"
        )
    client_of_id = np.empty(len(names), dtype=np.int64)
    for client, members in enumerate(groups):
        client_of_id[members] = client
    client_of_sample = client_of_id[id_of_sample]
    clients = [np.flatnonzero(client_of_sample == k) for k in range(len(groups))]
    params = {"num_speakers": int(len(names))} if kind == "speaker" else {"num_client_ids": int(len(names))}
    return Partition(clients, kind, seed, len(client_ids), params)


def speaker_partition(speakers: Sequence[str], seed: int, num_clients: Optional[int] = None) -> Partition:
    """Clients are speakers (sorted by id), or ``num_clients`` groups of shuffled speakers."""
    return natural_partition(speakers, seed, num_clients, kind="speaker")


def _check_clients(num_clients: int, num_samples: int) -> None:
    if not 1 <= num_clients <= max(num_samples, 1):
        raise UserError(f"data.partition.num_clients {num_clients} must be between 1 and the {num_samples} samples")


# --------------------------------------------------------------------------- files


def save_partition(path: Union[str, Path], partition: Partition) -> None:
    atomic_write_text(path, partition.to_json())


def load_partition(path: Union[str, Path], num_samples: Optional[int] = None) -> Partition:
    """Read a partition file; UserError when it is malformed or made for another dataset size."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"partition file {path} not found; run 'gptfl partition' or fix the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"partition file {path} is not JSON ({exc.__class__.__name__}); delete it and re-run") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or not isinstance(payload.get("clients"), dict):
        raise UserError(f"partition file {path} is not a {FORMAT} file; delete it and re-run")
    total = int(payload["num_samples"])
    if num_samples is not None and total != num_samples:
        raise UserError(f"partition file {path} covers {total} samples but the dataset has {num_samples}; re-partition")
    ids = sorted(payload["clients"], key=int)
    if [int(k) for k in ids] != list(range(len(ids))):
        raise UserError(f"partition file {path} has client ids that are not 0..{len(ids) - 1}; re-partition")
    clients = [np.asarray(payload["clients"][k], dtype=np.int64) for k in ids]
    _check_cover(clients, total, path)
    return Partition(
        clients, str(payload.get("kind", "")), int(payload.get("seed", 0)), total, dict(payload.get("params", {}))
    )


def _check_cover(clients: list[np.ndarray], total: int, path: Path) -> None:
    flat = np.concatenate(clients) if clients else np.zeros(0, np.int64)
    if len(flat) != total or (total and not np.array_equal(np.sort(flat), np.arange(total))):
        raise UserError(f"partition file {path} does not assign each of the {total} samples exactly once; re-partition")

"""The files of a label-discovery round: their formats, reading with checks, and atomic writing.

=====================  ===========================  =============================================
file                   format tag                   content
=====================  ===========================  =============================================
``params.json``        ``gptfl-iblt-params/1``      the table's layout and hash seed (``iblt``)
``ID.key``             ``gptfl-dh-private-key/1``   a client's private exponent (hex), mode 600
``ID.pub``             ``gptfl-dh-public-key/1``    its public key (hex), shared with the others
``masked_ID.npz``      ``gptfl-masked-iblt/1``      the masked table, its participants, the
                                                    params fingerprint and the modulus
``reveal_ID.json``     ``gptfl-seed-reveal/1``      a survivor's seeds with the dropped clients
``labels.json``        --                           the decoded union, sorted, optional counts
=====================  ===========================  =============================================

Every reader refuses a wrong, damaged or mismatched file in one ``UserError`` line naming the file
and the step that remakes it.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from gptfl_hpc import secure_sum
from gptfl_hpc.durable import atomic_path, atomic_write_bytes, atomic_write_json
from gptfl_hpc.errors import UserError
from gptfl_hpc.labels import iblt

PRIVATE_KEY_FORMAT = "gptfl-dh-private-key/1"
PUBLIC_KEY_FORMAT = "gptfl-dh-public-key/1"
MASKED_FORMAT = "gptfl-masked-iblt/1"
REVEAL_FORMAT = "gptfl-seed-reveal/1"


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist; check the path") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{what} {path} is not readable JSON ({exc}); regenerate it") from None


def _hex_int(value: Any, path: Path, what: str) -> int:
    try:
        return int(value, 16)
    except (TypeError, ValueError):
        raise UserError(f"{path} has no valid hex '{what}' field; regenerate it with `gptfl labels keygen`") from None


# --------------------------------------------------------------------------- params


def write_params(path: Path, params: iblt.IbltParams, expected_labels: int, failure_prob: float) -> None:
    atomic_write_json(path, params.to_dict(expected_labels=expected_labels, failure_prob=failure_prob))


def load_params(path: Path) -> iblt.IbltParams:
    return iblt.IbltParams.from_dict(_read_json(path, "params file"), source=f"params file {path}")


# --------------------------------------------------------------------------- keys


def key_paths(out: Path, client_id: int) -> tuple[Path, Path]:
    """``(OUT/ID.key, OUT/ID.pub)``."""
    return Path(out) / f"{client_id}.key", Path(out) / f"{client_id}.pub"


def write_key_pair(out: Path, client_id: int, private: int, public: int) -> tuple[Path, Path]:
    """Write ``ID.key`` (mode 600 before the secret is in it) and ``ID.pub`` (mode 644)."""
    private_path, public_path = key_paths(out, client_id)
    common = {"group": secure_sum.GROUP_NAME, "client_id": client_id, "public": format(public, "x")}
    private_doc = {"format": PRIVATE_KEY_FORMAT, **common, "private": format(private, "x")}
    public_doc = {"format": PUBLIC_KEY_FORMAT, **common}
    Path(out).mkdir(parents=True, exist_ok=True)
    with atomic_path(private_path) as tmp:
        os.chmod(tmp, 0o600)  # before the secret is in it
        tmp.write_text(json.dumps(private_doc, indent=2) + "\n", encoding="utf-8")
    with atomic_path(public_path) as tmp:
        os.chmod(tmp, 0o644)
        tmp.write_text(json.dumps(public_doc, indent=2) + "\n", encoding="utf-8")
    return private_path, public_path


def load_private_key(path: Path, client_id: int) -> int:
    data = _read_json(path, "private key")
    if not isinstance(data, dict) or data.get("format") != PRIVATE_KEY_FORMAT or data.get("group") != secure_sum.GROUP_NAME:
        raise UserError(f"{path} is not a {secure_sum.GROUP_NAME} private key; create one with `gptfl labels keygen`")
    if data.get("client_id") != client_id:
        raise UserError(f"{path} belongs to client {data.get('client_id')}, not --client-id {client_id}; pass that client's key")
    private = _hex_int(data.get("private"), path, "private")
    if not 2 <= private < secure_sum.MODP_2048_Q:
        raise UserError(f"{path} holds an out-of-range private key; regenerate it with `gptfl labels keygen`")
    return private


def load_public_keys(directory: Path) -> dict[int, int]:
    """client id -> public key, from every ``*.pub`` file in ``directory``."""
    if not Path(directory).is_dir():
        raise UserError(f"public keys directory {directory} does not exist; collect every client's .pub file there")
    keys: dict[int, int] = {}
    sources: dict[int, Path] = {}
    for path in sorted(Path(directory).glob("*.pub")):
        data = _read_json(path, "public key")
        if not isinstance(data, dict) or data.get("format") != PUBLIC_KEY_FORMAT or data.get("group") != secure_sum.GROUP_NAME:
            raise UserError(f"{path} is not a {secure_sum.GROUP_NAME} public key; recreate it with `gptfl labels keygen`")
        owner = data.get("client_id")
        if not isinstance(owner, int) or isinstance(owner, bool) or owner < 0:
            raise UserError(f"{path} has no valid client_id; recreate it with `gptfl labels keygen`")
        if owner in keys:
            raise UserError(f"{sources[owner]} and {path} are both keys of client {owner}; keep one per client")
        value = _hex_int(data.get("public"), path, "public")
        secure_sum.check_public_key(value, f"client {owner} ({path})")
        keys[owner], sources[owner] = value, path
    if not keys:
        raise UserError(f"no .pub files in {directory}; collect every client's public key there")
    return keys


# --------------------------------------------------------------------------- a client's label names


def read_label_names(labels: Optional[str], labels_file: Optional[Path]) -> list[str]:
    """Labels from ``labels`` ("a,b") or else ``labels_file`` (one per line); trimmed, blank entries
    skipped, duplicates dropped in order."""
    if labels is not None:
        raw = labels.split(",")
        source = "--labels"
    else:
        try:
            raw = Path(labels_file).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise UserError(f"labels file {labels_file} does not exist; check the path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"labels file {labels_file} is not readable UTF-8 text ({exc}); fix the file") from None
        source = f"labels file {labels_file}"
    names = [label.strip() for label in raw if label.strip()]
    if not names:
        raise UserError(f"{source} holds no label names; give at least one label")
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------- masked tables


def write_masked_table(
    path: Path, table: np.ndarray, client_id: int, participants: list[int], params: iblt.IbltParams
) -> None:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        format=np.array(MASKED_FORMAT),
        table=table,
        client_id=np.array(client_id, dtype=np.int64),
        participants=np.array(participants, dtype=np.int64),
        params_fingerprint=np.array(params.fingerprint),
        modulus_bits=np.array(iblt.MODULUS_BITS, dtype=np.int64),
    )
    atomic_write_bytes(path, buffer.getvalue())


def load_masked_table(path: Path, params: iblt.IbltParams) -> tuple[int, list[int], np.ndarray]:
    """(client id, participants, table) from a masked table file, after checking it fits ``params``."""
    needed = ("format", "table", "client_id", "participants", "params_fingerprint", "modulus_bits")
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"masked table {path} does not exist; check the path") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"masked table {path} is not a readable .npz file ({exc}); have the client re-encode") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise UserError(f"{path} is not a masked label table (.npz); create it with `gptfl labels encode`")
    with data:
        if any(name not in data.files for name in needed):
            raise UserError(f"{path} is not a masked label table; create it with `gptfl labels encode`")
        try:
            if str(data["format"]) != MASKED_FORMAT:
                raise UserError(f"{path} is not a masked label table ({MASKED_FORMAT}); create it with `gptfl labels encode`")
            table = data["table"]
            client_id = int(data["client_id"])
            participants = [int(x) for x in np.atleast_1d(data["participants"])]
            fingerprint = str(data["params_fingerprint"])
            modulus_bits = int(data["modulus_bits"])
        except (OSError, ValueError, TypeError, zipfile.BadZipFile) as exc:
            raise UserError(f"masked table {path} is damaged ({exc}); have the client re-encode") from None
    if modulus_bits != iblt.MODULUS_BITS:
        raise UserError(f"{path} was masked modulo 2^{modulus_bits}, expected 2^{iblt.MODULUS_BITS}; re-encode with this version")
    if fingerprint != params.fingerprint:
        raise UserError(f"{path} was encoded with other params (fingerprint {fingerprint[:12]}); re-encode with {params.fingerprint[:12]}")
    iblt.check_table(table, params, source=str(path))
    if participants != sorted(set(participants)) or client_id not in participants:
        raise UserError(f"{path} has an inconsistent participant list; have client {client_id} re-encode")
    return client_id, participants, table


# --------------------------------------------------------------------------- seed reveals


def write_reveal(path: Path, client_id: int, participants: list[int], seeds: Mapping[int, bytes]) -> None:
    document = {
        "format": REVEAL_FORMAT,
        "client_id": client_id,
        "participants": participants,
        "seeds": {str(peer): seed.hex() for peer, seed in seeds.items()},
    }
    atomic_write_json(path, document)


def load_reveal(path: Path, participants: list[int]) -> tuple[int, dict[int, bytes]]:
    """(revealing client, {dropped client: seed}) from a reveal file made with the same key set."""
    data = _read_json(path, "reveal file")
    if not isinstance(data, dict) or data.get("format") != REVEAL_FORMAT:
        raise UserError(f"{path} is not a seed reveal; create it with `gptfl labels reveal`")
    try:
        seeds = {int(peer): bytes.fromhex(seed) for peer, seed in data["seeds"].items()}
        client_id = int(data["client_id"])
        revealed_with = sorted(int(x) for x in data["participants"])
    except (KeyError, AttributeError, TypeError, ValueError):
        raise UserError(f"{path} is damaged (client_id, participants or seeds unreadable); rerun `gptfl labels reveal`") from None
    if any(len(seed) != 32 for seed in seeds.values()):
        raise UserError(f"{path} holds a seed that is not 32 bytes; rerun `gptfl labels reveal`")
    if revealed_with != participants:
        raise UserError(f"{path} was made with another public key set than the masked tables; rerun `gptfl labels reveal` with this round's keys")
    return client_id, seeds


# --------------------------------------------------------------------------- the label union


def label_union_document(counts: Mapping[str, int], clients: int, with_counts: bool) -> dict:
    """The labels.json content: labels sorted by Unicode code point, optional counts, client count."""
    labels = sorted(counts)
    document: dict = {"labels": labels, "clients": int(clients)}
    if with_counts:
        document["counts"] = {label: int(counts[label]) for label in labels}
    return document


def load_label_union(path: Union[str, Path]) -> list[str]:
    """The sorted label names from a labels.json written by ``gptfl labels aggregate``."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"label union file {path} does not exist; run `gptfl labels aggregate` first") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"label union file {path} is not readable JSON ({exc}); rerun `gptfl labels aggregate`") from None
    labels = document.get("labels") if isinstance(document, dict) else None
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise UserError(f"label union file {path} has no non-empty 'labels' list of strings; rerun `gptfl labels aggregate`")
    if len(set(labels)) != len(labels):
        raise UserError(f"label union file {path} repeats a label; rerun `gptfl labels aggregate`")
    return sorted(labels)


def write_label_union(path: Path, counts: Mapping[str, int], clients: int, with_counts: bool) -> None:
    atomic_write_json(path, label_union_document(counts, clients, with_counts))

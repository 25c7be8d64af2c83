"""``gptfl labels``: a whole round through the CLI, dropout recovery, and one-line refusals."""

from __future__ import annotations

import argparse
import io
import json
import stat
from pathlib import Path

import numpy as np
import pytest

from gptfl_hpc.commands.labels import register
from gptfl_hpc.errors import UserError
from gptfl_hpc.labels.files import load_label_union

CLIENT_LABELS = {
    1: ["cat", "dog", "猫"],
    2: ["dog", "🐕‍🦺 service dog", "cafe\u0301"],
    3: ["cat", "x" * 256],
    4: ["ant", "dog", "only-four"],
}


def run(*argv: object) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture
def round_dir(tmp_path: Path) -> Path:
    """params.json and a key pair per client under keys/ (the .pub files are the shared set)."""
    assert run("labels", "params", "--expected-labels", 20, "--seed", "cli-test", "--out", tmp_path / "params.json") == 0
    for client in CLIENT_LABELS:
        assert run("labels", "keygen", "--client-id", client, "--out", tmp_path / "keys") == 0
    return tmp_path


def encode(round_dir: Path, client: int, *label_args: object) -> Path:
    out = round_dir / f"masked_{client}.npz"
    if not label_args:
        label_args = ("--labels", ",".join(CLIENT_LABELS[client]))
    rc = run(
        "labels", "encode", "--client-id", client, *label_args,
        "--private-key", round_dir / "keys" / f"{client}.key",
        "--public-keys", round_dir / "keys",
        "--params", round_dir / "params.json",
        "--out", out,
    )  # fmt: skip
    assert rc == 0
    return out


def aggregate(round_dir: Path, masked: list[Path], reveals: list[Path] = (), counts: bool = True) -> int:
    argv = ["labels", "aggregate", *masked, "--params", round_dir / "params.json", "--out", round_dir / "labels.json"]
    if reveals:
        argv += ["--reveals", *reveals]
    if counts:
        argv.append("--counts")
    return run(*argv)


def test_keygen_writes_a_private_key_only_its_owner_can_read(round_dir):
    private = round_dir / "keys" / "1.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert json.loads((round_dir / "keys" / "1.pub").read_text())["client_id"] == 1
    with pytest.raises(UserError, match="already exists"):
        run("labels", "keygen", "--client-id", 1, "--out", round_dir / "keys")


def test_a_full_round_gives_the_union_with_client_counts(round_dir):
    labels_file = round_dir / "mine.txt"
    labels_file.write_text("\n".join(CLIENT_LABELS[2]) + "\n\n", encoding="utf-8")
    masked = [encode(round_dir, 1), encode(round_dir, 2, "--labels-file", labels_file), encode(round_dir, 3), encode(round_dir, 4)]
    assert aggregate(round_dir, masked) == 0
    document = json.loads((round_dir / "labels.json").read_text(encoding="utf-8"))
    union = sorted({label for labels in CLIENT_LABELS.values() for label in labels})
    assert document["labels"] == union
    assert document["clients"] == 4
    assert document["counts"]["dog"] == 3 and document["counts"]["cat"] == 2 and document["counts"]["only-four"] == 1
    assert load_label_union(round_dir / "labels.json") == union


def test_a_dropped_client_is_recovered_from_the_survivors_reveals(round_dir):
    survivors = [1, 2, 3]
    masked = [encode(round_dir, client) for client in survivors]
    encode(round_dir, 4)  # client 4 masked with everyone, then never delivered its table
    with pytest.raises(UserError, match="has not revealed"):
        aggregate(round_dir, masked)
    assert not (round_dir / "labels.json").exists()
    reveals = []
    for client in survivors:
        out = round_dir / f"reveal_{client}.json"
        rc = run(
            "labels", "reveal", "--client-id", client,
            "--private-key", round_dir / "keys" / f"{client}.key",
            "--public-keys", round_dir / "keys", "--dropped", "4", "--out", out,
        )  # fmt: skip
        assert rc == 0
        reveals.append(out)
    assert aggregate(round_dir, masked, reveals) == 0
    document = json.loads((round_dir / "labels.json").read_text(encoding="utf-8"))
    assert document["labels"] == sorted({label for c in survivors for label in CLIENT_LABELS[c]})
    assert "only-four" not in document["labels"]
    assert document["clients"] == 3 and document["counts"]["dog"] == 2


def test_a_reveal_that_would_expose_the_last_survivor_is_refused(round_dir):
    with pytest.raises(UserError, match="only survivor"):
        run(
            "labels", "reveal", "--client-id", 1, "--private-key", round_dir / "keys" / "1.key",
            "--public-keys", round_dir / "keys", "--dropped", "2,3,4", "--out", round_dir / "r.json",
        )  # fmt: skip
    assert not (round_dir / "r.json").exists()


def assert_one_line_refusal(excinfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_empty_label_set_is_refused_and_nothing_written(round_dir):
    with pytest.raises(UserError) as excinfo:
        encode(round_dir, 1, "--labels", " , ,")
    assert_one_line_refusal(excinfo, "no label names")
    assert not (round_dir / "masked_1.npz").exists()


def test_too_long_label_is_refused_and_nothing_written(round_dir):
    with pytest.raises(UserError) as excinfo:
        encode(round_dir, 1, "--labels", "ok," + "é" * 129)
    assert_one_line_refusal(excinfo, "max_label_bytes 256")
    assert not (round_dir / "masked_1.npz").exists()


def test_duplicate_client_tables_are_refused(round_dir):
    first = encode(round_dir, 1)
    copy = round_dir / "masked_1_again.npz"
    copy.write_bytes(first.read_bytes())
    with pytest.raises(UserError) as excinfo:
        aggregate(round_dir, [first, encode(round_dir, 2), copy])
    assert_one_line_refusal(excinfo, "both come from client 1")
    assert not (round_dir / "labels.json").exists()


def rewrite_npz(path: Path, **changes) -> None:
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays.update(changes)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda t: {"table": t[:-1]}, "shape"),
        (lambda t: {"table": t.astype(np.uint32)}, "uint64"),
        (lambda t: {"modulus_bits": np.array(32)}, "2^32"),
        (lambda t: {"params_fingerprint": np.array("0" * 64)}, "other params"),
    ],
)
def test_a_table_of_the_wrong_shape_modulus_or_params_is_refused(round_dir, change, fragment):
    masked = [encode(round_dir, client) for client in CLIENT_LABELS]
    with np.load(masked[0]) as data:
        table = data["table"]
    rewrite_npz(masked[0], **change(table))
    with pytest.raises(UserError) as excinfo:
        aggregate(round_dir, masked)
    assert_one_line_refusal(excinfo, fragment, str(masked[0]))
    assert not (round_dir / "labels.json").exists()


def test_params_from_another_round_are_refused(round_dir):
    masked = [encode(round_dir, client) for client in CLIENT_LABELS]
    run("labels", "params", "--expected-labels", 20, "--seed", "other-round", "--out", round_dir / "params.json")
    with pytest.raises(UserError, match="other params"):
        aggregate(round_dir, masked)


def test_through_the_gptfl_entry_point(round_dir, capsys):
    from gptfl_hpc import cli

    out = round_dir / "params2.json"
    assert cli.main(["labels", "params", "--expected-labels", "50", "--failure-prob", "0.001", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["expected_labels"] == 50
    capsys.readouterr()
    rc = cli.main(["labels", "aggregate", str(round_dir / "missing.npz"), "--params", str(out), "--out", str(round_dir / "l.json")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("gptfl: error: ") and err.count("\n") == 1 and "does not exist" in err

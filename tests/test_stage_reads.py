"""Which config keys each stage reads is declared once (``stage_reads``): the pretrained model's
identity, the keys synthesis leaves out of its shards' identity and the sweep's sharing levels all
follow from it, and each leaves out exactly the keys its stage never reads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gptfl_hpc import sweep
from gptfl_hpc.config import STAGE_FAMILY as CONFIG_STAGE_FAMILY
from gptfl_hpc.config import STAGE_NAMES as CONFIG_STAGE_NAMES
from gptfl_hpc.config import Config, load_config
from gptfl_hpc.config.validation_errors import schema_type
from gptfl_hpc.identity import sha256_json
from gptfl_hpc.pretrain.config import UNREAD_BY_PRETRAIN, pretrain_identity
from gptfl_hpc.prompts.stage import prompts_identity
from gptfl_hpc.stage_reads import (
    EXECUTION_KEYS,
    FIRST_READ_BY,
    STAGE_FAMILY,
    STAGE_NAMES,
    WHERE_IT_RUNS,
    first_reader,
    unread_by,
    without_keys,
)
from gptfl_hpc.synth import stage as synth_stage

QUICKSTART = Path(__file__).resolve().parent / "configs" / "tiny-quickstart.yaml"
#: Changes of keys that only the federations read.
FEDERATE_ONLY_CHANGES = ("federate.rounds=3", "federate.clients_per_round=2", "data.partition.alpha=0.1",
                         "data.partition.seed=4", "federate.client_eval.every=2")
#: Changes of keys that pretraining reads (first, or after prompts and synthesis).
PRETRAIN_CHANGES = ("model.width=8", "pretrain.lr=0.01", "pretrain.epochs=1", "data.image_size=16", "seed=1",
                    "synth.count=40")


def test_the_identity_digest_is_sha256_of_canonical_json():
    value = {"b": [1, 2.5, None], "a": {"z": True, "y": "é"}}
    canonical = b'{"a":{"y":"\\u00e9","z":true},"b":[1,2.5,null]}'
    assert sha256_json(value) == hashlib.sha256(canonical).hexdigest()
    assert sha256_json(dict(reversed(value.items()))) == sha256_json(value)


def test_the_declaration_covers_every_section_and_names_real_keys_and_stages():
    declared = [key for keys in FIRST_READ_BY.values() for key in keys]
    assert len(declared) == len(set(declared))  # each key has one first reader
    assert {key for key in declared if "." not in key} == set(Config.model_fields) - set(WHERE_IT_RUNS)
    for key in declared + [key for keys in EXECUTION_KEYS.values() for key in keys]:
        assert schema_type(Config, key.split(".")) is not None, key
    assert set(WHERE_IT_RUNS) <= set(Config.model_fields)
    assert set(FIRST_READ_BY) | set(EXECUTION_KEYS) | set(STAGE_FAMILY) | set(STAGE_FAMILY.values()) <= set(STAGE_NAMES)
    assert list(FIRST_READ_BY) == sorted(FIRST_READ_BY, key=STAGE_NAMES.index)  # in the order the stages run
    assert (CONFIG_STAGE_NAMES, CONFIG_STAGE_FAMILY) == (STAGE_NAMES, STAGE_FAMILY)


def test_the_key_lists_are_derived_from_the_declaration():
    assert UNREAD_BY_PRETRAIN == FIRST_READ_BY["federate"] == ("federate", "data.partition")
    assert set(unread_by("synth")) == {"model", "pretrain", "federate", "data.partition"}
    assert unread_by("federate-scratch") == unread_by("federate") == unread_by("report") == ()
    assert synth_stage.EXECUTION_KEYS == ("tasks", "flush_every")
    assert sweep.LEVELS == ("synth", "pretrain", "federate", "launcher")
    levels = {key: sweep.key_level(key) for key in (
        "seed", "labels.names", "prompts.per_class", "synth.model.kind", "synth.count", "synth.tasks", "data",
        "data.dataset", "base", "model", "model.name", "pretrain.lr", "data.partition", "data.partition.alpha",
        "federate", "federate.client.lr", "launcher.slurm.time",
    )}
    assert levels == {
        "seed": "synth", "labels.names": "synth", "prompts.per_class": "synth", "synth.model.kind": "synth",
        "synth.count": "synth", "synth.tasks": "synth", "data": "synth", "data.dataset": "synth", "base": "synth",
        "model": "pretrain", "model.name": "pretrain", "pretrain.lr": "pretrain", "data.partition": "federate",
        "data.partition.alpha": "federate", "federate": "federate", "federate.client.lr": "federate",
        "launcher.slurm.time": "launcher",
    }
    # A section holding a key an earlier stage reads is first read by that stage.
    assert (first_reader("synth"), first_reader("synth.model.steps"), first_reader("synth.count")) == \
        ("prompts", "prompts", "synth")
    with pytest.raises(ValueError, match="synth.model"):  # leaving out synth would leave out what prompts read
        unread_by("prompts")


def test_without_keys_copies_and_leaves_the_rest():
    values = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    assert without_keys(values, ("a.c", "e", "x.y")) == {"a": {"b": 1}}
    assert values == {"a": {"b": 1, "c": {"d": 2}}, "e": 3}


def test_the_pretrain_identity_leaves_out_exactly_what_the_federations_alone_read():
    base = load_config(QUICKSTART)
    for change in FEDERATE_ONLY_CHANGES:
        changed = load_config(QUICKSTART, [change])
        assert changed.hash != base.hash, change
        assert pretrain_identity(changed.science()) == pretrain_identity(base.science()), change
    for change in PRETRAIN_CHANGES:
        changed = load_config(QUICKSTART, [change])
        assert pretrain_identity(changed.science()) != pretrain_identity(base.science()), change
    science = base.science()
    assert pretrain_identity(science) == sha256_json({k: v for k, v in science.items() if k != "federate"}
                                                     | {"data": {k: v for k, v in science["data"].items()
                                                                 if k != "partition"}})


def test_synthesis_and_prompts_identities_leave_out_what_they_never_read():
    base = load_config(QUICKSTART)
    labels = base.labels.load()
    for change in ("synth.tasks=3", "synth.flush_every=32"):
        changed = load_config(QUICKSTART, [change])
        assert changed.hash != base.hash and synth_stage.synth_identity(changed) == synth_stage.synth_identity(base)
    assert synth_stage.synth_identity(load_config(QUICKSTART, ["synth.count=40"])) != synth_stage.synth_identity(base)
    prompts = prompts_identity(base, labels, "image")
    for change in FEDERATE_ONLY_CHANGES + ("model.width=8", "pretrain.lr=0.01", "synth.count=40", "synth.tasks=3"):
        assert prompts_identity(load_config(QUICKSTART, [change]), labels, "image") == prompts, change
    assert prompts_identity(load_config(QUICKSTART, ["seed=1"]), labels, "image") != prompts


def test_a_sweep_axis_on_keys_only_the_federations_read_shares_synthesis_and_pretraining(tmp_path):
    grid = sweep.load_sweep(QUICKSTART, extra_axes=[("data.partition.alpha", [0.1, 0.5]), ("federate.rounds", [3, 5])],
                            sweep_dir=tmp_path / "sweep")
    assert [axis.level for axis in grid.axes] == ["federate", "federate"]
    assert len(grid.points) == 4
    assert len(grid.shared_runs("synth")) == 1 and len(grid.shared_runs("pretrain")) == 1
    assert len({point.config.hash for point in grid.points}) == 4
    assert len({pretrain_identity(point.config.science()) for point in grid.points}) == 1
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_axis_on_keys_pretraining_reads_first_shares_synthesis_only(tmp_path):
    grid = sweep.load_sweep(QUICKSTART, extra_axes=[("model.width", [8, 16]), ("pretrain.lr", [0.01, 0.001])],
                            sweep_dir=tmp_path / "sweep")
    assert [axis.level for axis in grid.axes] == ["pretrain", "pretrain"]
    assert len(grid.shared_runs("synth")) == 1 and len(grid.shared_runs("pretrain")) == 4
    seeded = sweep.load_sweep(QUICKSTART, extra_axes=[("seed", [0, 1])], sweep_dir=tmp_path / "seeded")
    assert len(seeded.shared_runs("synth")) == 2 and len(seeded.shared_runs("pretrain")) == 2


def test_the_quickstart_identities_are_pinned():
    """Runs, shards and pretrained models made before keep resuming and being shared: the digests
    of the quickstart pipeline (the tests' tiny-generator copy, hashed as it always was) never move."""
    config = load_config(QUICKSTART)
    assert config.hash == "7522c77f33533a5ad8fef71d25a65d13bdbd87f980efce5d80423572f25c1765"
    assert prompts_identity(config, config.labels.load(), "image") == \
        "aa0627fffd78cca237d292e61447b5daa90a4efda3c4167acfd88309051c6de6"
    assert synth_stage.synth_identity(config) == "2f096b0e89f9030264f3e01e23cb01807a9aad43a7b81f81ee1dfa08dabff155"
    assert pretrain_identity(config.science()) == "5e8471bbe95af35957ab9bde3f3fcbccd2ed68fcee65952245323a1318a3c955"
    assert [sweep.shared_config(config, level, Path("/shared")).run_dir.name for level in ("synth", "pretrain")] == \
        ["synth-ef8d9520d181", "pretrain-a72882da760f"]

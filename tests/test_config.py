"""Config loading: every kind of error is one line naming the key and the fix; nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gptfl_hpc.config import load_config, slurm_time_to_minutes
from gptfl_hpc.errors import UserError

REPO = Path(__file__).resolve().parents[1]
GPTFL = [sys.executable, "-m", "gptfl_hpc"]


def error_of(path: Path, *overrides: str) -> str:
    with pytest.raises(UserError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_quickstart_loads_with_defaults(quickstart_config):
    config = load_config(quickstart_config)
    assert config.labels.names[0] == "digit zero"
    assert config.launcher.executor == "local"
    assert config.launcher.slurm.time_min == 60
    assert config.run_dir.is_absolute()


@pytest.mark.parametrize(
    "override, expected",
    [
        ("seeed=1", "unknown key 'seeed'; did you mean 'seed'?"),
        ("launcher.slurm.partiton=gpu", "did you mean 'launcher.slurm.partition'?"),
        ("launcher.zzz=1", "valid keys here: executor, poll_interval_s, preempt_grace_s, slurm"),
        ("seed=abc", "key 'seed': input should be a valid integer"),
        ("seed=-1", "key 'seed': input should be greater than or equal to 0"),
        ("launcher.executor=auto", "key 'launcher.executor': input should be 'inline', 'local', 'slurm' or 'debug'"),
        ("launcher.slurm.time=1:2:3:4", "is not a Slurm time"),
        ("launcher.slurm.mem=lots", "is not a Slurm memory size"),
        ("labels.source=file", "labels.source 'file' needs labels.path"),
        ("labels.names=[a, b, a]", "labels.names repeats ['a']"),
        ("seed", "is not key=value"),
        ("seed.deeper=1", "'seed' is a value, not a section"),
    ],
)
def test_override_errors_are_one_line(quickstart_config, override, expected):
    assert expected in error_of(quickstart_config, override)


def test_missing_path_is_named(quickstart_config, tmp_path):
    message = error_of(quickstart_config, "labels.source=file", f"labels.path={tmp_path}/nope.txt")
    assert f"{tmp_path}/nope.txt does not exist" in message


def test_missing_required_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 1\n")
    assert error_of(path) == "config: missing key 'labels'; add it to the config"


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: [1\nlabels: x\n")
    assert "is not valid YAML at line" in error_of(path)
    assert "not found" in error_of(tmp_path / "absent.yaml")
    path.write_text("- a list\n")
    assert "must hold a mapping" in error_of(path)


def test_override_values_are_typed(quickstart_config):
    config = load_config(
        quickstart_config, ["seed=7", "launcher.slurm.setup=[module load cuda, echo hi]", "launcher.slurm.time=2-00:00:00"]
    )
    assert config.seed == 7
    assert config.launcher.slurm.setup == ["module load cuda", "echo hi"]
    assert config.launcher.slurm.time_min == 2 * 1440


@pytest.mark.parametrize("text, minutes", [(90, 90), ("90", 90), ("1:30:00", 90), ("2-01:00:00", 2940), ("10:30", 11)])
def test_slurm_time(text, minutes):
    assert slurm_time_to_minutes(text) == minutes


def test_hash_ignores_launcher_and_run_dir(quickstart_config):
    base = load_config(quickstart_config)
    assert load_config(quickstart_config, ["launcher.executor=slurm", "run_dir=/elsewhere"]).hash == base.hash
    assert load_config(quickstart_config, ["seed=1"]).hash != base.hash


def test_a_field_added_later_leaves_the_identity_alone_at_its_default(quickstart_config):
    """federate.vectorize came after runs existed: unset, the hash is the one those runs recorded."""
    base = load_config(quickstart_config)
    assert "vectorize" not in base.science()["federate"]
    assert base.resolved()["federate"]["vectorize"] is None  # still shown in config.yaml
    vectorized = load_config(quickstart_config, ["federate.vectorize=4"])
    assert vectorized.science()["federate"]["vectorize"] == 4
    assert vectorized.hash != base.hash


def test_cli_validate_exit_codes(quickstart_config, tmp_path):
    ok = subprocess.run([*GPTFL, "validate", str(quickstart_config)], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "digit nine" in ok.stdout and "config hash" in ok.stdout
    bad = subprocess.run([*GPTFL, "validate", str(quickstart_config), "seeed=1"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == ["gptfl: error: config: unknown key 'seeed'; did you mean 'seed'?"]
    assert bad.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_unquoted_clock_times_stay_strings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("labels: {names: [a]}\nlauncher: {slurm: {time: 1:30:00}}\nseed: 3\n")
    config = load_config(path, ["launcher.poll_interval_s=0.5", "launcher.preempt_grace_s=1e2"])
    assert config.launcher.slurm.time_min == 90 and config.seed == 3
    assert config.launcher.poll_interval_s == 0.5 and config.launcher.preempt_grace_s == 100.0


def test_labels_from_file_and_iblt_union(quickstart_config, tmp_path):
    (tmp_path / "labels.txt").write_text("cat\n\ndog\n")
    config = load_config(quickstart_config, ["labels.source=file", f"labels.path={tmp_path}/labels.txt"])
    assert config.labels.load() == ["cat", "dog"]
    (tmp_path / "labels.txt").write_text("cat\ncat\n")
    with pytest.raises(UserError, match=r"repeats \['cat'\]"):
        config.labels.load()
    (tmp_path / "union.json").write_text('{"labels": ["zebra", "ant"], "clients": 3}')
    union = load_config(quickstart_config, ["labels.source=iblt", f"labels.path={tmp_path}/union.json"])
    assert union.labels.load() == ["ant", "zebra"]


def test_stage_slurm_settings_override_the_shared_ones(quickstart_config):
    config = load_config(quickstart_config, [
        "launcher.slurm.gpus_per_node=4", "launcher.slurm.partition=gpu",
        "launcher.stages={synth: {gpus_per_node: 1, array_parallelism: 64}, pretrain: {nodes: 2}}",
    ])
    synth, pretrain, federate = (config.launcher.for_stage(s).slurm for s in ("synth", "pretrain", "federate"))
    assert (synth.gpus_per_node, synth.array_parallelism, synth.partition) == (1, 64, "gpu")
    assert (pretrain.nodes, pretrain.gpus_per_node) == (2, 4)
    assert federate == config.launcher.slurm
    assert config.hash == load_config(quickstart_config).hash  # where jobs run is not the run's identity


@pytest.mark.parametrize(
    "stages, expected",
    [
        ("{synt: {nodes: 2}}", "launcher.stages.synt is not a stage; did you mean 'synth'?"),
        ("{synth: {gpus_per_nod: 1}}", "launcher.stages.synth.gpus_per_nod: is not a Slurm setting; did you mean 'gpus_per_node'?"),
        ("{pretrain: {mem: lots}}", "launcher.stages.pretrain.mem: 'lots' is not a Slurm memory size"),
    ],
)
def test_stage_slurm_settings_are_checked_at_load(quickstart_config, stages, expected):
    with pytest.raises(UserError, match=expected.replace(".", r"\.").replace("?", r"\?").replace("'", "'")):
        load_config(quickstart_config, [f"launcher.stages={stages}"])


def test_operational_settings_are_not_the_run_identity(quickstart_config):
    base = load_config(quickstart_config).hash
    same = ["pretrain.checkpoint_every=7", "pretrain.workers=2", "pretrain.keep_checkpoints=5",
            "federate.checkpoint_every=3"]
    assert load_config(quickstart_config, same).hash == base
    assert load_config(quickstart_config, ["pretrain.lr=0.5"]).hash != base
    assert load_config(quickstart_config, ["federate.rounds=11"]).hash != base


def test_batch_size_leaves_the_identity_only_with_batch_invariant(quickstart_config):
    """compile and batch_invariant are in the identity only when on; batch_invariant takes
    batch_size out of it (of the run and of the shards' config_hash), since a sample is then made
    alone whatever the batch size."""
    from gptfl_hpc.synth.stage import synth_identity

    base = load_config(quickstart_config)
    assert {"compile", "batch_invariant"}.isdisjoint(base.science()["synth"]["model"])
    assert load_config(quickstart_config, ["synth.model.compile=false", "synth.model.batch_invariant=false"]).hash \
        == base.hash
    assert load_config(quickstart_config, ["synth.model.compile=true"]).hash != base.hash
    assert load_config(quickstart_config, ["synth.model.batch_size=3"]).hash != base.hash

    invariant = [load_config(quickstart_config, ["synth.model.batch_invariant=true", f"synth.model.batch_size={size}"])
                 for size in (1, 3, 64)]
    assert invariant[0].hash != base.hash
    assert len({config.hash for config in invariant}) == 1
    assert len({synth_identity(config) for config in invariant}) == 1
    assert "batch_size" not in invariant[0].science()["synth"]["model"]
    assert invariant[0].resolved()["synth"]["model"]["batch_size"] == 1  # still shown in config.yaml
    from gptfl_hpc.synth.description import explain, plan

    assert "each made alone (batch_invariant)" in explain(invariant[2], plan(invariant[2]))[1]
    assert explain(base, plan(base))[1].endswith(f"batch {base.synth.model.batch_size}")


def test_a_config_pickled_before_fields_were_added_loads_with_their_defaults(monkeypatch):
    """A job queued by an older version of the package unpickles its config in the new one: the
    fields added since take their defaults (as reading the file again would), and the identity holds."""
    import pickle

    from gptfl_hpc.synth.generators.config import GeneratorConfig

    config = load_config(REPO / "configs" / "quickstart.yaml")
    newer = ("batch_invariant", "compile")

    def older_state(self):
        state = super(GeneratorConfig, self).__getstate__()
        return {**state, "__dict__": {k: v for k, v in state["__dict__"].items() if k not in newer}}

    monkeypatch.setattr(GeneratorConfig, "__getstate__", older_state)
    queued = pickle.dumps(config)
    monkeypatch.undo()
    assert b"batch_invariant" not in queued
    loaded = pickle.loads(queued)
    assert loaded.synth.model.batch_invariant is False and loaded.synth.model.compile is False
    assert loaded == config and loaded.hash == config.hash

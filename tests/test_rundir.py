"""A run_dir belongs to one config: identical config resumes, a different one is refused."""

from __future__ import annotations

import pytest
import yaml

from gptfl_hpc.config import load_config
from gptfl_hpc.errors import UserError
from gptfl_hpc.rundir import CONFIG_FILE, HASH_FILE, check_run_dir, prepare_run_dir


def test_first_stage_records_config_and_hash(quickstart_config, tmp_path):
    config = load_config(quickstart_config, [f"run_dir={tmp_path}/run"])
    run_dir = prepare_run_dir(config)
    assert (run_dir / HASH_FILE).read_text().strip() == config.hash
    saved = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    assert saved["labels"]["names"] == config.labels.names
    assert prepare_run_dir(config) == run_dir  # identical config: resume


def test_other_config_refused_naming_changed_keys(quickstart_config, tmp_path):
    prepare_run_dir(load_config(quickstart_config, [f"run_dir={tmp_path}"]))
    changed = load_config(quickstart_config, [f"run_dir={tmp_path}", "seed=5"])
    with pytest.raises(UserError, match=r"made by a different config \(changed: seed\)"):
        check_run_dir(changed)
    before = (tmp_path / HASH_FILE).read_text()
    with pytest.raises(UserError):
        prepare_run_dir(changed)
    assert (tmp_path / HASH_FILE).read_text() == before


def test_executor_change_still_resumes(quickstart_config, tmp_path):
    prepare_run_dir(load_config(quickstart_config, [f"run_dir={tmp_path}"]))
    check_run_dir(load_config(quickstart_config, [f"run_dir={tmp_path}", "launcher.executor=slurm"]))

"""The synthesis plan: every sample's fields from (run seed, index) alone."""

from __future__ import annotations

import numpy as np
import pytest

from gptfl_hpc.config import load_config
from gptfl_hpc.errors import UserError
from gptfl_hpc.synth.plan import make_plan, sample_hash

PROMPTS = [[f"class {c} prompt {k}" for k in range(4)] for c in range(10)]


def plan(**overrides):
    values = dict(run_seed=7, num_labels=10, total=1000, samples_per_shard=64, tasks=3, guidance=(1.0, 5.0))
    values.update(overrides)
    return make_plan(**values)


def test_a_sample_does_not_depend_on_how_the_range_is_cut():
    p = plan(num_speakers=5)
    whole = p.specs(0, 300, PROMPTS)
    pieces = p.specs(0, 17, PROMPTS) + p.specs(17, 200, PROMPTS) + p.specs(200, 300, PROMPTS)
    assert whole == pieces
    assert p.specs(123, 124, PROMPTS)[0] == whole[123]


def test_classes_are_balanced_and_fields_in_range():
    p = plan(num_speakers=5)
    specs = p.specs(0, p.total, PROMPTS)
    labels = np.array([s.label for s in specs])
    assert p.total == 1000 and np.bincount(labels).tolist() == [100] * 10
    guidance = np.array([s.guidance for s in specs])
    assert guidance.min() >= 1.0 and guidance.max() <= 5.0
    assert abs(guidance.mean() - 3.0) < 0.15  # U[1, 5] has mean 3 and sd 1.15; n = 1000
    assert {s.speaker for s in specs} == set(range(5))
    assert all(s.prompt in PROMPTS[s.label] for s in specs)
    assert len({s.seed for s in specs}) == len(specs)
    assert all(0 <= s.seed < 2**63 for s in specs)


def test_run_seed_changes_samples_and_fixed_guidance_is_fixed():
    a, b = plan().specs(0, 50, PROMPTS), plan(run_seed=8).specs(0, 50, PROMPTS)
    assert [s.seed for s in a] != [s.seed for s in b]
    assert {s.guidance for s in plan(guidance=(3.5, 3.5)).specs(0, 50, PROMPTS)} == {3.5}
    assert {s.speaker for s in a} == {-1}


def test_hash_is_stable_across_releases():
    # The plan is part of the data contract: a change here changes every dataset ever made.
    assert sample_hash(0, np.arange(3), 2).tolist() == [4689417271487893854, 16504729922532956341, 6897020350007722980]
    assert sample_hash(12345, np.array([10**9]), 1).tolist() == [9328489647100651980]


def test_shards_and_tasks_cover_every_sample_once():
    p = plan(total=1003, samples_per_shard=100, tasks=4)
    assert p.total == 1000 and p.num_shards == 10 and p.num_tasks == 4 and p.shards_per_task == 3
    covered = [i for t in range(p.num_tasks) for s in p.task_shards(t) for i in range(*p.shard_range(s))]
    assert covered == list(range(p.total))
    assert plan(total=100, samples_per_shard=50, tasks=9).num_tasks == 2  # never more tasks than shards
    with pytest.raises(UserError, match="outside the plan"):
        p.task_shards(4)


def test_bad_counts_are_one_clear_line(tmp_path):
    with pytest.raises(UserError, match="raise synth.multiplier"):
        plan(total=0)
    config = "labels:\n  names: [a, b]\n"
    path = tmp_path / "c.yaml"
    path.write_text(config)
    with pytest.raises(UserError, match=r"synth.guidance \[5.0, 1.0\] is inverted"):
        load_config(path, ["synth.guidance=[5, 1]"])
    with pytest.raises(UserError, match="synth.count 0 must be at least 1"):
        load_config(path, ["synth.count=0"])
    with pytest.raises(UserError, match="samples_per_shard"):
        load_config(path, ["synth.samples_per_shard=0"])

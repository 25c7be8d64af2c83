"""What a tracked run logs about itself: the resolved config as flat params, its hash, the
gptfl-hpc version and the generator's weights fingerprint."""

from __future__ import annotations

import json
from typing import Any

import gptfl_hpc
from gptfl_hpc.config import Config
from gptfl_hpc.stage_reads import WHERE_IT_RUNS

#: Scalars the hparams views compare runs by, where a stage logs them.
COMPARED_METRICS = ("test_accuracy", "test_macro_f1", "eval/accuracy", "eval/macro_f1")


def run_params(config: Config) -> dict[str, str]:
    """``section.key`` -> value as text, for the run's identity config plus what identifies the run."""
    values = config.as_run_identity().resolved()
    values = {key: value for key, value in values.items() if key not in WHERE_IT_RUNS}
    params = {key: _text(value) for key, value in _flatten(values).items()}
    params["config_hash"] = config.hash
    params["gptfl_hpc_version"] = gptfl_hpc.__version__
    revision = weights_revision(config)
    if revision:
        params["weights_revision"] = revision
    params.update({f"axis.{name}": _text(value) for name, value in config.tracking.axes.items()})
    return params


def weights_revision(config: Config) -> str:
    """The generator's weights fingerprint the synthesis stage recorded, or '' before it ran."""
    try:
        return str(json.loads((config.layout.synth / "plan.json").read_text()).get("weights_revision", ""))
    except (OSError, ValueError):
        return ""


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)

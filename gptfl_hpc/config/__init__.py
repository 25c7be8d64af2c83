"""Typed run configuration: YAML file + ``key.sub=value`` overrides -> one validated ``Config``.

Every stage reads the same ``Config``. Validation happens once, at load, and any problem becomes
one ``UserError`` line naming the key and the fix, before anything is written. The package holds
one concern per module: the root ``Config`` and its identity (``run_config``), the ``launcher``,
``tracking`` and ``labels`` sections, Slurm time parsing, the YAML format, the override grammar, validation
errors as one line, loading, and placeholders; the other sections live beside their stages on the
shared ``schema.Section`` base, and the stage names and what each stage reads in ``stage_reads``.
"""

from gptfl_hpc.config.labels import LabelsConfig
from gptfl_hpc.config.launcher import LauncherConfig, SlurmConfig
from gptfl_hpc.config.loading import load_config, validate_config
from gptfl_hpc.config.overrides import NotASection, apply_override, set_key
from gptfl_hpc.config.placeholders import PLACEHOLDER_PREFIX, placeholder_paths
from gptfl_hpc.config.run_config import Config
from gptfl_hpc.config.tracking import TrackingConfig
from gptfl_hpc.config.slurm_time import slurm_time_to_minutes
from gptfl_hpc.config.validation_errors import closest_name, coerced_boolean, describe_error
from gptfl_hpc.config.yaml_format import DuplicateKeyError, dump_yaml, parse_yaml, read_yaml_mapping
from gptfl_hpc.stage_reads import STAGE_FAMILY, STAGE_NAMES

__all__ = [
    "Config", "DuplicateKeyError", "LabelsConfig", "LauncherConfig", "NotASection", "PLACEHOLDER_PREFIX",
    "STAGE_FAMILY", "STAGE_NAMES", "SlurmConfig", "TrackingConfig", "apply_override", "closest_name", "coerced_boolean",
    "describe_error", "dump_yaml", "load_config", "parse_yaml", "placeholder_paths", "read_yaml_mapping",
    "set_key", "slurm_time_to_minutes", "validate_config",
]

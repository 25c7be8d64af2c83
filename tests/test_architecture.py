"""The import structure the design promises, read from the source: a command's path to a stage can
be followed by reading code (no ``"module:function"`` strings), the science never reaches into the
launch layer, and the CLI starts without torch."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gptfl_hpc.errors import UserError
from gptfl_hpc.orchestrate.stages import PIPELINE
from gptfl_hpc.ranks import check_rank_devices

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "gptfl_hpc"
SCIENCE = ("prompts", "synth", "data", "models", "pretrain", "fl")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at top level or inside functions."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def importers_of(prefix: str, files: list[Path]) -> list[str]:
    return sorted(str(path.relative_to(REPO)) for path in files
                  if any(m == prefix or m.startswith(prefix + ".") for m in imported_modules(path)))


def test_jobs_scripts_import_nothing_from_the_cli():
    assert importers_of("gptfl_hpc.commands", sorted((REPO / "jobs").glob("*.py"))) == []


@pytest.mark.parametrize("package", SCIENCE)
def test_the_science_never_imports_launch_orchestration_or_commands(package):
    files = sorted((PACKAGE / package).rglob("*.py"))
    for layer in ("gptfl_hpc.launch", "gptfl_hpc.orchestrate", "gptfl_hpc.commands", "gptfl_hpc.cli"):
        assert importers_of(layer, files) == [], f"{package} imports {layer}"


def test_no_stage_is_started_through_a_string_target():
    targets = [(str(path.relative_to(REPO)), node.value)
               for path in sorted(PACKAGE.rglob("*.py")) + sorted((REPO / "jobs").glob("*.py"))
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)
               and re.fullmatch(r"gptfl_hpc(\.\w+)+:\w+", node.value)]
    assert targets == []
    for stage in PIPELINE:
        assert callable(stage.run) and stage.run.__module__.startswith("gptfl_hpc.")


def test_each_stage_package_describes_its_stage_in_a_torch_free_module():
    code = ("import sys; import gptfl_hpc.orchestrate.submit, gptfl_hpc.orchestrate.sweep, gptfl_hpc.cli; "
            "print(sorted(m for m in ('torch', 'deepspeed', 'diffusers', 'transformers') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
    described = {stage.run.__module__ for stage in PIPELINE}
    assert described == {"gptfl_hpc.prompts.stage", "gptfl_hpc.synth.stage", "gptfl_hpc.pretrain.description",
                         "gptfl_hpc.fl.description", "gptfl_hpc.report"}


def test_rank_devices_are_checked_by_one_function():
    definitions = [str(path.relative_to(REPO)) for path in sorted(PACKAGE.rglob("*.py"))
                   if any(isinstance(node, ast.FunctionDef) and node.name == "check_rank_devices"
                          for node in ast.walk(ast.parse(path.read_text())))]
    assert definitions == ["gptfl_hpc/ranks.py"]


def test_too_many_ranks_for_the_cores_name_the_setting(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    cores = len(__import__("os").sched_getaffinity(0))
    check_rank_devices("pretrain.ranks", cores)  # one core each: fine
    with pytest.raises(UserError, match=rf"federate.ranks puts {cores + 1} ranks on a node with {cores} CPU cores"):
        check_rank_devices("federate.ranks", cores + 1)

"""Which package may import which, read from the source with ``ast`` (function-local imports too).

A command's path to a stage can be followed by reading code (no ``"module:function"`` strings);
the science never reaches into the launch layer, orchestration or the CLI, and the CLI starts
without torch. The shard format (``gptfl_hpc.shards``) is used by synthesis and pretraining and
depends on neither; label discovery (``gptfl_hpc.labels``) holds its own file formats, and
``gptfl labels`` only parses arguments around it.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gptfl_hpc.errors import UserError
from gptfl_hpc.orchestrate.stages import PIPELINE
from gptfl_hpc.ranks import check_rank_devices

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "gptfl_hpc"
SCIENCE = ("prompts", "synth", "data", "models", "pretrain", "fl", "shards", "labels")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def project_imports(path: Path) -> set[str]:
    """Every ``gptfl_hpc`` module that ``path`` imports anywhere in its body; ``from P import m``
    counts as ``P.m`` when ``m`` is a module of package ``P``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "gptfl_hpc")
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: the project imports by absolute name"
            source = node.module or ""
            if source.split(".")[0] != "gptfl_hpc":
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if module_path(submodule) is not None else source)
    return found


def package_imports(package: str) -> dict[str, set[str]]:
    folder = PACKAGE.parent.joinpath(*package.split("."))
    return {module_name(path): project_imports(path) for path in sorted(folder.rglob("*.py"))}


def closure(start: set[str]) -> dict[str, set[str]]:
    """Every project module reachable from ``start``, with its direct project imports."""
    graph: dict[str, set[str]] = {}
    pending = list(start)
    while pending:
        name = pending.pop()
        if name in graph:
            continue
        path = module_path(name)
        graph[name] = project_imports(path) if path is not None else set()
        pending.extend(graph[name])
    return graph


def test_project_imports_sees_function_local_and_package_imports():
    """The reader of imports itself: a function-local import and ``from P import m`` are found."""
    sample = PACKAGE / "synth" / "stage.py"
    imports = project_imports(sample)
    assert "gptfl_hpc.shards.manifest" in imports
    assert "gptfl_hpc.data.factory" in imports  # imported inside planned_total()
    assert "gptfl_hpc.preemption" in imports  # `from gptfl_hpc import preemption`


def test_the_shard_format_imports_only_small_shared_modules():
    imports = set().union(*package_imports("gptfl_hpc.shards").values())
    assert imports == {
        "gptfl_hpc.data.base",
        "gptfl_hpc.data.labels",
        "gptfl_hpc.data.waveforms",
        "gptfl_hpc.durable",
        "gptfl_hpc.errors",
        "gptfl_hpc.layout",
        "gptfl_hpc.shards.manifest",
        "gptfl_hpc.shards.ranges",
        "gptfl_hpc.shards.writer",
    }


def test_the_shard_format_reaches_neither_synthesis_nor_back_into_itself():
    """Nothing the shard modules import, directly or not, is synthesis or imports the shard
    modules again: synth -> shards and pretrain -> shards, never the other way."""
    shards = set(package_imports("gptfl_hpc.shards"))
    graph = closure(shards)
    assert not [name for name in graph if name.startswith(("gptfl_hpc.synth", "gptfl_hpc.pretrain"))]
    cycles = {name: sorted(deps & shards) for name, deps in graph.items() if name not in shards and deps & shards}
    assert cycles == {}


def test_synthesis_and_pretraining_use_the_shard_format():
    synth = set().union(*package_imports("gptfl_hpc.synth").values())
    pretrain = set().union(*package_imports("gptfl_hpc.pretrain").values())
    assert {"gptfl_hpc.shards.writer", "gptfl_hpc.shards.manifest", "gptfl_hpc.shards.ranges"} <= synth
    assert "gptfl_hpc.shards.reader" in pretrain
    data = set().union(*package_imports("gptfl_hpc.data").values())
    assert not [name for name in data if name.startswith(("gptfl_hpc.synth", "gptfl_hpc.shards"))]


def test_the_labels_command_only_calls_label_discovery():
    """``commands/labels.py`` imports the label-discovery package and no file-format tools."""
    path = PACKAGE / "commands" / "labels.py"
    assert project_imports(path) == {"gptfl_hpc.labels.iblt", "gptfl_hpc.labels.steps"}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    outside = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert outside - {"gptfl_hpc"} == {"__future__", "argparse", "pathlib", "typing"}
    constants = [
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id.isupper()
    ]
    assert constants == []


def test_label_discovery_stands_apart_from_prompts_commands_and_fl():
    labels = set().union(*package_imports("gptfl_hpc.labels").values())
    assert labels == {
        "gptfl_hpc.durable",
        "gptfl_hpc.errors",
        "gptfl_hpc.identity",
        "gptfl_hpc.labels.files",
        "gptfl_hpc.labels.iblt",
        "gptfl_hpc.secure_sum",
    }
    fl = set().union(*package_imports("gptfl_hpc.fl").values())
    assert "gptfl_hpc.secure_sum" in fl
    assert not [name for name in fl if name.startswith("gptfl_hpc.labels")]


def importers_of(prefix: str, files: list[Path]) -> list[str]:
    return sorted(str(path.relative_to(REPO)) for path in files
                  if any(m == prefix or m.startswith(prefix + ".") for m in project_imports(path)))


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
    cores = len(os.sched_getaffinity(0))
    check_rank_devices("pretrain.ranks", cores)  # one core each: fine
    with pytest.raises(UserError, match=rf"federate.ranks puts {cores + 1} ranks on a node with {cores} CPU cores"):
        check_rank_devices("federate.ranks", cores + 1)

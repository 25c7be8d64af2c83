"""One virtualenv per contender framework, built once under ``<repo>/.cache/bench-venvs/``.

pfl-research and Flower pin packages (attrs, packaging, wheel, protobuf, ...) that must not leak
into the project's own venv, so each gets its own. torch is several GB, so the contender venvs
do not install it: a ``.pth`` file appends the calling interpreter's site-packages to their
``sys.path``. Packages installed in the contender venv come first; pip sees the project's torch
and numpy as already installed and does not fetch them again (checked after every build).
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / ".cache" / "bench-venvs"

# pfl 0.6.0 is the newest release; it accepts torch >=2.0.1,<3 and numpy <3, so the project's
# torch 2.11 / numpy 2.4 satisfy it as they are. Its extra "pytorch" only names torch.
# flwr[simulation] 1.42.0 is the dev extra's Flower; the extra pins ray==2.55.1.
SPECS: dict[str, list[str]] = {
    "pfl": ["pfl[pytorch]==0.6.0"],
    "flower": ["flwr[simulation]==1.42.0"],
}
STAMP = ".ready"
PTH_NAME = "zz_project_site_packages.pth"


class VenvError(RuntimeError):
    pass


def venv_python(name: str) -> Path:
    return ROOT / name / "bin" / "python"


def ensure_venv(name: str) -> Path:
    """The contender venv's python, building the venv first if it is missing or half-built."""
    if name not in SPECS:
        raise ValueError(f"unknown contender venv {name!r}; known: {sorted(SPECS)}")
    ROOT.mkdir(parents=True, exist_ok=True)
    stamp_text = _stamp_text(name)
    with open(ROOT / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two benchmarks starting at once build it once
        stamp = ROOT / name / STAMP
        if stamp.exists() and stamp.read_text() == stamp_text and venv_python(name).exists():
            return venv_python(name)
        _build(name, stamp_text)
    return venv_python(name)


def _stamp_text(name: str) -> str:
    return "\n".join([*SPECS[name], f"base={project_site_packages()}", ""])


def project_site_packages() -> Path:
    """site-packages of the interpreter running the benchmark (the project's venv)."""
    return Path(sysconfig.get_paths()["purelib"])


def _build(name: str, stamp_text: str) -> None:
    target = ROOT / name
    log = ROOT / f"{name}.log"
    if target.exists():
        shutil.rmtree(target)
    started = time.perf_counter()
    with open(log, "w") as out:
        out.write(f"building {target} for {' '.join(SPECS[name])}\n")
        out.flush()
        try:
            _run([sys.executable, "-m", "venv", str(target)], out)
            python = venv_python(name)
            site = Path(subprocess.check_output(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
            (site / PTH_NAME).write_text(f"{project_site_packages()}\n")
            pip = [str(python), "-m", "pip", "install", "--no-input", "--progress-bar", "off"]
            # The framework itself goes into this venv even where the project's venv has it (flwr):
            # its version is then the pinned one whatever the project installs later.
            _run([*pip, "--no-deps", "--ignore-installed", *SPECS[name]], out)
            _run([*pip, *SPECS[name]], out)
            _run([str(python), "-m", "pip", "check"], out, check=False)
            _run([str(python), "-m", "pip", "list"], out)
        except subprocess.CalledProcessError as err:
            raise VenvError(f"building the {name!r} venv failed: `{' '.join(err.cmd)}` exited {err.returncode}; "
                            f"see {log}") from None
        if (site / "torch").exists():
            raise VenvError(f"pip installed a second torch into {site}; see {log}")
        out.write(f"built in {time.perf_counter() - started:.1f} s\n")
    (target / STAMP).write_text(stamp_text)


def _run(cmd: list[str], out, check: bool = True) -> None:
    out.write(f"\n$ {' '.join(cmd)}\n")
    out.flush()
    subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=check, stdin=subprocess.DEVNULL)


if __name__ == "__main__":
    for arg in sys.argv[1:] or sorted(SPECS):
        began = time.perf_counter()
        print(f"{arg}: {ensure_venv(arg)} ({time.perf_counter() - began:.1f} s)")

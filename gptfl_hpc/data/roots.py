"""Checks on a dataset's local root that fail with one line naming what was expected where."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from gptfl_hpc.errors import UserError

PathLike = Union[str, Path]


def require_root(root: Optional[PathLike], dataset: str, holds: str) -> Path:
    """``root`` as a Path; UserError when it is unset or not a directory."""
    if root is None:
        raise UserError(f"{dataset} needs data.root; set it to the folder that holds {holds}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise UserError(f"{dataset} root {path} is not a directory; point data.root at the folder that holds {holds}")
    return path


def require_file(root: Path, relative: str, dataset: str, holds: str) -> Path:
    """``root / relative``; UserError when it is not a file."""
    path = root / relative
    if not path.is_file():
        raise UserError(f"{dataset} root {root} has no {relative}; point data.root at the folder that holds {holds}")
    return path


def malformed(path: Path, dataset: str, what: str) -> UserError:
    """The error for a file that exists but is not in the published format."""
    return UserError(f"{dataset} file {path} is malformed ({what}); restore it from the published archive")

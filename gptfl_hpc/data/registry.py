"""Every dataset ``data.dataset`` can name: a registry of readers, filled by the reader modules.

A reader module registers itself with ``@register_dataset``: the name ``data.dataset`` uses, the
name messages use, what it holds (``image``, ``speech`` or ``audio``, or a function that finds
out from the data, for the folder and Hugging Face readers) and ``open(config, split, options)``.
Adding a dataset is one module that registers its reader; a module outside the package registers
the same way and is named in ``GPTFL_DATASET_MODULES`` (comma-separated module names) so that
``data.dataset`` accepts its name.

Reader modules import torch only inside functions, so reading the config (``gptfl validate``,
``status``, dry runs) loads the registry without torch.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

from gptfl_hpc.errors import UserError

if TYPE_CHECKING:
    from gptfl_hpc.data.base import LabeledDataset
    from gptfl_hpc.data.config import DataConfig

#: The package's reader modules, imported the first time the registry is read.
BUILTIN_MODULES = (
    "gptfl_hpc.data.digits",
    "gptfl_hpc.data.cifar",
    "gptfl_hpc.data.flowers",
    "gptfl_hpc.data.speech_commands",
    "gptfl_hpc.data.esc50",
    "gptfl_hpc.data.folder",
    "gptfl_hpc.data.food101",
    "gptfl_hpc.data.hf",
)
#: Environment variable naming further reader modules (``mylab.datasets,other.readers``).
PLUGIN_MODULES_ENV = "GPTFL_DATASET_MODULES"


@dataclass(frozen=True)
class OpenOptions:
    """How a split is opened.

    ``cache``: the folder where decoded samples are kept between opens (``RUN/data-cache``); None
    decodes into memory. ``decode=False`` reads only what is needed to list the samples, their
    labels and clients, and checks each file's header: the checks before a job is submitted.
    """

    cache: Optional[Path] = None
    decode: bool = True


Opener = Callable[["DataConfig", str, OpenOptions], "LabeledDataset"]
ModalityOf = Callable[["DataConfig"], Optional[str]]


@dataclass(frozen=True)
class DatasetReader:
    name: str  # as data.dataset names it
    display_name: str  # as messages name it
    modality: Union[str, ModalityOf]  # image, speech or audio; or found from the data (None: unknown yet)
    open: Opener
    needs_root: bool = True

    def modality_of(self, config: "DataConfig") -> Optional[str]:
        return self.modality(config) if callable(self.modality) else self.modality


_READERS: dict[str, DatasetReader] = {}
_loaded = False


def register_dataset(
    name: str, display_name: str, modality: Union[str, ModalityOf], needs_root: bool = True
) -> Callable[[Opener], Opener]:
    """Decorator: register ``open(config, split, options) -> LabeledDataset`` as ``data.dataset: name``."""

    def register(opener: Opener) -> Opener:
        existing = _READERS.get(name)
        if existing is not None and existing.open is not opener:
            raise ValueError(f"dataset name '{name}' is registered twice")
        _READERS[name] = DatasetReader(name, display_name, modality, opener, needs_root)
        return opener

    return register


def _load_modules() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    plugins = [m.strip() for m in os.environ.get(PLUGIN_MODULES_ENV, "").split(",") if m.strip()]
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for module in plugins:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UserError(f"{PLUGIN_MODULES_ENV} names module '{module}', which cannot be imported ({exc}); "
                            "install it or fix the name") from None


def dataset_names() -> list[str]:
    """Every registered name, sorted (registration order depends on which module was imported first)."""
    _load_modules()
    return sorted(_READERS)


def dataset_reader(name: str) -> DatasetReader:
    """The reader registered as ``name``; UserError naming the close names otherwise."""
    _load_modules()
    if name in _READERS:
        return _READERS[name]
    close = difflib.get_close_matches(name, list(_READERS), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UserError(f"data.dataset '{name}' is not a dataset; {hint}use one of {', '.join(dataset_names())}")

"""One entry point for every dataset, so a chapter switches data with one setting.

``open_dataset("synthau" | "bp4d" | "bp4dplus" | "disfa", **options)`` imports the dataset's module
lazily and calls its ``open_dataset(**options)``; ``dataset_folds(name, **options)`` calls its
``folds(**options)``. Each module implements that small protocol:

- ``open_dataset(*, root=None, subjects=None, split=None, modalities=("rgb",), image_size=None,
  profile=None, **kw) -> torch.utils.data.Dataset`` yielding the shared sample dict
  (see :mod:`au_lib.data`);
- ``folds(*, root=None, profile=None, **kw) -> list[au_lib.data.folds.Fold]`` (3 subject-exclusive folds);
- ``AUS``: the tuple of FACS numbers of the ``au`` vector.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

DATASET_MODULES: dict[str, str] = {
    "synthau": "au_lib.data.synth",
    "bp4d": "au_lib.data.bp4d",
    "bp4dplus": "au_lib.data.bp4dplus",
    "disfa": "au_lib.data.disfa",
}
ENV_VAR = "AU_DATA"


def dataset_name(name: str | None = None) -> str:
    """The dataset to use: ``name``, else ``$AU_DATA``, else ``synthau``; validated."""
    key = (name or os.environ.get(ENV_VAR) or "synthau").strip().lower().replace("+", "plus")
    if key not in DATASET_MODULES:
        raise KeyError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_MODULES)}")
    return key


def dataset_module(name: str | None = None) -> ModuleType:
    """The module that implements dataset ``name`` (see the protocol above)."""
    return importlib.import_module(DATASET_MODULES[dataset_name(name)])


def open_dataset(name: str | None = None, **options):
    """Open dataset ``name`` with ``options`` (root, subjects, split, modalities, image_size, profile...)."""
    return dataset_module(name).open_dataset(**options)


def dataset_folds(name: str | None = None, **options):
    """The three subject-exclusive folds of dataset ``name``."""
    return dataset_module(name).folds(**options)

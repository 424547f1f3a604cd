"""The one cache folder of the package: ``$AU_CACHE``, else the platform's user cache directory.

Everything the package computes and keeps (face-model assets, SynthAU shards, prepared datasets,
pre-training runs, protocol results, compiled kernels) lives below :func:`cache_root`; nothing depends
on a source checkout, so an installed wheel finds the same caches. The book's build (``Makefile``,
``book/conftest.py``) sets ``AU_CACHE=<repo>/.cache``.

Every torch file the package reads back goes through one loader: :func:`load_torch_file` (a user
file such as a checkpoint: a damaged one stops with :class:`DamagedFileError` naming it) or
:func:`load_cached_torch` (a cache: a damaged one is reported, deleted and recomputed).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "AU_CACHE"


def cache_root() -> Path:
    """``$AU_CACHE`` if set (``~`` expanded), else the platform cache directory for ``au_lib``
    (``~/.cache/au_lib`` on Linux, ``~/Library/Caches/au_lib`` on macOS)."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path("au_lib", appauthor=False)


def cache_dir(*parts: str) -> Path:
    """``cache_root() / parts...`` (not created)."""
    return cache_root().joinpath(*parts)




# ------------------------------------------------------------------------------ reading torch files
class DamagedFileError(ValueError):
    """A file written by the package cannot be read back (truncated, empty, foreign or damaged).

    ``path`` is the file; the message names it and says what to do.
    """

    def __init__(self, path: os.PathLike | str, message: str):
        super().__init__(message)
        self.path = Path(path)


def _safe_globals() -> list:
    """Types besides tensors and plain Python values that the package's own files hold: numpy arrays
    (frame tables, fold outcomes) and the torch version string of older checkpoints."""
    import inspect

    import numpy as np
    from torch.torch_version import TorchVersion

    try:
        reconstruct = np._core.multiarray._reconstruct
    except AttributeError:  # numpy < 2
        reconstruct = np.core.multiarray._reconstruct
    dtypes = [c for _, c in inspect.getmembers(getattr(np, "dtypes", None), inspect.isclass)] \
        if hasattr(np, "dtypes") else []
    return [TorchVersion, np.ndarray, np.dtype, reconstruct, *dtypes]


def load_torch_file(path: str | os.PathLike, *, what: str = "file", map_location="cpu",
                    weights_only: bool = True, advice: str = ""):
    """``torch.load`` of a file the package wrote, with errors that name it.

    Loads with ``weights_only=True`` (tensors, plain Python values, numpy arrays; no arbitrary code)
    unless told otherwise. Raises ``FileNotFoundError`` when ``path`` is absent and
    :class:`DamagedFileError` (a ``ValueError``) when it cannot be read: empty, truncated, not a torch
    file, or holding objects ``weights_only`` refuses. ``what`` names the kind of file in the message
    (e.g. ``"checkpoint"``); ``advice`` is appended (what the user can do).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what} there")
    tail = f"; {advice}" if advice else ""
    if path.stat().st_size == 0:
        raise DamagedFileError(path, f"{path}: cannot read {what}: the file is empty{tail}")
    try:
        if weights_only:
            with torch.serialization.safe_globals(_safe_globals()):
                return torch.load(path, map_location=map_location, weights_only=True)
        return torch.load(path, map_location=map_location, weights_only=False)
    except MemoryError:
        raise
    except Exception as exc:  # truncated zip, foreign pickle, unpickling refused...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Weights only load failed" in reason:
            reason = "it holds objects other than tensors and plain values"
        raise DamagedFileError(path, f"{path}: cannot read {what}: damaged or not a torch file "
                                     f"({type(exc).__name__}: {reason[:200]}){tail}") from None


def load_cached_torch(path: str | os.PathLike, *, what: str = "cache entry", map_location="cpu",
                      weights_only: bool = True, check=None):
    """A torch file that can be recomputed: its content, or ``None`` when it is absent or damaged.

    A damaged file (see :func:`load_torch_file`), or one whose content ``check(obj)`` rejects by
    raising ``ValueError``/``KeyError``/``TypeError``, is reported with a ``UserWarning`` naming it and
    deleted, so the caller recomputes and rewrites it.
    """
    import warnings

    path = Path(path)
    if not path.is_file():
        return None
    try:
        obj = load_torch_file(path, what=what, map_location=map_location, weights_only=weights_only)
        if check is not None:
            check(obj)
        return obj
    except (ValueError, KeyError, TypeError) as exc:
        warnings.warn(f"{exc}; recomputing it" if isinstance(exc, DamagedFileError)
                      else f"{path}: damaged {what} ({exc}); recomputing it", stacklevel=2)
        path.unlink(missing_ok=True)
        return None


__all__ = ["ENV_VAR", "cache_root", "cache_dir", "DamagedFileError", "load_torch_file", "load_cached_torch"]

"""The one cache folder of the package: ``$AU_CACHE``, else the platform's user cache directory.

Everything the package computes and keeps (face-model assets, SynthAU shards, prepared datasets,
pre-training runs, protocol results, compiled kernels) lives below :func:`cache_root`; nothing depends
on a source checkout, so an installed wheel finds the same caches. The book's build (``Makefile``,
``book/conftest.py``) sets ``AU_CACHE=<repo>/.cache``.
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


__all__ = ["ENV_VAR", "cache_root", "cache_dir"]

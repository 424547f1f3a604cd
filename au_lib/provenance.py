"""Reproducibility helpers: seeding, device choice, provenance, atomic writes.

Every result the project writes carries a provenance record (profile, git commit, device, torch
version, wall time, date) so the book can show where each number comes from.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import random
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The folder above the package: a source checkout when the package runs from one (for
:func:`git_commit`); nothing else in the package depends on it (caches: :mod:`au_lib.cache`)."""


def seed_everything(seed: int) -> "torch.Generator":  # noqa: F821
    """Seed Python, NumPy and torch; return a fresh ``torch.Generator`` seeded with ``seed``.

    Library functions never read global RNG state (they take a generator or a seed); this exists for
    notebooks and scripts that call third-party code which does.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def choose_device(prefer: str | None = None) -> "torch.device":  # noqa: F821
    """CUDA if available (or ``prefer`` / ``$AU_DEVICE`` if given), else CPU."""
    import torch

    name = prefer or os.environ.get("AU_DEVICE")
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def git_commit(root: Path = REPO_ROOT) -> str:
    """Short commit hash of the checkout (``+dirty`` if it has uncommitted changes), or ``unknown``
    (also when the package is installed rather than run from a checkout)."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        if Path(top).resolve() != Path(root).resolve():  # e.g. site-packages inside some other repository
            return "unknown"
        sha = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        # untracked (not ignored) files under the code folders count too: code that ran but is not
        # in the commit must not be labelled with a clean hash
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "au_lib", "bench", "data_scripts",
                                "pyproject.toml"], cwd=root, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except Exception:
        return "unknown"


def device_name(device: "torch.device | str | None" = None) -> str:  # noqa: F821
    """Human-readable device name: the GPU model, or the CPU and its thread count."""
    import torch

    dev = torch.device(device) if device is not None else choose_device()
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


@dataclass
class Provenance:
    """Where a result came from."""

    profile: str
    commit: str
    device: str
    torch: str
    wall_time_s: float
    date: str
    host_python: str

    def short(self) -> str:
        """One line for a figure caption or a table footer."""
        return (f"profile={self.profile} · commit={self.commit} · device={self.device} · "
                f"wall={self.wall_time_s:.0f}s · torch {self.torch} · {self.date}")


def make_provenance(profile: str, wall_time_s: float, device=None) -> Provenance:
    """Provenance for a run that just finished."""
    import torch

    return Provenance(profile=profile, commit=git_commit(), device=device_name(device),
                      torch=torch.__version__, wall_time_s=float(wall_time_s),
                      date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                      host_python=platform.python_version())


@contextlib.contextmanager
def timed() -> Iterator[dict]:
    """``with timed() as t: ...`` then ``t["seconds"]``."""
    out: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - start


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # e.g. a full disk: say which file
            exc.filename = str(path)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON-encode ``obj`` (dataclasses and numpy values allowed) and write it atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=_json_default)
                                     + "\n").encode())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file then rename, so a crash never leaves a half-written checkpoint."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def _json_default(o: Any):
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")

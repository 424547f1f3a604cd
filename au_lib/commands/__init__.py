"""One module per ``au-lib`` subcommand (see :mod:`au_lib.cli`), and the argument types they share.

The types below are ``argparse`` ``type=`` functions: a value that makes no sense (``--epochs 0``,
``--lr nan``, ``--device cuda:7`` on a machine without it, an ``--out`` that is a file) is refused
while the command line is parsed, with a one-line error and exit status 2, before anything is
written. They import nothing heavy (``torch`` only inside :func:`device`, when the option is given).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Callable


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _bounded(parse: Callable[[str], float], ok: Callable[[float], bool], rule: str, doc: str):
    """An argparse type: ``parse`` the text, then refuse values for which ``ok`` is false ("must be ``rule``")."""
    def check(text: str):
        value = parse(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return value
    check.__doc__ = doc
    return check


positive_int = _bounded(_int, lambda v: v >= 1, "an integer >= 1",
                        "An integer >= 1 (epochs, steps, batch size, accumulation, checkpoint cadence, sample count).")
nonnegative_int = _bounded(_int, lambda v: v >= 0, "an integer >= 0", "An integer >= 0 (data-loader workers).")


def finite_float(text: str) -> float:
    """A finite number (no ``nan``/``inf``)."""
    return _float(text)


positive_float = _bounded(_float, lambda v: v > 0, "a number > 0", "A finite number > 0 (learning rates).")
nonnegative_float = _bounded(_float, lambda v: v >= 0, "a number >= 0", "A finite number >= 0 (warm-up epochs).")
fraction = _bounded(_float, lambda v: 0.0 < v < 1.0, "a number in (0, 1)",
                    "A number strictly between 0 and 1 (mask ratios).")


def comma_list(item: Callable[[str], object], what: str = "values") -> Callable[[str], tuple]:
    """A type for comma-separated ``item`` values, e.g. ``comma_list(positive_int)`` for ``10,20,50``;
    empty lists and bad items are refused naming the item."""
    def parse(text: str) -> tuple:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(p == "" for p in parts):
            raise argparse.ArgumentTypeError(f"expected comma-separated {what} like 1,2,3, got {text!r}")
        out = []
        for p in parts:
            try:
                out.append(item(p))
            except argparse.ArgumentTypeError as exc:
                raise argparse.ArgumentTypeError(f"{text!r}: item {p!r} {exc}") from None
        return tuple(out)
    parse.__name__ = f"list of {what}"
    return parse


def check_device(text: str) -> str:
    """``text`` if it names a device this machine has (``cpu``, ``cuda``, ``cuda:N``, ``mps``), else
    ``ValueError`` saying what is available."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"{text!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"{text!r}: CUDA is not available on this machine; use --device cpu")
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"{text!r}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"{text!r}: MPS is not available on this machine; use --device cpu")
    elif dev.type != "cpu":
        raise ValueError(f"{text!r}: unsupported device type; use cpu, cuda or cuda:N")
    return text


def device(text: str) -> str:
    """``--device``: a device this machine has (see :func:`check_device`)."""
    try:
        return check_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _writable_ancestor(path: Path) -> None:
    """Refuse ``path`` if the folder it would be created in is not a writable folder."""
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink() or parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{str(path)!r}: {str(parent)!r} is a file, not a folder")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{str(path)!r}: cannot write in {str(parent)!r} (permission denied)")


def output_dir(text: str) -> Path:
    """An output folder (a run folder): an existing folder, or a path where one can be created."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; give a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{text!r}: cannot write in this folder (permission denied)")
        return path
    _writable_ancestor(path)
    return path


def output_file(text: str) -> Path:
    """An output file (a result file): not a folder, in a folder that exists or can be created."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name such as result.json")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text!r}: cannot overwrite this file (permission denied)")
    _writable_ancestor(path)
    return path


__all__ = ["positive_int", "nonnegative_int", "finite_float", "positive_float", "nonnegative_float", "fraction",
           "comma_list", "check_device", "device", "output_dir", "output_file"]

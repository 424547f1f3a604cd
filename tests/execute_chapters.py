#!/usr/bin/env python3
"""Regenerate the stored outputs of the book's chapters (``make execute``).

Runs each notebook top to bottom with nbclient in the current environment's Python (profile from
``$AU_PROFILE``, default ``cpu``; never store ``smoke`` outputs), with the same thread and seed
settings as the nbval run, and writes it back atomically with execution counts and widget state.

Usage: ``python tests/execute_chapters.py [book/chapter.ipynb ...]`` (default: every chapter in _toc.yml).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def chapters_from_toc() -> list[Path]:
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    return [ROOT / (f + ".ipynb") for f in files if (ROOT / (f + ".ipynb")).exists()]


def main(argv: list[str]) -> int:
    import nbformat
    from nbclient import NotebookClient

    profile = os.environ.setdefault("AU_PROFILE", "cpu")
    if profile == "smoke":
        print("refusing to store smoke-profile outputs in the book (set AU_PROFILE=cpu or paper)")
        return 2
    for k, v in {"MKL_CBWR": "AVX2", "PYTHONHASHSEED": "0", "PYTHONWARNINGS": "ignore",
                 "AU_CACHE": str(ROOT / ".cache"), "AU_RESULTS": str(ROOT / "book" / "results")}.items():
        os.environ.setdefault(k, v)
    paths = [Path(a).resolve() for a in argv] or chapters_from_toc()
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        print(f"executing {path.relative_to(ROOT)} (AU_PROFILE={profile}) ...", flush=True)
        client = NotebookClient(nb, timeout=-1, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                                store_widget_state=True, record_timing=False)
        client.execute()
        tmp = path.with_suffix(".ipynb.tmp")
        nbformat.write(nb, tmp)
        os.replace(tmp, path)
        print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Regenerate the stored outputs of the book's chapters (``make execute``).

Runs each notebook top to bottom with nbclient in the current environment's Python (profile from
``$AU_PROFILE``, default ``cpu``; never store ``smoke`` outputs), with the same thread and seed
settings as the nbval run, and writes it back atomically with execution counts. Progress bars are
off (``AU_PROGRESS=0``, ``TQDM_DISABLE=1``), no widget state is stored, and every notebook goes
through :func:`notebook_hygiene.clean_notebook` before it is written (absolute paths of this
checkout become repository-relative, large photographic figures are stored as JPEG); the run fails
if :func:`notebook_hygiene.find_problems` still finds anything. The chapter's install cell for
Colab is (re)generated first (:func:`install_cell.ensure_install_cell`).

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
    # stored outputs show results, not the progress of the run that made them
    os.environ.update({"AU_PROGRESS": "0", "TQDM_DISABLE": "1"})
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from install_cell import ensure_install_cell
    from notebook_hygiene import clean_notebook, find_problems

    failed = []
    paths = [Path(a).resolve() for a in argv] or chapters_from_toc()
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        ensure_install_cell(nb)  # Colab's first cell, generated from _config.yml (a no-op here)
        start = time.perf_counter()
        print(f"executing {path.relative_to(ROOT)} (AU_PROFILE={profile}) ...", flush=True)
        client = NotebookClient(nb, timeout=-1, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                                store_widget_state=False, record_timing=False)
        client.execute()
        clean_notebook(nb, roots=(str(ROOT),))
        tmp = path.with_suffix(".ipynb.tmp")
        nbformat.write(nb, tmp)
        os.replace(tmp, path)
        problems = find_problems(path)
        print(f"  done in {time.perf_counter() - start:.0f} s"
              f"{'' if not problems else f'; still unclean: {problems}'}", flush=True)
        failed += problems
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""The install cell every chapter starts with, generated from the one place that names the repository.

The repository's URL lives in ``_config.yml`` (``repository.url``; the launch buttons use it). Each
chapter's first code cell, tagged :data:`TAG`, is generated from it by :func:`install_cell_source`:
outside a checkout of the repository (Colab, a bare Jupyter) it clones the repository, installs
``au_lib`` from it and fetches the verified face-model assets, then works from the clone's ``book/``
folder; inside a checkout (``au_lib`` importable, or ``../au_lib`` present) and under ``$CI`` it does
nothing and prints nothing, so nbval and the stored outputs are unaffected. The cell is removed from
the rendered pages (``remove-cell``): readers of the HTML book need no installation.

``python tests/install_cell.py [book/chapter.ipynb ...]`` (re)writes the cell in the given chapters
(default: every chapter) after the URL changes; ``tests/test_book_sources.py`` fails while any
chapter's cell differs from the generated one. ``tests/execute_chapters.py`` applies it too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAG = "install-au-lib"
TAGS = ["remove-cell", TAG]


def repository_url(config: Path = ROOT / "_config.yml") -> str:
    """``repository.url`` of the book's ``_config.yml``, without a trailing slash or ``.git``."""
    import yaml

    url = (yaml.safe_load(config.read_text()).get("repository") or {}).get("url", "")
    if not url.startswith("https://"):
        raise ValueError(f"{config}: repository.url must be an https URL of the book's repository, got {url!r}")
    return url.rstrip("/").removesuffix(".git")


def install_cell_source(url: str) -> str:
    """The source of the install cell for the repository at ``url``."""
    name = url.rsplit("/", 1)[-1]
    return f'''# Colab or a bare Jupyter: get the book's repository, install au_lib and its face-model assets.
# Inside a checkout of the repository (and in CI) this cell does nothing.
import importlib.util, os, subprocess, sys
from pathlib import Path
REPOSITORY = "{url}"  # generated from repository.url in _config.yml
if not (os.environ.get("CI") or importlib.util.find_spec("au_lib") or Path("../au_lib/__init__.py").exists()):
    checkout = Path("{name}").resolve()
    if not checkout.exists():
        subprocess.run(["git", "clone", "--depth", "1", REPOSITORY, str(checkout)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{{checkout}}[book]"], check=True)
    subprocess.run([sys.executable, "data_scripts/fetch_pyfeat_assets.py"], cwd=checkout, check=True)
    sys.path.insert(0, str(checkout))
    os.chdir(checkout / "book")'''


def find_install_cell(nb) -> int | None:
    """Index of the chapter's install cell (tagged :data:`TAG`), or None."""
    for i, cell in enumerate(nb["cells"]):
        if TAG in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def ensure_install_cell(nb, url: str | None = None) -> bool:
    """Put the generated install cell before the chapter's first code cell (or refresh it); True if changed."""
    import nbformat

    source = install_cell_source(url or repository_url())
    at = find_install_cell(nb)
    if at is not None:
        cell = nb["cells"][at]
        if cell["source"] == source and cell["metadata"].get("tags") == TAGS and not cell.get("outputs"):
            return False
        cell["source"], cell["outputs"], cell["execution_count"] = source, [], None
        cell["metadata"]["tags"] = list(TAGS)
        return True
    first_code = next((i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"), len(nb["cells"]))
    nb["cells"].insert(first_code, nbformat.v4.new_code_cell(source, metadata={"tags": list(TAGS)}))
    return True


def main(argv: list[str]) -> int:
    import nbformat

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from execute_chapters import chapters_from_toc

    url = repository_url()
    paths = [Path(a) for a in argv] or chapters_from_toc()
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if ensure_install_cell(nb, url):
            tmp = path.with_name(path.name + ".tmp")
            nbformat.write(nb, tmp)
            os.replace(tmp, path)
            print(f"{path}: install cell written for {url}")
        else:
            print(f"{path}: install cell up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

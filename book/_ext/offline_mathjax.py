"""Serve MathJax from the book itself: no CDN, so equations render offline and on any mirror.

The files come from the PyPI package ``sphinx-mathjax-offline`` (MathJax 3.2.2), pinned in
``constraints.txt`` and installed by ``make`` with the ``book`` extra. Before every build this
extension checks the installed copy against :data:`TREE_SHA256` (a digest over every file's path
and sha256), adds it to ``html_static_path`` (so Sphinx copies it to ``_build/html/_static/mathjax``)
and points ``mathjax_path`` at ``_static/mathjax/tex-chtml.js``. A missing or altered copy stops the
build with a message that says what to do. The package's own Sphinx hook is not used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

DISTRIBUTION = "sphinx-mathjax-offline"
VERSION = "0.0.2"
MATHJAX_VERSION = "3.2.2"
ENTRY = "tex-chtml.js"
# sha256 over "relative/path\0<sha256 of the file>\n" for every file of static/mathjax, sorted by path
TREE_SHA256 = "7d67c3454c4de61dc0fe8f89cf24f145e55f1b053658582231d89fea3d6222a3"
ENTRY_SHA256 = "0a6ded5abbce13331658dd239f34382abd06492c74b71b61e8caa8112ec55fa5"


def tree_digest(root: Path) -> str:
    """The digest :data:`TREE_SHA256` pins, of every file under ``root``."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0"
                 + hashlib.sha256(p.read_bytes()).hexdigest().encode() + b"\n")
    return h.hexdigest()


def mathjax_static_dir() -> Path:
    """The installed package's ``static`` folder (it holds ``mathjax/``), verified; raises if absent or altered."""
    from importlib import metadata

    hint = f"install it with `pip install -c constraints.txt '{DISTRIBUTION}=={VERSION}'` (make does)"
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ExtensionError(f"offline MathJax: the package {DISTRIBUTION} is not installed; {hint}") from None
    if dist.version != VERSION:
        raise ExtensionError(f"offline MathJax: {DISTRIBUTION} {dist.version} is installed, the book pins "
                             f"{VERSION}; {hint}")
    static = Path(dist.locate_file("sphinx-mathjax-offline/static"))
    mathjax = static / "mathjax"
    entry = mathjax / ENTRY
    if not entry.is_file():
        raise ExtensionError(f"offline MathJax: {entry} is missing; {hint}")
    if hashlib.sha256(entry.read_bytes()).hexdigest() != ENTRY_SHA256:
        raise ExtensionError(f"offline MathJax: {entry} does not match its pinned sha256; reinstall: {hint}")
    digest = tree_digest(mathjax)
    if digest != TREE_SHA256:
        raise ExtensionError(f"offline MathJax: the files under {mathjax} do not match the pinned digest "
                             f"({digest[:12]}... != {TREE_SHA256[:12]}...); reinstall: {hint}")
    return static


def _configure(app: Sphinx, config) -> None:
    static = mathjax_static_dir()
    config.html_static_path = [*config.html_static_path, str(static)]
    config.mathjax_path = f"mathjax/{ENTRY}"  # relative: served from _static/


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _configure, priority=900)
    return {"version": MATHJAX_VERSION, "parallel_read_safe": True, "parallel_write_safe": True}

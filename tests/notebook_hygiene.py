#!/usr/bin/env python3
"""Keep the stored chapter outputs clean: what a reader sees, without the noise of the run that made it.

Two functions, used by ``tests/execute_chapters.py`` (after every execution), by
``tests/test_book_hygiene.py`` (on every stored chapter) and from the command line:

- :func:`clean_notebook` removes widget state and widget views (tqdm bars in Jupyter are
  ipywidgets), text-mode progress bars in streams, and rewrites absolute paths of the executing
  machine to paths relative to the repository; it re-encodes large photographic PNG figures as
  JPEG so that no chapter grows past :data:`MAX_BYTES`.
- :func:`find_problems` lists what is still wrong: widget state or views, progress-bar output,
  absolute paths in any text output, a notebook file over :data:`MAX_BYTES`.

Command line (works on any notebook, including a freshly executed ``book/data.ipynb``)::

    python tests/notebook_hygiene.py --check book/*.ipynb
    python tests/notebook_hygiene.py --clean book/data.ipynb [--root /path/of/the/executing/checkout]

``--root`` names the checkout that executed the notebook when it is not this one (its absolute
path is what appears in the outputs); the home directory and this checkout are always stripped.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_BYTES = 2_000_000
MAX_FIGURE_BYTES = 1_000_000  # one stored figure (decoded)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# tqdm's bar, text or widget fallback: "desc:  40%|####      | 4/10 [00:01<00:02, 3.1it/s]"
PROGRESS_RE = re.compile(r"\d+%\|[^|\n]*\|\s*\d+(?:\.\d+)?[kMG]?/\d+(?:\.\d+)?[kMG]?\s*\[")
# an absolute POSIX path: a slash that starts a token, then at least two path components
ABS_PATH_RE = re.compile(r"(?<![\w.~:/\\$}-])/(?:[\w.+-]+/)+[\w.+-]*")
TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")
# a PNG larger than this that is photographic (JPEG at least halves it) is stored as JPEG
PNG_TO_JPEG_BYTES = 300_000
JPEG_QUALITY = 90


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else value if isinstance(value, str) else json.dumps(value)


def _output_texts(output: dict) -> list[str]:
    """Every human-readable string of one output (stream text, text mimes, tracebacks)."""
    texts = []
    if output.get("output_type") == "stream":
        texts.append(_text(output.get("text", "")))
    for mime, value in output.get("data", {}).items():
        if mime in TEXT_MIMES or mime.startswith("application/papermill.record/text"):
            texts.append(_text(value))
    if output.get("output_type") == "error":
        texts += [_text(output.get("evalue", ""))] + list(output.get("traceback", []))
    return texts


def _is_widget(output: dict) -> bool:
    data = output.get("data", {})
    return WIDGET_VIEW in data or WIDGET_STATE in data


def _path_roots(extra_roots=()) -> list[str]:
    roots = {str(Path(r).resolve()) for r in (ROOT, *extra_roots)} | {str(Path(r)) for r in extra_roots}
    cache = os.environ.get("AU_CACHE")
    if cache and Path(cache).resolve().name == ".cache":  # <checkout>/.cache: its checkout is a root
        roots.add(str(Path(cache).resolve().parent))
    return sorted((r.rstrip("/") for r in roots if r not in ("", "/")), key=len, reverse=True)


def relativize(text: str, roots: list[str]) -> str:
    """Absolute paths under a checkout become repository-relative; a ``$AU_CACHE`` outside the
    checkouts becomes ``$AU_CACHE``; the home directory becomes ``~``."""
    for root in roots:
        text = re.sub(re.escape(root) + r"(?=/|\b)/?", lambda m: "" if m.group(0).endswith("/") else ".", text)
    cache = os.environ.get("AU_CACHE", "").rstrip("/")
    if cache.startswith("/") and len(cache) > 1:
        text = re.sub(re.escape(cache) + r"(?=/|\b)", "$AU_CACHE", text)
    home = str(Path.home())
    if home not in ("", "/"):
        text = re.sub(re.escape(home) + r"(?=/|\b)", "~", text)
    return text


def _strip_progress(text: str) -> str:
    """Drop progress-bar lines (tqdm redraws with carriage returns) from a stream's text."""
    kept = []
    for line in re.findall(r"[^\n]*\n|[^\n]+", text):  # not splitlines: "\r" separates redraws
        frames = [f for f in line.split("\r") if f.strip("\n")]
        if frames and all(PROGRESS_RE.search(f) for f in frames):
            continue
        if PROGRESS_RE.search(line):
            line = frames[-1] if frames and not PROGRESS_RE.search(frames[-1]) else ""
        kept.append(line)
    return "".join(kept)


def _compact_png(b64: str) -> tuple[str, str] | None:
    """(mime, base64) of a JPEG for a large photographic PNG, or None to keep the PNG."""
    raw = base64.b64decode(b64)
    if len(raw) <= PNG_TO_JPEG_BYTES:
        return None
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as im:
        if im.mode in ("RGBA", "LA") and im.getchannel("A").getextrema()[0] < 255:
            return None  # real transparency: JPEG cannot keep it
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    if 2 * buf.tell() > len(raw):
        return None  # not photographic (line art compresses well as PNG)
    return "image/jpeg", base64.b64encode(buf.getvalue()).decode("ascii")


def clean_notebook(nb: dict, roots: list[str] | tuple[str, ...] = ()) -> dict:
    """Clean a notebook (an nbformat node or the plain dict of its JSON) in place and return it.

    ``roots``: absolute paths of checkouts whose paths appear in the outputs (this checkout, the
    checkout of ``$AU_CACHE``, and the home directory are always handled).
    """
    all_roots = _path_roots(roots)
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        cell.get("metadata", {}).pop("execution", None)
        if cell.get("cell_type") != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            if _is_widget(out):
                continue
            if out.get("output_type") == "stream":
                text = _strip_progress(_text(out.get("text", "")))
                if not text:
                    continue
                out["text"] = relativize(text, all_roots)
            for mime in list(out.get("data", {})):
                value = out["data"][mime]
                if mime in TEXT_MIMES or mime.startswith("application/papermill.record/text"):
                    if isinstance(value, (str, list)):
                        out["data"][mime] = relativize(_text(value), all_roots)
                elif mime == "image/png" and "image/jpeg" not in out["data"]:
                    jpeg = _compact_png(_text(value))
                    if jpeg is not None:
                        del out["data"]["image/png"]
                        out["data"][jpeg[0]] = jpeg[1]
            if out.get("output_type") == "error":
                out["traceback"] = [relativize(t, all_roots) for t in out.get("traceback", [])]
            outputs.append(out)
        cell["outputs"] = outputs
    return nb


def find_problems(path: Path, nb: dict | None = None) -> list[str]:
    """What makes a stored notebook unfit for the book; an empty list when it is clean."""
    path = Path(path)
    problems = []
    size = path.stat().st_size if path.exists() else 0
    if size > MAX_BYTES:
        problems.append(f"{path.name}: {size / 1e6:.2f} MB, over the {MAX_BYTES / 1e6:.0f} MB limit")
    if nb is None:
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return problems + [f"{path}: not a readable notebook ({exc})"]
    if "widgets" in nb.get("metadata", {}):
        state = len(json.dumps(nb["metadata"]["widgets"]))
        problems.append(f"{path.name}: {state / 1e3:.0f} KB of widget state in the notebook metadata")
    for i, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []):
            if _is_widget(out):
                problems.append(f"{path.name} cell {i}: a widget output (a tqdm bar or other ipywidget)")
                continue
            for mime, value in out.get("data", {}).items():
                if mime.startswith("image/") and mime != "image/svg+xml":
                    nbytes = len(base64.b64decode(_text(value)))
                    if nbytes > MAX_FIGURE_BYTES:
                        problems.append(f"{path.name} cell {i}: a {mime} figure of {nbytes / 1e6:.2f} MB, over the "
                                        f"{MAX_FIGURE_BYTES / 1e6:.0f} MB limit per figure")
            for text in _output_texts(out):
                if PROGRESS_RE.search(text):
                    problems.append(f"{path.name} cell {i}: progress-bar output "
                                    f"{PROGRESS_RE.search(text).group(0)!r}")
                for m in ABS_PATH_RE.finditer(text):
                    problems.append(f"{path.name} cell {i}: absolute path {m.group(0)!r} in an output")
    return problems


def clean_file(path: Path, roots=()) -> list[str]:
    """Clean one stored notebook (written back atomically, nbformat's layout); return what is still wrong."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    clean_notebook(nb, roots)
    tmp = path.with_name(path.name + ".tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, path)
    return find_problems(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="report problems, change nothing")
    mode.add_argument("--clean", action="store_true", help="clean in place, then report what is left")
    ap.add_argument("--root", action="append", default=[],
                    help="absolute path of the checkout that executed the notebooks (repeatable)")
    args = ap.parse_args(argv)
    problems = []
    for path in args.notebooks:
        if not path.exists():
            problems.append(f"{path}: no such notebook")
            continue
        found = clean_file(path, args.root) if args.clean else find_problems(path)
        problems += found
        print(f"{path}: {'clean' if not found else f'{len(found)} problem(s)'}"
              f"{' after cleaning' if args.clean else ''} ({path.stat().st_size / 1e6:.2f} MB)")
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

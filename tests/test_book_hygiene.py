"""The stored chapters hold what a reader should see: no widget state, no progress bars, no absolute
paths of the machine that executed them, no notebook over 2 MB (tests/notebook_hygiene.py)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest

from notebook_hygiene import MAX_BYTES, ROOT, clean_notebook, find_problems, relativize

BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("*.ipynb"))


def test_every_chapter_is_found():
    assert {p.stem for p in CHAPTERS} >= {"data", "metrics", "warp", "mcm", "tcae", "detection", "ablations"}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_stored_chapter_is_clean(path: Path):
    problems = find_problems(path)
    assert not problems, ("stored outputs need cleaning; run "
                          f"`python tests/notebook_hygiene.py --clean {path.relative_to(ROOT)} "
                          "--root <checkout that executed it>`:\n" + "\n".join(problems))


def _png(size: int, photographic: bool) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    if photographic:  # smooth noise: large as PNG, small as JPEG
        small = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((size, size), Image.BICUBIC)
    else:
        im = Image.new("RGB", (size, size), "white")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _dirty_notebook(root: str) -> dict:
    bar = "fit:  40%|####      | 4/10 [00:01<00:02, 3.10it/s]"
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {"x": {}}}}},
        "cells": [{
            "cell_type": "code", "execution_count": 1, "id": "a", "metadata": {}, "source": "run()",
            "outputs": [
                {"output_type": "display_data", "metadata": {},
                 "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": bar}},
                {"output_type": "stream", "name": "stderr", "text": f"\r{bar}\r{bar}\n"},
                {"output_type": "stream", "name": "stdout",
                 "text": f"reusing the finished run in {root}/.cache/mcm/cpu\nloss 0.25\n"},
                {"output_type": "display_data", "metadata": {},
                 "data": {"image/png": _png(640, True), "text/plain": "<Figure size 640x640 with 1 Axes>"}},
                {"output_type": "display_data", "metadata": {},
                 "data": {"image/png": _png(64, False), "text/plain": "<Figure size 64x64 with 1 Axes>"}},
            ]}],
    }


def test_find_problems_names_each_defect(tmp_path):
    path = tmp_path / "dirty.ipynb"
    path.write_text(json.dumps(_dirty_notebook("/srv/checkout")))
    text = "\n".join(find_problems(path))
    assert "widget state" in text
    assert "widget output" in text
    assert "progress-bar output" in text
    assert "absolute path '/srv/checkout/.cache/mcm/cpu'" in text


def test_oversized_notebook_is_reported(tmp_path):
    path = tmp_path / "big.ipynb"
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "x" * (MAX_BYTES + 10)}]}
    path.write_text(json.dumps(nb))
    assert any("over the 2 MB limit" in p for p in find_problems(path))


def test_oversized_figure_is_reported(tmp_path):
    from notebook_hygiene import MAX_FIGURE_BYTES

    path = tmp_path / "fig.ipynb"
    blob = base64.b64encode(b"\xff" * (MAX_FIGURE_BYTES + 10)).decode()
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "id": "c", "metadata": {}, "execution_count": 1, "source": "",
         "outputs": [{"output_type": "display_data", "metadata": {}, "data": {"image/jpeg": blob}}]}]}
    path.write_text(json.dumps(nb))
    assert any("over the 1 MB limit per figure" in p for p in find_problems(path))


def test_clean_notebook_removes_noise_and_keeps_results(tmp_path):
    nb = clean_notebook(_dirty_notebook("/srv/checkout"), roots=("/srv/checkout",))
    path = tmp_path / "clean.ipynb"
    path.write_text(json.dumps(nb))
    assert find_problems(path) == []
    assert "widgets" not in nb["metadata"]
    outs = nb["cells"][0]["outputs"]
    assert [o["output_type"] for o in outs] == ["stream", "display_data", "display_data"]
    assert outs[0]["text"] == "reusing the finished run in .cache/mcm/cpu\nloss 0.25\n"
    assert set(outs[1]["data"]) == {"image/jpeg", "text/plain"}  # photographic: stored as JPEG
    assert set(outs[2]["data"]) == {"image/png", "text/plain"}  # small line art: unchanged


def test_relativize_only_touches_whole_path_components():
    roots = ["/work/main"]
    assert relativize("in /work/main/.cache/x and /work/main.", roots) == "in .cache/x and .."
    assert relativize("/work/mainline/x", roots) == "/work/mainline/x"


def test_progress_bars_are_off_for_stored_outputs_and_ci(monkeypatch):
    """tests/execute_chapters.py sets AU_PROGRESS=0; chapters pass ctx.progress to every bar."""
    from au_lib.book import progress_enabled

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("AU_PROGRESS", raising=False)
    assert progress_enabled()
    monkeypatch.setenv("AU_PROGRESS", "0")
    assert not progress_enabled()
    monkeypatch.setenv("AU_PROGRESS", "1")
    monkeypatch.setenv("CI", "true")
    assert not progress_enabled()


def test_a_cache_outside_the_checkout_is_named_by_its_variable(monkeypatch):
    from notebook_hygiene import ABS_PATH_RE

    monkeypatch.setenv("AU_CACHE", "/data/au-cache")
    text = relativize("reusing the finished run in /data/au-cache/mcm/cpu", ["/work/main"])
    assert text == "reusing the finished run in $AU_CACHE/mcm/cpu"
    assert not ABS_PATH_RE.search(text)

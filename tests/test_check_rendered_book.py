"""The rendered-book check fails on what a reader offline would see broken (needs Chromium; skipped without)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import check_rendered_book as crb

BROWSER = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium on this machine (make check installs it)")


def _site(tmp_path: Path, body: str, head: str = "") -> Path:
    root = tmp_path / "html"
    root.mkdir()
    (root / "index.html").write_text(f"<!doctype html><html><head>{head}</head><body>{body}</body></html>")
    return root


def test_untypeset_math_cdn_requests_and_console_errors_fail(tmp_path, capsys):
    root = _site(tmp_path,
                 body=r'<p>F1 is <span class="math notranslate">\(\frac{2TP}{2TP+FP+FN}\)</span>.</p>'
                      r'<div class="math">\[x = \sum_i y_i\]</div><script>console.error("boom")</script>',
                 head='<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>')
    assert crb.main([str(root), "--browser", BROWSER]) == 1
    out = capsys.readouterr().out
    assert "failed request https://cdn.jsdelivr.net/npm/mathjax@3" in out
    assert "equation not typeset" in out
    assert r"raw TeX in the page text: " in out and r"\frac" in out
    assert "console error: boom" in out


def test_a_clean_page_passes_and_is_screenshotted(tmp_path, capsys):
    root = _site(tmp_path, body="<h1>Title</h1><p>No maths, no images, no errors.</p>")
    shots = tmp_path / "shots"
    assert crb.main([str(root), "--browser", BROWSER, "--screenshots", str(shots)]) == 0
    assert (shots / "index.jpg").stat().st_size > 0
    assert "0 problem(s)" in capsys.readouterr().out

#!/usr/bin/env python3
"""Open every page of the built book in headless Chromium, offline, and fail on defects.

Network requests to anything but the local server are aborted, as on a machine without network.
Checks, per page: it loads (HTTP 200); no failed request (an aborted request to a CDN counts, as
does any HTTP error); no console error and no uncaught JavaScript exception; every equation is
typeset by MathJax (no ``.math`` element left without its rendering, no MathJax error, and no raw
TeX such as ``\\[``, ``$$`` or ``\\frac`` in the page text outside code); no broken internal link
(every local ``href`` target exists); no broken image (``naturalWidth == 0``); every figure holds an
image; no Python traceback in the page text. A full-page screenshot of every page goes to
``--screenshots`` (JPEG, one per page, named after the page), kept as build artefacts.

Usage: ``python tests/check_rendered_book.py _build/html [--screenshots DIR] [--browser /usr/bin/chromium|playwright]``
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import urldefrag, urlparse

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
TRACEBACK_MARKERS = ("Traceback (most recent call last)",)
# Known, harmless upstream defect: sphinx-thebe 0.3.1 (pinned by Jupyter Book 1.x) injects its inline
# config script twice, so the second `const THEBE_JS_URL` throws. Nothing on the page depends on it.
KNOWN_UPSTREAM_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)
# TeX that MathJax would have replaced: display/inline delimiters and common commands
RAW_TEX = re.compile(r"\\\[|\\\]|\\\(|\\\)|\$\$|\\(?:frac|tfrac|dfrac|begin|end|mathrm|mathcal|mathbf|operatorname|"
                     r"sum|prod|int|sqrt|binom|left|right|lfloor|rfloor|cdot|times|lambda|alpha|beta|sigma|"
                     r"hat|bar|tilde|partial|nabla|text)(?![A-Za-z])")
# page text without code, scripts and typeset math (code may legitimately show TeX)
PROSE_JS = """() => { const b = document.body.cloneNode(true);
    b.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight').forEach(e => e.remove());
    return b.textContent; }"""
MATH_JS = """() => { const all = Array.from(document.querySelectorAll('.math'));
    return {total: all.length,
            untypeset: all.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.trim().slice(0, 80)),
            errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent.slice(0, 80))}; }"""
MATHJAX_READY_JS = "() => !!(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise)"


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D401
        pass


def pages(root: Path) -> list[Path]:
    skip = {"_static", "_sources", "_images", "_sphinx_design_static", "_panels_static"}
    return sorted(p for p in root.rglob("*.html") if not (set(p.relative_to(root).parts) & skip)
                  and p.name not in ("genindex.html", "search.html"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path)
    ap.add_argument("--screenshots", type=Path, default=None)
    ap.add_argument("--browser", default=shutil.which("chromium") or "/usr/bin/chromium",
                    help="Chromium executable, or 'playwright' for Playwright's own build "
                         "(`python -m playwright install chromium`, as in the GitHub workflow)")
    args = ap.parse_args(argv)
    root = args.html.resolve()
    if not (root / "index.html").exists():
        print(f"{root}: no index.html; build the book first (make book)")
        return 1
    bundled = args.browser == "playwright"
    if not bundled and not Path(args.browser).exists():
        print(f"no Chromium at {args.browser}: install Debian's chromium (apt-get install chromium)")
        return 1
    from playwright.sync_api import sync_playwright

    server, base = serve(root)
    problems: list[str] = []
    counts: dict[str, int] = {}
    all_pages = pages(root)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=None if bundled else args.browser, headless=True,
                                     args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
                      else route.abort())
        for path in all_pages:
            rel = path.relative_to(root).as_posix()
            url = base + rel
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc, errors=errors: errors.append(f"JavaScript error: {exc}"))
            page.on("console", lambda msg, errors=errors: errors.append(f"console error: {msg.text}")
                    if msg.type == "error" else None)
            page.on("requestfailed", lambda req, errors=errors: errors.append(
                f"failed request {req.url[:120]} ({req.failure})"))
            page.on("response", lambda r, errors=errors: errors.append(f"HTTP {r.status} for {r.url[:120]}")
                    if r.status >= 400 else None)
            resp = page.goto(url, wait_until="load", timeout=30000)
            if resp is None or resp.status != 200:
                problems.append(f"{rel}: did not load (status {resp.status if resp else 'none'})")
                page.close()
                continue
            page.wait_for_load_state("networkidle", timeout=30000)
            if page.url.split("#")[0] != url:  # a redirect page (index.html): check where it leads
                page.wait_for_load_state("load", timeout=30000)
            math = page.evaluate(MATH_JS)
            if math["total"]:
                try:
                    page.wait_for_function(MATHJAX_READY_JS, timeout=20000)
                    page.evaluate("() => window.MathJax.startup.promise.then(() => true)")
                except Exception as exc:  # noqa: BLE001 - report, do not crash the whole check
                    problems.append(f"{rel}: MathJax did not start ({str(exc).splitlines()[0][:120]})")
                math = page.evaluate(MATH_JS)
                problems += [f"{rel}: equation not typeset: {t!r}" for t in math["untypeset"][:5]]
                if len(math["untypeset"]) > 5:
                    problems.append(f"{rel}: ... {len(math['untypeset']) - 5} more equations not typeset")
                problems += [f"{rel}: MathJax error in an equation: {t!r}" for t in math["errors"]]
            page.wait_for_load_state("networkidle", timeout=30000)
            page.wait_for_timeout(100)
            own_errors = [e for e in errors if not any(k in e for k in KNOWN_UPSTREAM_ERRORS)]
            problems += [f"{rel}: {e[:240]}" for e in own_errors]
            prose = page.evaluate(PROSE_JS)
            raw = sorted({m.group(0) for m in RAW_TEX.finditer(prose)})
            if raw:
                problems.append(f"{rel}: raw TeX in the page text: {' '.join(raw[:10])}")
            text = page.inner_text("body")
            counts[rel] = math["total"]
            for marker in TRACEBACK_MARKERS:
                if marker in text:
                    problems.append(f"{rel}: a Python traceback is shown in the page")
            broken = page.evaluate("""() => Array.from(document.images)
                .filter(i => i.complete && i.naturalWidth === 0).map(i => i.getAttribute('src'))""")
            problems += [f"{rel}: broken image {src}" for src in broken]
            empty_figs = page.evaluate("""() => Array.from(document.querySelectorAll('figure'))
                .filter(f => !f.querySelector('img, svg, canvas, table')).length""")
            if empty_figs:
                problems.append(f"{rel}: {empty_figs} figure(s) without an image")
            hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
            for href in hrefs:
                target, _ = urldefrag(href)
                if not target.startswith(base):
                    continue
                local = root / urlparse(target).path.lstrip("/")
                if local.is_dir():
                    local = local / "index.html"
                if not local.exists():
                    problems.append(f"{rel}: broken link to {urlparse(target).path}")
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                shot = args.screenshots / (rel.removesuffix(".html").replace("/", "__") + ".jpg")
                page.screenshot(path=str(shot), full_page=True, type="jpeg", quality=70)
            page.close()
        browser.close()
    server.shutdown()
    print(f"checked {len(all_pages)} pages in headless Chromium, offline: {sum(counts.values())} equations, "
          f"{len(problems)} problem(s)"
          + (f"; screenshots in {args.screenshots}" if args.screenshots else ""))
    for p in sorted(set(problems)):
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

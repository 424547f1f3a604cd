"""The GPU check's report: its format, a validating loader, and the summary the speed appendix shows.

``bench/gpu_check.py`` (``make gpu-check``) runs the project's CUDA work in one budgeted pass (CUDA
tests, the warp and MCM benchmarks, short ``paper``-profile trainings) and writes ONE JSON report.
This module is the contract between that driver and its readers:

- :data:`SCHEMA`, :data:`STATUSES`, :func:`validate_report`: what a report must hold;
- :func:`load_gpu_check`: read and validate the stored report (``bench/results/gpu_check.json``),
  ``None`` when no GPU run has been stored;
- :func:`gpu_check_lines` / :func:`show_gpu_check`: the text the speed appendix prints.

A report::

    {"schema": "au_lib.gpu_check/1", "mode": "cuda" | "cpu-dry-run" | "no-cuda", "complete": bool,
     "provenance": {"commit", "date_start", "date_end", "device", "torch", "triton", ...},
     "sections": [{"name", "status": "ok" | "failed" | "skipped", "reason", "error", "seconds",
                   "budget_s", "command", "output_tail", "result": {...}}, ...],
     "targets": [{"name", "section", "value", "target", "unit", "higher_is_better", "met"}, ...],
     "counts": {"ok": n, "failed": n, "skipped": n}}

Only a report of ``mode == "cuda"`` holds GPU numbers; the other modes exist to test the driver.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from au_lib.provenance import REPO_ROOT

SCHEMA = "au_lib.gpu_check/1"
STATUSES: tuple[str, ...] = ("ok", "failed", "skipped")
MODES: tuple[str, ...] = ("cuda", "cpu-dry-run", "no-cuda")
DEFAULT_REPORT = REPO_ROOT / "bench" / "results" / "gpu_check.json"
"""Where a GPU run's report is stored in the repository (and read by the speed appendix)."""

_SECTION_KEYS = ("name", "status", "seconds", "budget_s", "result")
_PROVENANCE_KEYS = ("commit", "date_start", "device", "torch")


class GPUCheckReportError(ValueError):
    """A GPU-check report exists but is not a valid report (the message names the file)."""


def validate_report(report: Any) -> list[str]:
    """Problems with a GPU-check report (empty list: valid). Checks structure, not numbers."""
    problems: list[str] = []
    if not isinstance(report, dict):
        return [f"report must be a JSON object, got {type(report).__name__}"]
    if report.get("schema") != SCHEMA:
        problems.append(f"schema is {report.get('schema')!r}, expected {SCHEMA!r}")
    if report.get("mode") not in MODES:
        problems.append(f"mode is {report.get('mode')!r}, expected one of {MODES}")
    if not isinstance(report.get("complete"), bool):
        problems.append("'complete' must be true or false")
    prov = report.get("provenance")
    if not isinstance(prov, dict):
        problems.append("'provenance' must be an object")
    else:
        problems += [f"provenance lacks {k!r}" for k in _PROVENANCE_KEYS if k not in prov]
    sections = report.get("sections")
    if not isinstance(sections, list):
        problems.append("'sections' must be a list")
        sections = []
    names = []
    for i, s in enumerate(sections):
        if not isinstance(s, dict):
            problems.append(f"sections[{i}] must be an object")
            continue
        names.append(s.get("name"))
        problems += [f"sections[{i}] ({s.get('name')!r}) lacks {k!r}" for k in _SECTION_KEYS if k not in s]
        status = s.get("status")
        if status not in STATUSES:
            problems.append(f"sections[{i}] ({s.get('name')!r}) has status {status!r}, expected one of {STATUSES}")
        if status == "skipped" and not s.get("reason"):
            problems.append(f"sections[{i}] ({s.get('name')!r}) is skipped without a reason")
        if status == "failed" and not s.get("error"):
            problems.append(f"sections[{i}] ({s.get('name')!r}) failed without an error text")
    if len(set(names)) != len(names):
        problems.append(f"section names repeat: {names}")
    counts = report.get("counts")
    if isinstance(counts, dict) and isinstance(sections, list):
        real = {st: sum(1 for s in sections if isinstance(s, dict) and s.get("status") == st) for st in STATUSES}
        if {k: counts.get(k) for k in STATUSES} != real:
            problems.append(f"counts {counts} disagree with the sections {real}")
    else:
        problems.append("'counts' must be an object")
    if not isinstance(report.get("targets", []), list):
        problems.append("'targets' must be a list")
    return problems


def load_gpu_check(path: str | Path | None = None) -> dict | None:
    """The stored GPU-check report, or ``None`` if there is none at ``path``.

    ``path`` defaults to :data:`DEFAULT_REPORT`. Raises :class:`GPUCheckReportError` naming the file
    when it is unreadable or not a valid report.
    """
    path = Path(path) if path is not None else DEFAULT_REPORT
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GPUCheckReportError(f"{path}: not a readable JSON file ({e})") from None
    problems = validate_report(report)
    if problems:
        raise GPUCheckReportError(f"{path}: not a valid GPU-check report: " + "; ".join(problems))
    return report


def _fmt(v: Any, unit: str = "") -> str:
    if isinstance(v, float):
        if unit == "%":
            return f"{100 * v:.1f} %"
        return f"{v:.3g}{(' ' + unit) if unit else ''}"
    return f"{v}{(' ' + unit) if unit else ''}"


def gpu_check_lines(report: dict) -> list[str]:
    """Human-readable lines for a (valid) report: provenance, each section, each target met/missed."""
    p = report["provenance"]
    lines = [f"GPU check ({report['mode']}{'' if report['complete'] else ', INCOMPLETE'}): device {p.get('device')} · "
             f"commit {p.get('commit')} · {p.get('date_start')} · torch {p.get('torch')} · "
             f"triton {p.get('triton', '-')}"]
    if report["mode"] != "cuda":
        lines.append("  this report did not run on a GPU: it holds no GPU numbers")
    for s in report["sections"]:
        extra = s.get("reason") if s["status"] == "skipped" else s.get("error") if s["status"] == "failed" else ""
        head = s.get("result", {}).get("headline", "") if s["status"] != "skipped" else ""
        text = "; ".join(t for t in (head, extra) if t)
        lines.append(f"  {s['name']:<14} {s['status']:<8} {s['seconds']:6.0f} s"
                     + (f"  {text.splitlines()[0][:160]}" if text else ""))
    for t in report.get("targets", []):
        cmp = ">=" if t.get("higher_is_better", True) else "<="
        verdict = "met" if t.get("met") else ("MISSED" if t.get("met") is False else "not measured")
        lines.append(f"  target {t['name']}: {_fmt(t.get('value'), t.get('unit', ''))} "
                     f"(target {cmp} {_fmt(t.get('target'), t.get('unit', ''))}): {verdict}")
    return lines


def show_gpu_check(path: str | Path | None = None) -> dict | None:
    """Print the stored GPU-check report's summary (or say that none is stored); return the report."""
    report = load_gpu_check(path)
    where = Path(path) if path is not None else DEFAULT_REPORT
    if report is None:
        try:
            shown = where.relative_to(REPO_ROOT)
        except ValueError:
            shown = where
        print(f"No GPU check is stored ({shown} does not exist): the GPU targets have not been measured. "
              "Run `make gpu-check` on a CUDA machine and store its JSON there.")
        return None
    print("\n".join(gpu_check_lines(report)))
    return report


__all__ = ["SCHEMA", "STATUSES", "MODES", "DEFAULT_REPORT", "GPUCheckReportError", "validate_report",
           "load_gpu_check", "gpu_check_lines", "show_gpu_check"]

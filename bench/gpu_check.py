#!/usr/bin/env python3
"""The GPU check: everything in the project that needs CUDA, in one budgeted pass, into ONE JSON report.

Sections, in order (each runs as its own process group under its own time limit; a failure, a crash
or a timeout is recorded with its error text and the next section still runs):

============  ===========================================================================================
cuda_tests    the CUDA tests: Triton warp forward/backward and fused mix against the PyTorch path and
              ``grid_sample``, bf16 autocast paths (tests marked ``cuda``)
bench_warp    ``bench/bench_warp.py --device cuda``: ours against the official code's grid_sample path,
              TCAE's 64 x 3 x 256 x 256 and smaller sizes, same run (target: >= 1.5x faster)
bench_mcm     ``bench/bench_mcm.py --no-cpu``: ours (bf16, SDPA, torch.compile) against the reference
              MAE configurations, images/s, MFU of ViT-B/16 at 224 against the dense bf16 peak, peak
              memory, at batch 256 (targets: >= 1.5x the reference, MFU >= 40 %)
pretrain_mcm  ``au-lib pretrain --profile paper`` for a few hundred steps on random RGB-D-T images:
              the loss must fall
train_tcae    paper-profile TCAE (256 x 256, batch 64; Adam) for 300 steps on 2048 toy pairs:
              the loss must fall
chapter       one ``paper``-profile chapter executed end to end (nbclient), only if time is left
============  ===========================================================================================

The report (format: :mod:`au_lib.gpu_check`) is rewritten atomically after every section, so a run
that is killed still leaves what it measured. On a machine without CUDA every section is reported as
skipped with the reason; ``--cpu-dry-run`` instead runs each section at smoke sizes on the CPU to test
this driver (its numbers are not GPU numbers and the report says so).

Usage::

    bench/gpu_check.sh                         # = python bench/gpu_check.py (make gpu-check)
    python bench/gpu_check.py --out $OUT/gpu_check.json --budget 540
    python bench/gpu_check.py --only cuda_tests,bench_warp --section-budget bench_warp=120
    python bench/gpu_check.py --list

The default report path is ``bench/results/gpu_check.json`` on a CUDA machine (commit it) and
``.cache/gpu_check/gpu_check.json`` elsewhere; a stored CUDA report is never replaced by one made
without CUDA. Where the tree was copied without ``.git``, set ``AU_GIT_COMMIT`` to the commit.
Exit status: 0 if no section failed, 1 if one did, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.util
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from au_lib.gpu_check import DEFAULT_REPORT, SCHEMA, STATUSES, load_gpu_check, validate_report  # noqa: E402
from au_lib.provenance import atomic_write_json  # noqa: E402

DEFAULT_BUDGET_S = 540.0   # 9 minutes on one GPU, all sections together
DRY_RUN_REPORT = ROOT / ".cache" / "gpu_check" / "gpu_check.json"
GRACE_S = 8.0              # kept back from the budget for stopping a child and writing the report
TAIL_CHARS = 4000          # how much of a section's output the report keeps


class CheckFailed(Exception):
    """A section ran but its check failed (tests failed, the loss did not fall); ``result`` holds what it measured."""

    def __init__(self, message: str, result: dict | None = None) -> None:
        super().__init__(message)
        self.result = result or {}


@dataclass
class Context:
    """What every section sees: the repository, its scratch folder, the mode and the chapter to run."""

    root: Path
    work: Path
    mode: str                      # "cuda" | "cpu-dry-run" | "no-cuda"
    python: str = sys.executable
    chapter: str = "warp"

    @property
    def dry(self) -> bool:
        return self.mode == "cpu-dry-run"


@dataclass
class Section:
    """One part of the check.

    ``command(ctx, wd)`` gives the child's argv (run in ``ctx.root``, scratch folder ``wd``);
    ``collect(ctx, wd, output)`` reads what the child wrote and returns the section's result dict
    (with a ``headline`` and optional ``targets``), raising :class:`CheckFailed` when a check fails.
    ``unavailable(ctx)`` returns a reason to skip the section, or ``None``.
    """

    name: str
    about: str
    budget_s: float
    min_s: float
    command: Callable[[Context, Path], list[str]]
    collect: Callable[[Context, Path, str], dict]
    needs_cuda: bool = True
    env: Callable[[Context], dict] = field(default=lambda ctx: {})
    unavailable: Callable[[Context], str | None] = field(default=lambda ctx: None)


# --------------------------------------------------------------------------------------------------
# result readers (pure functions of files; tested on CPU)
# --------------------------------------------------------------------------------------------------
def parse_junit(path: Path) -> dict:
    """Counts and per-test outcomes from a pytest ``--junitxml`` file."""
    root = ET.parse(path).getroot()
    cases = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for tag, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            el = case.find(tag)
            if el is not None:
                outcome = name
                message = (el.get("message") or el.text or "").strip()[:600]
                break
        cases.append({"test": f"{case.get('classname', '')}::{case.get('name', '')}", "outcome": outcome,
                      "seconds": float(case.get("time") or 0.0), **({"message": message} if message else {})})
    counts = {k: sum(1 for c in cases if c["outcome"] == k) for k in ("passed", "failed", "error", "skipped")}
    return {**counts, "cases": cases}


def loss_curve(run_dir: Path, key: str) -> list[dict]:
    """The logged ``(step, loss)`` points of a training run folder, oldest first.

    Reads ``log.jsonl`` (rows with ``key``; MCM pre-training logs ``kind == "epoch"`` rows, TCAE rows
    every ``log_every`` steps); falls back to a result file's ``extra.history`` (``summary.json``).
    """
    rows: list[dict] = []
    log = run_dir / "log.jsonl"
    if log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                r = json.loads(line)
                if isinstance(r, dict) and key in r and r.get("kind", "epoch") == "epoch":
                    rows.append(r)
    if not rows:
        for name in ("summary.json", "result.json"):
            f = run_dir / name
            if f.is_file():
                hist = json.loads(f.read_text(encoding="utf-8")).get("extra", {}).get("history", [])
                rows = [r for r in hist if isinstance(r, dict) and key in r]
                if rows:
                    break
    return [{"step": r.get("step"), "epoch": r.get("epoch"), "loss": float(r[key]),
             **({"images_per_s": r["images_per_s"]} if "images_per_s" in r else {})} for r in rows]


def loss_falls(points: list[dict], what: str) -> dict:
    """Result of a "the loss falls" check; raises :class:`CheckFailed` when it does not."""
    if len(points) < 2:
        raise CheckFailed(f"{what}: {len(points)} logged loss point(s), need at least 2 to see a trend",
                          {"points": points})
    first, last = points[0]["loss"], points[-1]["loss"]
    speeds = [p["images_per_s"] for p in points[1:] if "images_per_s" in p]
    res = {"points": points, "first_loss": first, "last_loss": last, "steps": points[-1].get("step"),
           "falls": last < first,
           "headline": f"{what} loss {first:.4g} -> {last:.4g} over {points[-1].get('step')} steps"
                       + (f", {sorted(speeds)[len(speeds) // 2]:.0f} images/s" if speeds else "")}
    if speeds:
        res["images_per_s_median"] = sorted(speeds)[len(speeds) // 2]
    if not last < first:
        raise CheckFailed(f"{what}: the loss did not fall ({first:.4g} -> {last:.4g})", res)
    return res


def target(name: str, value: float | None, goal: float, unit: str = "x", higher_is_better: bool = True) -> dict:
    """One target row of the report (``met`` is ``None`` when the value was not measured)."""
    met = None if value is None else (value >= goal if higher_is_better else value <= goal)
    return {"name": name, "value": value, "target": goal, "unit": unit, "higher_is_better": higher_is_better,
            "met": met}


def warp_result(data: dict) -> dict:
    """Speed-ups of ours against the official grid_sample path, from ``bench_warp.json``."""
    rows = []
    for r in data["rows"]:
        if "ratio_ours_vs_official" in r:
            rows.append({"shape": r["shape"], "grads": r["grads"], "official_ms": r["official_ms"],
                         "grid_sample_ms": r["grid_sample_ms"], "ours_ms": r["ours_ms"],
                         "ours_torch_ms": r["ours_torch_ms"],
                         "speedup_vs_official": r["official_ms"] / r["ours_ms"],
                         "speedup_vs_grid_sample": r["grid_sample_ms"] / r["ours_ms"]})
        elif "ratio_mixed_ours_vs_unfused" in r:
            rows.append({"shape": r["shape"], "grads": "mixed", "unfused_ms": r["mixed_unfused_grid_sample_ms"],
                         "ours_ms": r["mixed_ours_ms"],
                         "speedup_vs_unfused": r["mixed_unfused_grid_sample_ms"] / r["mixed_ours_ms"]})
    targets = []
    for grads in ("disp", "both"):
        hit = [r for r in rows if r["shape"] == [64, 3, 256, 256] and r["grads"] == grads]
        targets.append(target(f"warp fwd+bwd speed-up vs official grid_sample, 64x3x256x256, grads={grads}",
                              hit[0]["speedup_vs_official"] if hit else None, 1.5))
    mixed = [r for r in rows if r["shape"] == [64, 3, 256, 256] and r["grads"] == "mixed"]
    head = ", ".join(f"grads={t['name'].rsplit('=', 1)[1]} {t['value']:.2f}x" for t in targets if t["value"])
    return {"rows": rows, "device": data.get("provenance", {}).get("device"), "targets": targets,
            "headline": f"64x3x256x256 speed-up vs official: {head or 'not measured'}"
                        + (f"; fused mix {mixed[0]['speedup_vs_unfused']:.2f}x" if mixed else "")}


def mcm_result(data: dict, dry: bool) -> dict:
    """Images/s ratios, MFU and peak memory from ``bench_mcm.json``."""
    g = data.get("gpu")
    if g is None:
        if not dry:
            raise CheckFailed("bench_mcm.json has no GPU part", {"bench": data})
        c = data["cpu"]
        return {"cpu": c, "headline": f"CPU dry run: ours/mae3 {c['ratio_vs_mae3']:.2f}x (not a GPU number)",
                "targets": []}
    ref = g["refs_fp32_ours_bf16_compile"]
    alone = g["ours_bf16_compile_mfu_batch"]
    res = {"device": g["device"], "batch": g["gpu_batch"], "mfu_batch": g["mfu_batch"],
           "images_per_s": {k: ref[k]["images_per_s"] for k in ("mae", "mae3", "ours")},
           "ratio_vs_mae": ref["ratio_vs_mae"], "ratio_vs_mae3": ref["ratio_vs_mae3"],
           "mfu": g.get("mfu"), "peak_bf16_flops": g.get("peak_bf16_flops"),
           "train_flops_per_image": g.get("train_flops_per_image"),
           "peak_mem_gib": alone["ours"].get("peak_mem_gib")}
    res["targets"] = [
        target(f"MCM pre-training images/s, ours / reference MAE with 3 decoders (batch {g['gpu_batch']})",
               ref["ratio_vs_mae3"], 1.5),
        target(f"MCM pre-training images/s, ours / plain reference MAE (batch {g['gpu_batch']})",
               ref["ratio_vs_mae"], 1.5),
        target(f"MFU of ViT-B/16 MCM at 224 (batch {g['mfu_batch']}, dense bf16 peak)", g.get("mfu"), 0.40, "%"),
    ]
    mfu = f"{100 * g['mfu']:.1f} %" if g.get("mfu") is not None else "unknown"
    res["headline"] = (f"ours {res['images_per_s']['ours']:.0f} img/s = {ref['ratio_vs_mae3']:.2f}x mae3, "
                       f"{ref['ratio_vs_mae']:.2f}x mae; MFU {mfu}; peak {res['peak_mem_gib']:.1f} GiB")
    return res


# --------------------------------------------------------------------------------------------------
# the sections
# --------------------------------------------------------------------------------------------------
CUDA_TEST_FILES = ("tests/test_device_paths.py", "tests/test_warp_triton.py")


def _tests_cmd(ctx: Context, wd: Path) -> list[str]:
    # the tests marked ``cuda``; a dry run takes the CPU variants of the same checks instead
    files = CUDA_TEST_FILES[:1] if ctx.dry else CUDA_TEST_FILES
    return [ctx.python, "-m", "pytest", *files, "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist",
            "-m", "not cuda" if ctx.dry else "cuda", f"--junitxml={wd / 'junit.xml'}"]


def _tests_collect(ctx: Context, wd: Path, output: str) -> dict:
    res = parse_junit(wd / "junit.xml")
    res["headline"] = f"{res['passed']} passed, {res['failed']} failed, {res['error']} errors, {res['skipped']} skipped"
    if res["failed"] or res["error"]:
        bad = [c["test"] for c in res["cases"] if c["outcome"] in ("failed", "error")]
        raise CheckFailed(f"{res['failed'] + res['error']} CUDA test(s) failed: {', '.join(bad)}", res)
    if not res["passed"]:
        raise CheckFailed("no CUDA test ran (all skipped or none collected)", res)
    return res


def _warp_cmd(ctx: Context, wd: Path) -> list[str]:
    dev = ["--device", "cpu", "--reps", "1"] if ctx.dry else ["--device", "cuda"]
    return [ctx.python, "bench/bench_warp.py", *dev, "--out", str(wd)]


def _warp_collect(ctx: Context, wd: Path, output: str) -> dict:
    return warp_result(json.loads((wd / "bench_warp.json").read_text(encoding="utf-8")))


def _mcm_cmd(ctx: Context, wd: Path) -> list[str]:
    if ctx.dry:
        sizes = ["--profile", "smoke", "--batch", "4", "--repeats", "1", "--warmup", "0"]
    else:
        sizes = ["--no-cpu", "--gpu-batch", "256", "--mfu-batch", "256", "--repeats", "3", "--warmup", "2"]
    return [ctx.python, "bench/bench_mcm.py", *sizes, "--out", str(wd)]


def _mcm_collect(ctx: Context, wd: Path, output: str) -> dict:
    return mcm_result(json.loads((wd / "bench_mcm.json").read_text(encoding="utf-8")), ctx.dry)


def _device(ctx: Context) -> list[str]:
    return ["--device", "cpu" if ctx.dry else "cuda"]


def _pretrain_cmd(ctx: Context, wd: Path) -> list[str]:
    if ctx.dry:
        size = ["--profile", "smoke", "--epochs", "3", "--num-samples", "64", "--num-workers", "0"]
    else:  # paper model, lr rule, schedule and AMP; 8 epochs x 32 steps of batch 128 (no accumulation)
        size = ["--profile", "paper", "--epochs", "8", "--num-samples", "4096", "--batch-size", "128",
                "--accum-iter", "1", "--warmup-epochs", "1", "--save-every", "8"]
    return [ctx.python, "-m", "au_lib", "pretrain", "--data", "random", *size, "--save-epochs=",
            "--out", str(wd / "mcm"), "--no-resume", "--no-progress", *_device(ctx)]


def _pretrain_collect(ctx: Context, wd: Path, output: str) -> dict:
    res = loss_falls(loss_curve(wd / "mcm", "loss"), "MCM pre-training")
    res["settings"] = "paper model and lr rule; random RGB-D-T images; batch 128, 8 epochs" if not ctx.dry else "smoke"
    return res


def tcae_child(out: Path, dry: bool = False, steps: int | None = None, log_every: int | None = None) -> int:
    """The 'train_tcae' section's child: paper-profile TCAE on toy pairs, logged every 25 steps.

    Through the library rather than ``au-lib train-tcae``: the command line has no pair-count or
    logging option, and its 64 toy pairs (one batch per epoch) would starve the GPU. Adam at lr 1e-3
    instead of the paper's SGD, which barely moves in a few hundred updates (see ``TRAIN_PROFILES``).
    """
    from au_lib.train.tcae import ToyPairs, train_config, train_tcae

    if dry:
        cfg = train_config("smoke", steps=steps or 30, num_workers=0, log_every=log_every or 10)
    else:
        cfg = train_config("paper", steps=steps or 300, optimizer="adam", lr=1e-3, log_every=log_every or 25,
                           checkpoint_every=steps or 300)
    pairs = ToyPairs(n=max(2048 if not dry else 64, cfg.batch_size), image_size=cfg.model.image_size, seed=cfg.seed)
    run = train_tcae(cfg, out, data=pairs, device="cpu" if dry else "cuda", progress=False, resume=False,
                     profile="smoke" if dry else "paper")
    print(f"train_tcae: {run.step} steps, {run.wall_time_s:.0f} s, last row {run.history[-1] if run.history else None}")
    return 0


def _tcae_cmd(ctx: Context, wd: Path) -> list[str]:
    return [ctx.python, "bench/gpu_check.py", "--train-tcae-child", str(wd / "tcae"),
            *(["--cpu-dry-run"] if ctx.dry else [])]


def _tcae_collect(ctx: Context, wd: Path, output: str) -> dict:
    res = loss_falls(loss_curve(wd / "tcae", "total"), "TCAE training")
    res["settings"] = ("paper model, 256x256, batch 64; Adam lr 1e-3 instead of SGD; 2048 toy pairs"
                       if not ctx.dry else "smoke")
    return res


def execute_chapter(src: Path, dst: Path, timeout_s: int = 900) -> int:
    """Execute one chapter with nbclient (profile from ``$AU_PROFILE``) into ``dst``; the book is untouched."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(src, as_version=4)
    NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                   resources={"metadata": {"path": str(Path(src).resolve().parent)}}).execute()
    nbformat.write(nb, dst)
    print(f"executed {src} ({len(nb.cells)} cells) under AU_PROFILE={os.environ.get('AU_PROFILE')}")
    return 0


def _chapter_unavailable(ctx: Context) -> str | None:
    missing = [m for m in ("nbclient", "nbformat", "ipykernel") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{', '.join(missing)} not installed here: cannot execute a chapter (carry their wheels)"
    if not (ctx.root / "book" / f"{ctx.chapter}.ipynb").is_file():
        return f"no chapter book/{ctx.chapter}.ipynb"
    return None


def _chapter_cmd(ctx: Context, wd: Path) -> list[str]:
    return [ctx.python, "bench/gpu_check.py", "--execute-chapter", f"book/{ctx.chapter}.ipynb",
            str(wd / f"{ctx.chapter}.ipynb")]


def _chapter_collect(ctx: Context, wd: Path, output: str) -> dict:
    return {"chapter": ctx.chapter, "headline": f"book/{ctx.chapter}.ipynb executed in the "
                                                 f"{'smoke' if ctx.dry else 'paper'} profile"}


SECTIONS: list[Section] = [
    Section("cuda_tests", "Triton warp fwd/bwd and fused mix vs the PyTorch path and grid_sample; bf16 autocast",
            110, 30, _tests_cmd, _tests_collect),
    Section("bench_warp", "warp fwd+bwd vs the official grid_sample path, 64x3x256x256 and smaller",
            60, 25, _warp_cmd, _warp_collect),
    Section("bench_mcm", "MCM step (bf16, SDPA, torch.compile) vs reference MAE; MFU; peak memory, batch 256",
            190, 90, _mcm_cmd, _mcm_collect),
    Section("pretrain_mcm", "paper-profile MCM pre-training, 256 steps: the loss falls",
            80, 45, _pretrain_cmd, _pretrain_collect),
    Section("train_tcae", "paper-profile TCAE training, 300 steps at 256x256: the loss falls",
            85, 45, _tcae_cmd, _tcae_collect),
    Section("chapter", "one paper-profile chapter end to end, if time is left",
            240, 150, _chapter_cmd, _chapter_collect,
            env=lambda ctx: {"AU_PROFILE": "smoke" if ctx.dry else "paper"}, unavailable=_chapter_unavailable),
]


# --------------------------------------------------------------------------------------------------
# running a section under its budget
# --------------------------------------------------------------------------------------------------
def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


_CHILD: subprocess.Popen | None = None


def _kill_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):  # grandchildren of a finished child
        os.killpg(proc.pid, signal.SIGKILL)


def run_child(argv: list[str], cwd: Path, env: dict, log: Path, limit_s: float) -> tuple[int | None, bool]:
    """Run ``argv`` in a new process group, output to ``log``; ``(exit code, timed_out)``."""
    global _CHILD
    with open(log, "wb") as fh:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        _CHILD = proc
        try:
            rc = proc.wait(timeout=max(limit_s, 0.1))
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc, timed_out = proc.returncode, True
        finally:
            _CHILD = None
    if not timed_out:  # a section must not leave workers behind (DataLoader, compile pools)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return rc, timed_out


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else "(no output)"


def run_section(sec: Section, ctx: Context, deadline: float, clock: Callable[[], float] = time.monotonic) -> dict:
    """Run one section within ``min(sec.budget_s, time left before deadline)``; the report entry."""
    entry = {"name": sec.name, "about": sec.about, "status": "skipped", "reason": "", "error": "",
             "seconds": 0.0, "budget_s": sec.budget_s, "command": "", "output_tail": "", "result": {}}
    if sec.needs_cuda and ctx.mode == "no-cuda":
        entry["reason"] = "CUDA is not available on this machine (torch.cuda.is_available() is False)"
        return entry
    why = sec.unavailable(ctx)
    if why:
        entry["reason"] = why
        return entry
    left = deadline - clock() - GRACE_S
    if left < sec.min_s:
        entry["reason"] = (f"not started: {max(left, 0):.0f} s of the run's budget left, "
                           f"the section needs at least {sec.min_s:.0f} s")
        return entry
    limit = min(sec.budget_s, left)
    wd = ctx.work / sec.name
    wd.mkdir(parents=True, exist_ok=True)
    argv = sec.command(ctx, wd)
    entry["command"] = shlex.join(str(a) if a != ctx.python else "python" for a in argv)
    entry["limit_s"] = round(limit, 1)
    env = dict(os.environ, PYTHONUNBUFFERED="1", **sec.env(ctx))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ctx.root), os.environ.get("PYTHONPATH", "")) if p)
    log = wd / "output.log"
    print(f"== {sec.name} (limit {limit:.0f} s): {entry['command']}", flush=True)
    t0 = clock()
    try:
        rc, timed_out = run_child(argv, ctx.root, env, log, limit)
    except OSError as e:
        entry.update(status="failed", error=f"could not start: {e}")
        return entry
    entry["seconds"] = round(clock() - t0, 1)
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    entry["output_tail"] = text[-TAIL_CHARS:]
    if timed_out or rc != 0:
        entry["status"] = "failed"
        entry["error"] = (f"timed out: stopped after its {limit:.0f} s limit" if timed_out
                          else f"exit code {rc}: {_last_line(text)}")
        with contextlib.suppress(Exception):  # whatever it wrote before it stopped
            entry["result"] = sec.collect(ctx, wd, text)
        return entry
    try:
        entry["result"] = sec.collect(ctx, wd, text)
        entry["status"] = "ok"
    except CheckFailed as e:
        entry.update(status="failed", error=str(e), result=e.result)
    except Exception as e:  # noqa: BLE001 - a reader bug must not lose the other sections
        entry.update(status="failed", error=f"could not read its results: {type(e).__name__}: {e}")
    return entry


# --------------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------------
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def provenance(mode: str, budget_s: float, argv: list[str]) -> dict:
    """Where the report comes from: commit, dates, device, library versions, budget."""
    import torch

    from au_lib.provenance import device_name, git_commit

    commit = git_commit()
    source = "git"
    if commit == "unknown" and os.environ.get("AU_GIT_COMMIT"):
        commit, source = os.environ["AU_GIT_COMMIT"], "AU_GIT_COMMIT"
    prov = {"commit": commit, "commit_source": source, "date_start": _now(), "date_end": None,
            "device": "unknown", "torch": torch.__version__, "cuda": torch.version.cuda,
            "triton": _version("triton"), "timm": _version("timm"), "python": platform.python_version(),
            "platform": platform.platform(), "cpu_count": os.cpu_count(), "budget_s": budget_s, "argv": argv}
    try:
        prov["device"] = device_name("cuda" if mode == "cuda" else "cpu")
        if mode == "cuda":
            props = torch.cuda.get_device_properties(0)
            prov.update(device_count=torch.cuda.device_count(), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                        multiprocessors=props.multi_processor_count)
    except Exception as e:  # noqa: BLE001 - the sections say what is wrong with the device
        prov["device_error"] = f"{type(e).__name__}: {e}"
    smi = shutil.which("nvidia-smi") if mode == "cuda" else None
    if smi:
        with contextlib.suppress(Exception):
            prov["driver"] = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=20).stdout.strip()
    return prov


def build_report(mode: str, prov: dict, entries: list[dict], complete: bool) -> dict:
    """The report dict for the sections run so far."""
    targets = []  # targets are about GPU numbers: a run without CUDA has none
    for e in entries if mode == "cuda" else []:
        for t in e.get("result", {}).get("targets", []):
            targets.append({**t, "section": e["name"]})
    return {"schema": SCHEMA, "mode": mode, "complete": complete, "provenance": prov, "sections": entries,
            "targets": targets, "counts": {s: sum(1 for e in entries if e["status"] == s) for s in STATUSES}}


def write_report(path: Path, report: dict) -> Path:
    """Validate and write the report atomically (a reader never sees half a file)."""
    problems = validate_report(report)
    if problems:
        raise ValueError("gpu_check: refusing to write an invalid report: " + "; ".join(problems))
    return atomic_write_json(path, report)


def _guard_existing(path: Path, mode: str) -> str | None:
    """Why ``path`` must not be replaced by a report of ``mode`` (a stored CUDA report), else ``None``."""
    if mode == "cuda" or not path.is_file():
        return None
    try:
        old = load_gpu_check(path)
    except ValueError:
        return None
    if old is not None and old["mode"] == "cuda":
        return (f"{path} holds a report measured on a GPU ({old['provenance'].get('device')}); "
                f"a {mode} run does not replace it: pass another --out")
    return None


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------
def _names(text: str, known: list[str], flag: str, parser: argparse.ArgumentParser) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in known]
    if bad or not names:
        parser.error(f"{flag}: unknown section(s) {bad or text!r}; choose from {', '.join(known)}")
    return names


def parse_args(argv: list[str] | None, sections: list[Section]) -> tuple[argparse.Namespace, list[Section]]:
    """Parse the command line; returns the arguments and the sections to run (budgets applied)."""
    known = [s.name for s in sections]
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None,
                   help=f"report path (default {DEFAULT_REPORT.relative_to(ROOT)} with CUDA, "
                        f"{DRY_RUN_REPORT.relative_to(ROOT)} without)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                   help=f"seconds for the whole check (default {DEFAULT_BUDGET_S:.0f})")
    p.add_argument("--only", default=None, help="comma-separated sections to run (default all)")
    p.add_argument("--skip", default=None, help="comma-separated sections not to run")
    p.add_argument("--section-budget", action="append", default=[], metavar="NAME=SECONDS",
                   help="override one section's time limit (repeatable)")
    p.add_argument("--chapter", default="warp", help="chapter for the 'chapter' section (default warp)")
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="run every section on the CPU at smoke sizes to test this driver (no GPU numbers)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    p.add_argument("--list", action="store_true", help="list the sections and their budgets, then exit")
    p.add_argument("--execute-chapter", nargs=2, type=Path, metavar=("NOTEBOOK", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--train-tcae-child", type=Path, metavar="OUT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.budget > 0:
        p.error(f"--budget must be a positive number of seconds, got {args.budget}")
    chosen = list(sections)
    if args.only is not None:
        keep = _names(args.only, known, "--only", p)
        chosen = [s for s in chosen if s.name in keep]
    if args.skip is not None:
        drop = _names(args.skip, known, "--skip", p)
        chosen = [s for s in chosen if s.name not in drop]
    budgets: dict[str, float] = {}
    for item in args.section_budget:
        name, sep, value = item.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = float("nan")
        if not sep or name not in known or not seconds > 0:
            p.error(f"--section-budget expects NAME=SECONDS with NAME in {', '.join(known)} and SECONDS > 0, "
                    f"got {item!r}")
        budgets[name] = seconds
    if not chosen:
        p.error("no section left to run (check --only and --skip)")
    chosen = [Section(**{**s.__dict__, "budget_s": budgets.get(s.name, s.budget_s),
                         "min_s": min(s.min_s, budgets.get(s.name, s.budget_s))}) for s in chosen]
    return args, chosen


class _Interrupted(Exception):
    pass


def _on_signal(signum, frame):  # noqa: ARG001
    if _CHILD is not None:
        _kill_group(_CHILD, grace_s=2.0)
    raise _Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None, sections: list[Section] | None = None,
         cuda_available: bool | None = None) -> int:
    """Run the check; ``sections`` and ``cuda_available`` are for tests."""
    args, chosen = parse_args(argv, SECTIONS if sections is None else sections)
    if args.execute_chapter:  # the 'chapter' section's child process
        return execute_chapter(*args.execute_chapter)
    if args.train_tcae_child:  # the 'train_tcae' section's child process
        return tcae_child(args.train_tcae_child, dry=args.cpu_dry_run)
    if args.list:
        for s in chosen:
            print(f"{s.name:<14} {s.budget_s:5.0f} s (min {s.min_s:3.0f} s)  {s.about}")
        print(f"total budget {args.budget:.0f} s")
        return 0
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    mode = "cpu-dry-run" if args.cpu_dry_run else ("cuda" if cuda_available else "no-cuda")
    out = args.out if args.out is not None else (DEFAULT_REPORT if mode == "cuda" else DRY_RUN_REPORT)
    why = _guard_existing(out, mode)
    if why:
        print(f"gpu_check: {why}", file=sys.stderr)
        return 2
    start = time.monotonic()
    deadline = start + args.budget
    prov = provenance(mode, args.budget, list(sys.argv[1:] if argv is None else argv))
    work = args.work if args.work is not None else Path(tempfile.mkdtemp(prefix="au-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(root=ROOT, work=work, mode=mode, chapter=args.chapter)
    if mode == "no-cuda":
        print("gpu_check: CUDA is not available; every section is reported as skipped", flush=True)
    elif mode == "cpu-dry-run":
        print("gpu_check: CPU dry run at smoke sizes; its numbers are not GPU numbers", flush=True)
    entries: list[dict] = []
    old_handlers = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    interrupted = None
    try:
        for sec in chosen:
            if interrupted is None:
                try:
                    entry = run_section(sec, ctx, deadline)
                except _Interrupted as e:
                    interrupted = e.args[0]
                    entry = {"name": sec.name, "about": sec.about, "status": "failed", "reason": "",
                             "error": f"interrupted by {interrupted}", "seconds": 0.0, "budget_s": sec.budget_s,
                             "command": "", "output_tail": "", "result": {}}
            else:
                entry = {"name": sec.name, "about": sec.about, "status": "skipped",
                         "reason": f"not started: the check was interrupted by {interrupted}", "error": "",
                         "seconds": 0.0, "budget_s": sec.budget_s, "command": "", "output_tail": "", "result": {}}
            entries.append(entry)
            done = len(entries) == len(chosen)
            if done:
                prov["date_end"] = _now()
                prov["wall_s"] = round(time.monotonic() - start, 1)
            write_report(out, build_report(mode, prov, entries, complete=done and interrupted is None))
            line = entry["reason"] if entry["status"] == "skipped" else entry["error"] or entry["result"].get("headline", "")
            print(f"   {sec.name}: {entry['status']} ({entry['seconds']:.0f} s) {line}", flush=True)
            if entry["status"] == "failed" and entry["output_tail"]:
                print("   " + "\n   ".join(entry["output_tail"][-1500:].splitlines()), flush=True)
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report = build_report(mode, prov, entries, complete=interrupted is None)
    from au_lib.gpu_check import gpu_check_lines

    print("\n".join(gpu_check_lines(report)))
    print(f"wrote {out}")
    return 1 if report["counts"]["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

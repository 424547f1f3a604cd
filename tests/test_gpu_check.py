"""The GPU check's CPU-side logic (``bench/gpu_check.py``, ``au_lib.gpu_check``): arguments, the
report's format and atomic writing, skipping without CUDA, per-section time limits, result readers.

Sections here are tiny Python one-liners injected into ``main``; nothing touches a GPU.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
from _processes import alive as _alive

from au_lib.gpu_check import (SCHEMA, GPUCheckReportError, gpu_check_lines, load_gpu_check, show_gpu_check,
                              validate_report)

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gpu_check_driver", ROOT / "bench" / "gpu_check.py")
gc = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check_driver"] = gc  # dataclasses look their module up there
_spec.loader.exec_module(gc)

PY = sys.executable


def py_section(name, code, budget=20.0, min_s=0.0, collect=None, needs_cuda=False):
    """A section whose child runs ``code`` (``{wd}`` and ``{out}`` are filled in) with ``python -c``."""
    def command(ctx, wd):
        return [PY, "-c", code.format(wd=str(wd), out=str(ctx.work.parent / "report.json"))]

    def default_collect(ctx, wd, output):
        return {"headline": f"{name} done", "output": output.strip()}

    return gc.Section(name, f"test section {name}", budget, min_s, command, collect or default_collect,
                      needs_cuda=needs_cuda)


def run_main(tmp_path, sections, *extra, cuda=False):
    out = tmp_path / "report.json"
    rc = gc.main(["--out", str(out), "--work", str(tmp_path / "work"), *extra], sections=sections,
                 cuda_available=cuda)
    return rc, json.loads(out.read_text()) if out.exists() else None


# ------------------------------------------------------------------------------------------ arguments
@pytest.mark.parametrize("argv,match", [
    (["--only", "nope"], "unknown section"),
    (["--skip", "cuda_tests,bogus"], "unknown section"),
    (["--only", "bench_warp", "--skip", "bench_warp"], "no section left"),
    (["--section-budget", "bench_mcm=0"], "NAME=SECONDS"),
    (["--section-budget", "bench_mcm=abc"], "NAME=SECONDS"),
    (["--section-budget", "bench_mcm"], "NAME=SECONDS"),
    (["--section-budget", "nope=10"], "NAME=SECONDS"),
    (["--budget", "0"], "--budget must be a positive"),
    (["--budget", "nan"], "--budget must be a positive"),
])
def test_bad_arguments_exit_2_with_a_message(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        gc.parse_args(argv, gc.SECTIONS)
    assert e.value.code == 2
    assert match in capsys.readouterr().err


def test_only_skip_and_section_budget_select_and_override():
    args, chosen = gc.parse_args(["--only", "bench_mcm,cuda_tests", "--section-budget", "bench_mcm=12.5"],
                                 gc.SECTIONS)
    assert [s.name for s in chosen] == ["cuda_tests", "bench_mcm"]  # the registry's order, not the argument's
    mcm = chosen[1]
    assert mcm.budget_s == 12.5 and mcm.min_s == 12.5  # a smaller budget lowers the start threshold too
    assert gc.SECTIONS[2].budget_s == 190  # the registry itself is untouched
    _, chosen = gc.parse_args(["--skip", "chapter"], gc.SECTIONS)
    assert "chapter" not in [s.name for s in chosen] and len(chosen) == len(gc.SECTIONS) - 1


def test_default_budget_fits_nine_minutes_and_list(capsys):
    assert gc.DEFAULT_BUDGET_S <= 540
    # the sections that must run (all but the optional chapter) fit in the budget together
    assert sum(s.budget_s for s in gc.SECTIONS if s.name != "chapter") <= gc.DEFAULT_BUDGET_S - gc.GRACE_S
    assert gc.main(["--list"]) == 0
    text = capsys.readouterr().out
    assert all(s.name in text for s in gc.SECTIONS) and "total budget 540 s" in text


# ------------------------------------------------------------------------------------------ without CUDA
def test_without_cuda_every_section_is_skipped_with_the_reason(tmp_path):
    rc, report = run_main(tmp_path, None)
    assert rc == 0 and validate_report(report) == []
    assert report["mode"] == "no-cuda" and report["complete"] is True and report["schema"] == SCHEMA
    assert [s["name"] for s in report["sections"]] == [s.name for s in gc.SECTIONS]
    for s in report["sections"]:
        assert s["status"] == "skipped" and "CUDA is not available" in s["reason"], s
    assert report["counts"] == {"ok": 0, "failed": 0, "skipped": len(gc.SECTIONS)}
    assert report["targets"] == []
    assert not any((tmp_path / "work").iterdir())  # no section started a process
    for key in ("commit", "date_start", "date_end", "device", "torch", "triton", "budget_s"):
        assert key in report["provenance"]
    lines = gpu_check_lines(report)
    assert "no-cuda" in lines[0] and "holds no GPU numbers" in lines[1]


def test_default_out_without_cuda_is_not_the_stored_report():
    assert gc.DRY_RUN_REPORT != gc.DEFAULT_REPORT
    assert ".cache" in gc.DRY_RUN_REPORT.parts  # ignored by git


def test_stored_cuda_report_is_never_replaced_by_a_run_without_cuda(tmp_path):
    prov = {"commit": "abc", "date_start": "d", "device": "NVIDIA H200", "torch": "2"}
    cuda_report = gc.build_report("cuda", prov, [], complete=True)
    out = tmp_path / "report.json"
    gc.write_report(out, cuda_report)
    before = out.read_bytes()
    rc = gc.main(["--out", str(out), "--work", str(tmp_path / "w")], cuda_available=False)
    assert rc == 2 and out.read_bytes() == before
    # a CUDA run may replace it
    rc, report = run_main(tmp_path, [py_section("a", "print('hi')")], cuda=True)
    assert rc == 0 and report["sections"][0]["status"] == "ok"


# ------------------------------------------------------------------------------------------ running sections
def test_sections_run_in_order_and_the_report_is_rewritten_after_each(tmp_path):
    spy = ("import json, shutil; shutil.copy({out!r}, {wd!r} + '/seen.json')")

    def collect_seen(ctx, wd, output):
        seen = json.loads((wd / "seen.json").read_text())
        return {"headline": "saw", "seen": [(s["name"], s["status"]) for s in seen["sections"]],
                "seen_complete": seen["complete"]}

    rc, report = run_main(tmp_path, [py_section("first", "print('one')"), py_section("spy", spy, collect=collect_seen)])
    assert rc == 0
    first, spy_entry = report["sections"]
    assert first["status"] == "ok" and first["result"]["output"] == "one" and "one" in first["output_tail"]
    # while the second section ran, the file on disk already held the first one's result
    assert spy_entry["result"]["seen"] == [["first", "ok"]] and spy_entry["result"]["seen_complete"] is False
    assert report["complete"] is True and validate_report(report) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_failures_are_recorded_and_the_next_section_still_runs(tmp_path):
    def failing_check(ctx, wd, output):
        raise gc.CheckFailed("the loss did not fall (1 -> 2)", {"first_loss": 1, "last_loss": 2})

    def reader_bug(ctx, wd, output):
        raise KeyError("rows")

    sections = [
        py_section("crash", "import sys; print('some output'); print('boom: bad thing', file=sys.stderr); sys.exit(3)"),
        py_section("check", "print('ran')", collect=failing_check),
        py_section("bug", "print('ran')", collect=reader_bug),
        py_section("fine", "print('ok')"),
    ]
    rc, report = run_main(tmp_path, sections)
    assert rc == 1 and validate_report(report) == []
    by = {s["name"]: s for s in report["sections"]}
    assert by["crash"]["status"] == "failed" and by["crash"]["error"].startswith("exit code 3: boom: bad thing")
    assert by["check"]["status"] == "failed" and "did not fall" in by["check"]["error"]
    assert by["check"]["result"] == {"first_loss": 1, "last_loss": 2}
    assert by["bug"]["status"] == "failed" and "could not read its results: KeyError" in by["bug"]["error"]
    assert by["fine"]["status"] == "ok"
    assert report["counts"] == {"ok": 1, "failed": 3, "skipped": 0}


@pytest.mark.skipif(sys.platform != "linux", reason="process groups and /proc as on the GPU machine")
def test_a_section_over_its_limit_is_stopped_with_its_children(tmp_path):
    hang = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            " open({wd!r} + '/child.pid', 'w').write(str(p.pid)); print('started', flush=True); time.sleep(60)")
    t0 = time.monotonic()
    rc, report = run_main(tmp_path, [py_section("hang", hang, budget=2.0), py_section("after", "print('after')")])
    assert time.monotonic() - t0 < 30
    hang_entry, after = report["sections"]
    assert hang_entry["status"] == "failed" and hang_entry["error"] == "timed out: stopped after its 2 s limit"
    assert hang_entry["seconds"] < 15 and "started" in hang_entry["output_tail"]
    pid = int((tmp_path / "work" / "hang" / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the section's child process outlived it"
    assert after["status"] == "ok" and rc == 1


def test_sections_that_do_not_fit_the_remaining_budget_are_skipped(tmp_path):
    sections = [py_section("quick", "print(1)", budget=5, min_s=1),
                py_section("big", "print(2)", budget=100, min_s=50),
                py_section("small", "print(3)", budget=5, min_s=1)]
    rc, report = run_main(tmp_path, sections, "--budget", "20")
    by = {s["name"]: s for s in report["sections"]}
    assert by["quick"]["status"] == "ok" and by["small"]["status"] == "ok"
    assert by["big"]["status"] == "skipped" and by["big"]["reason"].startswith("not started:")
    assert "needs at least 50 s" in by["big"]["reason"]
    # a section's limit is its budget, cut to what is left of the whole run
    assert by["quick"]["limit_s"] <= 5 and by["small"]["limit_s"] <= 20 - gc.GRACE_S
    assert rc == 0


def test_cuda_sections_skip_but_others_run_without_cuda(tmp_path):
    rc, report = run_main(tmp_path, [py_section("gpu", "print(1)", needs_cuda=True), py_section("cpu", "print(2)")])
    by = {s["name"]: s for s in report["sections"]}
    assert by["gpu"]["status"] == "skipped" and by["cpu"]["status"] == "ok"


# ------------------------------------------------------------------------------------------ readers
def test_parse_junit_counts_outcomes(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text("""<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="4">
      <testcase classname="tests.test_x" name="test_a[cuda]" time="1.5"/>
      <testcase classname="tests.test_x" name="test_b[cuda]" time="0.1"><failure message="assert 1 == 2">trace</failure></testcase>
      <testcase classname="tests.test_x" name="test_c" time="0"><skipped message="needs CUDA"/></testcase>
      <testcase classname="tests.test_x" name="test_d" time="0"><error message="fixture broke"/></testcase>
    </testsuite></testsuites>""")
    res = gc.parse_junit(xml)
    assert (res["passed"], res["failed"], res["skipped"], res["error"]) == (1, 1, 1, 1)
    assert res["cases"][1] == {"test": "tests.test_x::test_b[cuda]", "outcome": "failed", "seconds": 0.1,
                               "message": "assert 1 == 2"}
    ctx = gc.Context(root=ROOT, work=tmp_path, mode="cuda")
    (tmp_path / "junit.xml").write_text(xml.read_text())
    with pytest.raises(gc.CheckFailed, match="2 CUDA test\\(s\\) failed: tests.test_x::test_b\\[cuda\\], tests.test_x::test_d"):
        gc._tests_collect(ctx, tmp_path, "")


def test_loss_curve_and_loss_falls(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"kind": "epoch", "epoch": 1, "step": 32, "loss": 0.9, "images_per_s": 100.0},
            {"kind": "step", "step": 40, "loss": 5.0},  # step rows of the MCM log are not the curve
            {"kind": "epoch", "epoch": 2, "step": 64, "loss": 0.7, "images_per_s": 300.0},
            {"kind": "epoch", "epoch": 3, "step": 96, "loss": 0.5, "images_per_s": 200.0}]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"truncated": ')
    pts = gc.loss_curve(run, "loss")
    assert [p["loss"] for p in pts] == [0.9, 0.7, 0.5]
    res = gc.loss_falls(pts, "MCM")
    assert res["falls"] and res["steps"] == 96 and res["images_per_s_median"] == 300.0
    assert res["headline"].startswith("MCM loss 0.9 -> 0.5 over 96 steps")
    with pytest.raises(gc.CheckFailed, match="did not fall \\(0.5 -> 0.9\\)"):
        gc.loss_falls(pts[::-1], "MCM")
    with pytest.raises(gc.CheckFailed, match="1 logged loss point"):
        gc.loss_falls(pts[:1], "MCM")
    # TCAE logs rows without a kind, keyed by "total"; summary.json's history is the fallback
    tcae = tmp_path / "tcae"
    tcae.mkdir()
    (tcae / "log.jsonl").write_text(json.dumps({"step": 100, "total": 2.0}) + "\n" + json.dumps({"step": 200, "total": 1.0}))
    assert [p["loss"] for p in gc.loss_curve(tcae, "total")] == [2.0, 1.0]
    other = tmp_path / "other"
    other.mkdir()
    (other / "summary.json").write_text(json.dumps({"extra": {"history": [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}]}}))
    assert [p["loss"] for p in gc.loss_curve(other, "loss")] == [3.0, 2.0]


def _warp_row(shape, grads, official, ours):
    return {"shape": shape, "grads": grads, "official_ms": official, "grid_sample_ms": official * 0.9,
            "ours_ms": ours, "ours_torch_ms": ours * 3, "ratio_ours_vs_official": ours / official}


def test_warp_result_speedups_and_targets():
    data = {"rows": [_warp_row([64, 3, 256, 256], "disp", 3.0, 1.5), _warp_row([64, 3, 256, 256], "both", 3.0, 2.5),
                     _warp_row([16, 3, 128, 128], "disp", 1.0, 0.5),
                     {"shape": [64, 3, 256, 256], "grads": "mixed", "mixed_unfused_grid_sample_ms": 4.0,
                      "mixed_ours_ms": 1.0, "ratio_mixed_ours_vs_unfused": 0.25}],
            "provenance": {"device": "NVIDIA H200"}}
    res = gc.warp_result(data)
    disp, both = res["targets"]
    assert disp["value"] == pytest.approx(2.0) and disp["met"] is True and disp["target"] == 1.5
    assert both["value"] == pytest.approx(1.2) and both["met"] is False
    assert res["rows"][0]["speedup_vs_grid_sample"] == pytest.approx(1.8)
    assert "fused mix 4.00x" in res["headline"]
    # a missing size is reported as not measured, not as a pass
    res = gc.warp_result({"rows": [_warp_row([16, 3, 128, 128], "disp", 1.0, 0.5)]})
    assert [t["met"] for t in res["targets"]] == [None, None] and "not measured" in res["headline"]


def test_mcm_result_targets_and_dry_run():
    run = {"mae": {"images_per_s": 1000.0}, "mae3": {"images_per_s": 500.0},
           "ours": {"images_per_s": 1200.0, "peak_mem_gib": 30.5}, "ratio_vs_mae": 1.2, "ratio_vs_mae3": 2.4}
    data = {"gpu": {"device": "NVIDIA H200", "gpu_batch": 256, "mfu_batch": 256, "refs_fp32_ours_bf16_compile": run,
                    "ours_bf16_compile_mfu_batch": run, "train_flops_per_image": 1e11, "peak_bf16_flops": 989e12,
                    "mfu": 0.1213}}
    res = gc.mcm_result(data, dry=False)
    assert [t["met"] for t in res["targets"]] == [True, False, False]
    assert res["peak_mem_gib"] == 30.5 and "MFU 12.1 %" in res["headline"]
    with pytest.raises(gc.CheckFailed, match="no GPU part"):
        gc.mcm_result({"cpu": {}}, dry=False)
    res = gc.mcm_result({"cpu": {"ratio_vs_mae3": 0.9}}, dry=True)
    assert res["targets"] == [] and "not a GPU number" in res["headline"]


# ------------------------------------------------------------------------------------------ the report format
def _valid_report():
    prov = {"commit": "abc", "date_start": "d", "device": "NVIDIA H200", "torch": "2"}
    entry = {"name": "a", "status": "ok", "reason": "", "error": "", "seconds": 1.0, "budget_s": 5,
             "result": {"headline": "fine", "targets": [gc.target("speed", 2.0, 1.5)]}}
    return gc.build_report("cuda", prov, [entry], complete=True)


@pytest.mark.parametrize("breakage,problem", [
    (lambda r: r.update(schema="other/1"), "schema"),
    (lambda r: r.update(mode="gpu"), "mode"),
    (lambda r: r["provenance"].pop("commit"), "provenance lacks 'commit'"),
    (lambda r: r["sections"][0].update(status="done"), "has status 'done'"),
    (lambda r: r["sections"][0].update(status="skipped"), "skipped without a reason"),
    (lambda r: r["sections"][0].update(status="failed"), "failed without an error"),
    (lambda r: r["sections"].append(dict(r["sections"][0])), "names repeat"),
    (lambda r: r["counts"].update(ok=5), "disagree"),
    (lambda r: r.pop("complete"), "complete"),
])
def test_validate_report_names_each_problem(breakage, problem):
    report = _valid_report()
    assert validate_report(report) == [] and report["targets"][0]["section"] == "a"
    breakage(report)
    assert any(problem in p for p in validate_report(report)), validate_report(report)
    with pytest.raises(ValueError, match="invalid report"):
        gc.write_report(Path("/nonexistent/never-written.json"), report)


def test_load_and_show(tmp_path, capsys):
    missing = tmp_path / "none.json"
    assert load_gpu_check(missing) is None
    assert show_gpu_check(missing) is None
    assert "No GPU check is stored" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": ')
    with pytest.raises(GPUCheckReportError, match="bad.json: not a readable JSON"):
        load_gpu_check(bad)
    bad.write_text('{"schema": "x"}')
    with pytest.raises(GPUCheckReportError, match="bad.json: not a valid GPU-check report"):
        load_gpu_check(bad)
    good = tmp_path / "good.json"
    gc.write_report(good, _valid_report())
    assert load_gpu_check(good)["mode"] == "cuda"
    show_gpu_check(good)
    text = capsys.readouterr().out
    assert "device NVIDIA H200 · commit abc" in text and "target speed: 2 x (target >= 1.5 x): met" in text


def test_tcae_child_trains_through_the_library_and_logs_a_curve(tmp_path):
    """The 'train_tcae' section calls au_lib.train.tcae directly: keep that contract tested on CPU."""
    assert gc.tcae_child(tmp_path / "tcae", dry=True, steps=4, log_every=2) == 0
    points = gc.loss_curve(tmp_path / "tcae", "total")
    assert [p["step"] for p in points] == [2, 4] and all(p["loss"] > 0 for p in points)

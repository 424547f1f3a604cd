"""The sweep machinery on tiny stubs: resumption, reuse, determinism, corruption, sharding, locks."""

from __future__ import annotations

import json
import multiprocessing as mp
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from au_lib.experiments.sweep import (Checkpoint, Point, Run, check_points, file_lock, load_sweep,
                                      parse_shard, result_path, run_sweep)
from au_lib.results import load_result


class Stubs:
    """A 'pre-training' that stores a seeded random vector per epoch, and an 'evaluation' that
    scores it with seeded noise; counts calls so tests can see what was recomputed."""

    def __init__(self, fail_after: int | None = None):
        self.pretrain_calls: list[str] = []
        self.eval_calls: list[str] = []
        self.fail_after = fail_after

    def pretrain(self, run: Run, work: Path) -> dict[int, Checkpoint]:
        self.pretrain_calls.append(run.name)
        work.mkdir(parents=True, exist_ok=True)
        g = torch.Generator().manual_seed(int(run.config["seed"]))
        w = torch.randn(8, generator=g)
        out = {}
        for e in range(max(run.epochs) + 1):
            w = w * 0.9 + 0.1 * run.config["target"]  # "training" drifts towards the target
            if e in run.epochs:
                path = work / f"epoch_{e:04d}.pt"
                if not path.exists():
                    torch.save(w.clone(), path)
                out[e] = Checkpoint(path, {"loss": float((w - run.config["target"]).pow(2).mean())})
        return out

    def evaluate(self, point: Point, ck: Checkpoint, work: Path) -> dict:
        if self.fail_after is not None and len(self.eval_calls) >= self.fail_after:
            raise KeyboardInterrupt("simulated crash")
        self.eval_calls.append(point.name)
        w = torch.load(ck.path)
        g = torch.Generator().manual_seed(int(point.evaluation["seed"]))
        per_fold = (1 / (1 + (w - 1).abs().mean()) + 0.01 * torch.randn(3, generator=g)).tolist()
        return {"mean": float(np.mean(per_fold)), "per_fold_mean": per_fold,
                "std_over_folds": float(np.std(per_fold))}


def make_points(seed: int = 0, eval_seed: int = 0) -> list[Point]:
    run_a = Run("a", {"seed": seed, "target": 1.0}, (0, 2, 4))
    run_b = Run("b", {"seed": seed + 1, "target": 0.5}, (4,))
    pts = [Point(f"a-ep{e}", run_a, e, {"seed": eval_seed}, {"epoch": e}) for e in run_a.epochs]
    pts.append(Point("b-ep4", run_b, 4, {"seed": eval_seed}, {"epoch": 4}))
    return pts


def test_runs_every_point_once_and_pretrains_each_run_once(tmp_path):
    s = Stubs()
    rep = run_sweep(make_points(), tmp_path / "res", tmp_path / "work", s.pretrain, s.evaluate, progress=False)
    assert sorted(rep.computed) == ["a-ep0", "a-ep2", "a-ep4", "b-ep4"]
    assert s.pretrain_calls == ["a", "b"]  # one pre-training per run, not per point
    assert list(rep.results) == ["a-ep0", "a-ep2", "a-ep4", "b-ep4"]
    res = load_result(result_path(tmp_path / "res", make_points()[1]))
    assert res["config"]["epoch"] == 2 and res["config"]["labels"] == {"epoch": 2}
    assert res["extra"]["checkpoint_stats"]["loss"] >= 0
    assert res["provenance"]["profile"] in ("smoke", "cpu", "paper")


def test_finished_points_are_reused_and_runs_not_retrained(tmp_path):
    run_sweep(make_points(), tmp_path / "res", tmp_path / "work", Stubs().pretrain, Stubs().evaluate, progress=False)
    s = Stubs()
    rep = run_sweep(make_points(), tmp_path / "res", tmp_path / "work", s.pretrain, s.evaluate, progress=False)
    assert rep.computed == [] and len(rep.reused) == 4
    assert s.pretrain_calls == [] and s.eval_calls == []
    # reuse does not need the checkpoints: results are self-contained
    for f in (tmp_path / "work").rglob("*.pt"):
        f.unlink()
    rep = run_sweep(make_points(), tmp_path / "res", tmp_path / "work2", s.pretrain, s.evaluate, progress=False)
    assert len(rep.reused) == 4 and s.eval_calls == []


def test_changed_config_recomputes_only_affected_points(tmp_path):
    run_sweep(make_points(), tmp_path / "res", tmp_path / "work", Stubs().pretrain, Stubs().evaluate, progress=False)
    pts = make_points()
    pts[3] = Point("b-ep4", pts[3].run, 4, {"seed": 7}, {"epoch": 4})  # new evaluation config
    s = Stubs()
    rep = run_sweep(pts, tmp_path / "res", tmp_path / "work", s.pretrain, s.evaluate, progress=False)
    assert rep.computed == ["b-ep4"] and rep.recovered == ["b-ep4"]
    assert s.pretrain_calls == ["b"]


def test_resumes_after_a_crash(tmp_path):
    crashing = Stubs(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(make_points(), tmp_path / "res", tmp_path / "work", crashing.pretrain, crashing.evaluate,
                  progress=False)
    assert crashing.eval_calls == ["a-ep0", "a-ep2"]
    done = sorted(p.stem for p in (tmp_path / "res").glob("*.json"))
    assert done == ["a-ep0", "a-ep2"]  # finished points were written before the crash
    s = Stubs()
    rep = run_sweep(make_points(), tmp_path / "res", tmp_path / "work", s.pretrain, s.evaluate, progress=False)
    assert s.eval_calls == ["a-ep4", "b-ep4"] and sorted(rep.reused) == ["a-ep0", "a-ep2"]
    # and the resumed sweep equals an uninterrupted one
    ref = run_sweep(make_points(), tmp_path / "ref", tmp_path / "wref", Stubs().pretrain, Stubs().evaluate,
                    progress=False)
    for name, r in ref.results.items():
        assert rep.results[name]["metrics"] == r["metrics"]


def test_same_seed_gives_identical_results_and_other_seed_differs(tmp_path):
    a = run_sweep(make_points(), tmp_path / "r1", tmp_path / "w1", Stubs().pretrain, Stubs().evaluate, progress=False)
    b = run_sweep(make_points(), tmp_path / "r2", tmp_path / "w2", Stubs().pretrain, Stubs().evaluate, progress=False)
    for name in a.results:
        assert a.results[name]["metrics"] == b.results[name]["metrics"]
        assert a.results[name]["key"] == b.results[name]["key"]
    c = run_sweep(make_points(seed=5), tmp_path / "r3", tmp_path / "w3", Stubs().pretrain, Stubs().evaluate,
                  progress=False)
    assert c.results["a-ep4"]["metrics"] != a.results["a-ep4"]["metrics"]
    assert c.results["a-ep4"]["key"] != a.results["a-ep4"]["key"]


@pytest.mark.parametrize("damage", ["truncate", "edit", "garbage"])
def test_corrupted_result_is_detected_and_recomputed(tmp_path, damage):
    first = run_sweep(make_points(), tmp_path / "res", tmp_path / "work", Stubs().pretrain, Stubs().evaluate,
                      progress=False)
    path = tmp_path / "res" / "a-ep2.json"
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "edit":  # valid JSON, but a number was changed by hand
        obj = json.loads(text)
        obj["metrics"]["mean"] = 0.99
        path.write_text(json.dumps(obj))
    else:
        path.write_bytes(b"\x00\xff not json")
    s = Stubs()
    with pytest.warns(RuntimeWarning, match="a-ep2.json"):
        rep = run_sweep(make_points(), tmp_path / "res", tmp_path / "work", s.pretrain, s.evaluate, progress=False)
    assert rep.computed == ["a-ep2"] and rep.recovered == ["a-ep2"]
    assert rep.results["a-ep2"]["metrics"] == first.results["a-ep2"]["metrics"]
    assert load_result(path)["metrics"]["mean"] == first.results["a-ep2"]["metrics"]["mean"]


def test_load_sweep_skips_missing_and_corrupt(tmp_path):
    run_sweep(make_points(), tmp_path / "res", tmp_path / "work", Stubs().pretrain, Stubs().evaluate, progress=False)
    (tmp_path / "res" / "a-ep0.json").unlink()
    (tmp_path / "res" / "a-ep4.json").write_text("{")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = load_sweep(make_points(), tmp_path / "res")
    assert sorted(got) == ["a-ep2", "b-ep4"]


def test_shards_partition_the_points(tmp_path):
    names = []
    for i in range(3):
        s = Stubs()
        rep = run_sweep(make_points(), tmp_path / "res", tmp_path / "work", s.pretrain, s.evaluate,
                        shard=(i, 3), progress=False)
        names += rep.computed
    assert sorted(names) == sorted(p.name for p in make_points())


def test_point_held_by_another_process_is_deferred_then_read(tmp_path):
    pts = make_points()
    s_other = Stubs()
    lock = tmp_path / "work" / "locks" / "point-a-ep2.lock"
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()

    def holder():
        with file_lock(lock):
            ready.set()
            release.wait(30)
            run_sweep([pts[1]], tmp_path / "res", tmp_path / "wother", s_other.pretrain, s_other.evaluate,
                      progress=False, shard=None)

    proc = ctx.Process(target=holder)
    proc.start()
    assert ready.wait(30)
    s = Stubs()
    import threading

    threading.Timer(0.5, release.set).start()  # the other process finishes a-ep2 while we work
    rep = run_sweep(pts, tmp_path / "res", tmp_path / "work", s.pretrain, s.evaluate, progress=False)
    proc.join(30)
    assert "a-ep2" not in s.eval_calls and rep.by_others == ["a-ep2"]
    assert sorted(rep.results) == sorted(p.name for p in pts)


def test_bad_inputs_give_clear_errors(tmp_path):
    run = Run("a", {"seed": 0}, (0, 2))
    with pytest.raises(ValueError, match="epoch 3"):
        Point("x", run, 3, {})
    with pytest.raises(ValueError, match="plain file name"):
        Point("a/b", run, 2, {})
    with pytest.raises(ValueError, match="epochs"):
        Run("r", {}, ())
    with pytest.raises(ValueError, match="two points are named"):
        check_points([Point("x", run, 0, {}), Point("x", run, 2, {})])
    with pytest.raises(ValueError, match="two different runs"):
        check_points([Point("x", run, 0, {}), Point("y", Run("a", {"seed": 1}, (0, 2)), 2, {})])
    for text in ("3/3", "a/b", "1", "-1/2"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(text)
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None

    def no_ckpt(run, work):
        return {}

    with pytest.raises(RuntimeError, match="no checkpoint for run 'a'"):
        run_sweep([Point("x", run, 2, {})], tmp_path / "r", tmp_path / "w", no_ckpt, Stubs().evaluate,
                  progress=False)

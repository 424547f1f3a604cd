"""The 3-fold AU detection protocol: subject-exclusive folds, no test leakage, probes, result reuse."""

import importlib
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
fake = importlib.import_module("_fake_au")

from au_lib.data import registry  # noqa: E402
from au_lib.experiments import analysis as A  # noqa: E402
from au_lib.experiments import protocol as P  # noqa: E402
from au_lib.train.finetune import FrameTable, TrainConfig, materialize  # noqa: E402


@pytest.fixture(autouse=True)
def _fake_registry(monkeypatch, tmp_path):
    monkeypatch.setitem(registry.DATASET_MODULES, "fakeau", "_fake_au")
    monkeypatch.setenv("AU_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def table():
    return materialize(fake.open_dataset(modalities=("rgb",)), aus=fake.AUS)


def settings(**kw):
    base = P.protocol_settings("smoke", max_frames_per_subject=None, report_test_tuned=True)
    return replace(base, **kw)


def _features_with_labels(table, noise=0.15, seed=0):
    g = torch.Generator().manual_seed(seed)
    lab = table.au.clamp_min(0)  # unknown -> 0, still informative
    return torch.cat([lab, torch.randn(len(table), 12, generator=g)], 1) + noise * torch.randn(len(table), 16, generator=g)


def test_folds_are_subject_exclusive_and_validation_comes_from_training(table):
    fs = registry.dataset_folds("fakeau")
    tests = [set(f.test) for f in fs]
    assert set().union(*tests) == set(fake.SUBJECTS) and sum(map(len, tests)) == len(fake.SUBJECTS)
    feats = _features_with_labels(table)
    for f in fs:
        assert not set(f.train) & set(f.test)
        out = P.run_fold(table, f, P.Method("probe", "pixels"), settings(), features=feats)
        assert set(out.val_subjects) < set(f.train)
        assert set(table.subject[out.test_rows]) == set(f.test)


def test_thresholds_and_epoch_do_not_depend_on_test_labels(table):
    """Replace the test fold's labels: thresholds, chosen epoch and validation curve must not move."""
    fold = registry.dataset_folds("fakeau")[0]
    feats = _features_with_labels(table, noise=1.0)
    m = P.Method("probe", "pixels")
    a = P.run_fold(table, fold, m, settings(), features=feats, seed=3)
    scrambled = table.au.clone()
    te = table.rows(fold.test)
    scrambled[te] = 1 - scrambled[te].clamp_min(0)
    b = P.run_fold(replace(table, au=scrambled), fold, m, settings(), features=feats, seed=3)
    np.testing.assert_array_equal(a.thresholds, b.thresholds)
    assert a.best_epoch == b.best_epoch
    assert [h["val_f1"] for h in a.history] == [h["val_f1"] for h in b.history]
    np.testing.assert_array_equal(a.test_scores, b.test_scores)
    assert not np.allclose(a.f1, b.f1)  # the score itself does see the test labels


def test_probe_learns_informative_features_and_not_random_ones(table):
    fs = registry.dataset_folds("fakeau")
    m = P.Method("probe", "pixels")
    good = [P.run_fold(table, f, m, settings(), features=_features_with_labels(table)) for f in fs]
    rand = torch.randn(len(table), 16, generator=torch.Generator().manual_seed(1))
    bad = [P.run_fold(table, f, m, settings(), features=rand) for f in fs]
    good_f1 = P.aggregate(good, table.aus)["honest"]["mean"]
    bad_f1 = P.aggregate(bad, table.aus)["honest"]["mean"]
    lab = table.au.numpy()
    prev = np.array([(lab[:, i] == 1).sum() / (lab[:, i] >= 0).sum() for i in range(lab.shape[1])])
    chance = np.mean(2 * prev / (1 + prev))  # F1 of "always present", the best label-blind guess
    assert good_f1 > 0.9
    assert bad_f1 < chance + 0.1


def test_aggregate_averages_folds_then_seeds():
    def out(seed, fold, f1):
        a = np.array(f1, float)
        return P.FoldOutcome(fold, seed, ("x",), 1, np.full(2, .5), a, a, None, None, [], np.arange(1), np.zeros((1, 2)))
    runs = [out(0, 1, [0.2, 0.4]), out(0, 2, [0.4, 0.6]), out(1, 1, [0.6, 0.8]), out(1, 2, [0.8, 1.0])]
    agg = P.aggregate(runs, (1, 2))
    assert agg["honest"]["per_au"] == pytest.approx([0.5, 0.7])
    assert agg["honest"]["mean"] == pytest.approx(0.6)
    assert agg["honest"]["std_over_seeds"] == pytest.approx(0.2)
    assert "test_tuned" not in agg


def test_method_parse_errors():
    assert P.Method.parse("finetune:mcm:fusion", "x.pt").modalities == ("rgb", "depth", "thermal")
    with pytest.raises(ValueError, match="unknown extractor"):
        P.Method.parse("probe:sift")
    with pytest.raises(ValueError, match="needs a pre-trained checkpoint"):
        P.Method.parse("probe:tcae-au")
    with pytest.raises(ValueError, match="fusion applies"):
        P.Method.parse("scratch:vit:fusion")


def test_run_protocol_writes_and_reuses_result(tmp_path, monkeypatch):
    from au_lib.results import load_result

    s = settings(max_frames_per_subject=8, scratch=TrainConfig(epochs=1, batch_size=16, lr=1e-3, patience=1))
    out = tmp_path / "r.json"
    res = P.run_protocol("scratch:resnet18", "fakeau", {}, profile="smoke", settings=s, out=out,
                         device="cpu", progress=False)
    assert load_result(out)["key"] == res["key"]
    met = res["metrics"]
    assert len(met["honest"]["per_au"]) == len(fake.AUS) and len(met["runs"]) == 3
    assert 0 <= met["honest"]["mean"] <= 1 and "test_tuned" in met
    preds = A.load_predictions(res)
    assert len(preds["rows"]) == 8 * len(fake.SUBJECTS)

    def boom(*a, **k):
        raise AssertionError("should have reused the result file")
    monkeypatch.setattr(P, "run_fold", boom)
    again = P.run_protocol("scratch:resnet18", "fakeau", {}, profile="smoke", settings=s, out=out, device="cpu",
                           progress=False)
    assert again["metrics"] == res["metrics"]
    with pytest.raises(AssertionError, match="reused"):  # another config is not reused
        P.run_protocol("scratch:resnet18", "fakeau", {}, profile="smoke", settings=replace(s, val_fraction=0.4),
                       out=out, device="cpu", progress=False)
    out.write_text(out.read_text().replace('"mean"', '"mean" ', 1)[:-20])  # corrupt: recomputed, not read
    with pytest.warns(UserWarning, match="recomputing"), pytest.raises(AssertionError, match="reused"):
        P.run_protocol("scratch:resnet18", "fakeau", {}, profile="smoke", settings=s, out=out, device="cpu",
                       progress=False)


def test_fit_resumes_from_checkpoint(table, tmp_path):
    from au_lib.models.heads import LinearProbe
    from au_lib.train.finetune import fit

    feats = _features_with_labels(table)
    tr, va = np.arange(0, 150), np.arange(150, 216)
    cfg = TrainConfig(epochs=4, batch_size=32, lr=1e-2, patience=10, flip=False)
    torch.manual_seed(0)
    full = fit(LinearProbe(16, 4), (feats[tr], table.au[tr]), (feats[va], table.au[va]), cfg, seed=5)
    ckpt = tmp_path / "c.pt"
    torch.manual_seed(0)
    fit(LinearProbe(16, 4), (feats[tr], table.au[tr]), (feats[va], table.au[va]), replace(cfg), seed=5,
        checkpoint=ckpt)
    # resume from the finished checkpoint with a fresh model: same history, no extra epochs
    resumed = fit(LinearProbe(16, 4), (feats[tr], table.au[tr]), (feats[va], table.au[va]), cfg, seed=5,
                  checkpoint=ckpt)
    assert [h["val_f1"] for h in resumed.history] == [h["val_f1"] for h in full.history]
    with pytest.raises(ValueError, match="cannot resume, written with a different training config"):
        fit(LinearProbe(16, 4), (feats[tr], table.au[tr]), (feats[va], table.au[va]), replace(cfg, lr=1.0),
            checkpoint=ckpt)


def test_cli_evaluate_and_errors(tmp_path, capsys):
    from au_lib.cli import main

    out = tmp_path / "probe.json"
    rc = main(["probe", "--method", "probe:pixels", "--data", "fakeau", "--profile", "smoke",
               "--out", str(out), "--no-progress", "--device", "cpu"])
    assert rc == 0 and out.exists()
    assert "mean F1" in capsys.readouterr().out
    rc = main(["finetune", "--method", "probe:pixels", "--data", "fakeau", "--profile", "smoke"])
    assert rc == 2 and "finetune methods" in capsys.readouterr().err


def test_interrupted_protocol_resumes_finished_folds(tmp_path, monkeypatch):
    s = settings(max_frames_per_subject=6)
    out = tmp_path / "probe.json"
    real = P.run_fold
    calls = []

    def flaky(table, fold, *a, **k):
        calls.append(fold.index)
        if fold.index == 2 and calls.count(2) == 1:
            raise KeyboardInterrupt
        return real(table, fold, *a, **k)
    monkeypatch.setattr(P, "run_fold", flaky)
    with pytest.raises(KeyboardInterrupt):
        P.run_protocol("probe:pixels", "fakeau", {}, profile="smoke", settings=s, out=out, device="cpu", progress=False)
    assert not out.exists()
    res = P.run_protocol("probe:pixels", "fakeau", {}, profile="smoke", settings=s, out=out, device="cpu",
                         progress=False)
    assert calls == [1, 2, 2, 3]  # fold 1 was read back, not retrained
    assert [r["fold"] for r in res["metrics"]["runs"]] == [1, 2, 3]
    assert not (out.parent / "work").exists() or not any((out.parent / "work").iterdir())


def test_error_examples_are_mistakes_and_difficulty_table(tmp_path):
    s = settings(max_frames_per_subject=12)
    res = P.run_protocol("probe:pixels", "fakeau", {}, profile="smoke", settings=s, out=tmp_path / "p.json",
                         device="cpu", progress=False)
    table = P.load_table("fakeau", {}, ("rgb",), s.image_size, "smoke", 12)
    preds = A.load_predictions(res)
    thr = {r["fold"]: r["thresholds"] for r in res["metrics"]["runs"]}
    for k, au in enumerate(fake.AUS):
        score = dict(zip(preds["rows"].tolist(), preds["scores"][:, k].tolist()))
        fold = dict(zip(preds["rows"].tolist(), preds["fold"].tolist()))
        for r in A.error_examples(table, res, au, "fp", n=50):
            assert table.au[r, k] == 0 and score[r] >= thr[fold[r]][k]
        for r in A.error_examples(table, res, au, "fn", n=50):
            assert table.au[r, k] == 1 and score[r] < thr[fold[r]][k]
    with pytest.raises(KeyError, match="AU99"):
        A.error_examples(table, res, 99)
    # the all-present baseline: 2p/(1+p) per AU of each test fold, averaged over AUs then folds
    expect = []
    for k in np.unique(preds["fold"]):
        y = table.au[preds["rows"][preds["fold"] == k]].numpy()
        p = np.array([(y[:, j][y[:, j] >= 0] == 1).mean() for j in range(y.shape[1])])
        expect.append(np.mean(2 * p / (1 + p)))
    assert A.all_present_f1(table, res) == pytest.approx(float(np.mean(expect)), abs=1e-9)
    df = A.au_difficulty(table, res)
    assert list(df.index) == [f"AU{a}" for a in fake.AUS]
    assert df["occurrence"].between(0, 1).all() and (df["evidence"] > 0).all()  # every fake AU brightens a block


def test_scratch_runs_are_seeded_identical_and_resume_continues_the_same_stream(table, tmp_path):
    """Drop path / dropout draw from the global RNG: fit seeds it per fit, so two runs are identical,
    another seed differs, the caller's RNG is untouched, and an interrupted fit resumes bit-identically."""
    from au_lib.train.finetune import fit

    fold = registry.dataset_folds("fakeau")[0]
    m = P.Method("scratch", "vit")
    s = settings(report_test_tuned=False)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = P.run_fold(table, fold, m, s, seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(999)  # another global state must not matter
    b = P.run_fold(table, fold, m, s, seed=0)
    c = P.run_fold(table, fold, m, s, seed=1)
    np.testing.assert_array_equal(a.test_scores, b.test_scores)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert not np.array_equal(a.test_scores, c.test_scores)

    tr, va = np.arange(0, 150), np.arange(150, 216)
    cfg = replace(s.scratch, epochs=3, patience=10)
    assert s.drop_path > 0
    net = lambda: P.make_network(m, len(table.aus), s, seed=0)  # noqa: E731
    full = fit(net(), (table.x[tr], table.au[tr]), (table.x[va], table.au[va]), cfg, seed=7)

    def stop(model, epoch):
        if epoch == 2:
            raise KeyboardInterrupt  # after epoch 1's checkpoint, before epoch 2's
        return {}
    ckpt = tmp_path / "vit.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(net(), (table.x[tr], table.au[tr]), (table.x[va], table.au[va]), cfg, seed=7, checkpoint=ckpt,
            monitor=stop)
    resumed = fit(net(), (table.x[tr], table.au[tr]), (table.x[va], table.au[va]), cfg, seed=7, checkpoint=ckpt)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]


def test_paired_difference_verdicts_on_known_runs():
    def res(folds):
        return {"metrics": {"honest": {"per_fold_mean": folds}}}

    v = A.paired_difference(res([0.60, 0.62, 0.61]), res([0.50, 0.51, 0.52]))
    assert v["verdict"] == "a better" and v["difference"] == pytest.approx(0.1) and v["interval"][0] > 0
    assert A.paired_difference(res([0.40, 0.41, 0.42]), res([0.50, 0.52, 0.51]))["verdict"] == "b better"
    # a large shared fold effect with a constant gap: the paired interval is narrow
    v = A.paired_difference(res([0.30, 0.60, 0.90]), res([0.28, 0.58, 0.88]))
    assert v["verdict"] == "a better" and v["interval"][1] - v["interval"][0] < 1e-6
    v = A.paired_difference(res([0.60, 0.45, 0.52]), res([0.50, 0.55, 0.52]))
    assert v["verdict"] == "inconclusive" and v["interval"][0] < 0 < v["interval"][1]
    with pytest.raises(ValueError, match="same runs"):
        A.paired_difference(res([0.5, 0.6]), res([0.5, 0.6, 0.7]))


def test_result_path_tag_keeps_two_checkpoints_of_one_method_apart(tmp_path, monkeypatch):
    """Without a tag, a probe of a pre-trained encoder and of its initial weights would share one file
    (each run overwriting the other); the tag names them apart and both are reused afterwards."""
    m = P.Method("probe", "pixels")
    a = P.result_path("synthau", {"view": "bp4d"}, m, "cpu", root=tmp_path)
    b = P.result_path("synthau", {"view": "bp4d"}, m, "cpu", root=tmp_path, tag="init")
    assert a.name == "synthau-bp4d-probe_pixels.json" and b.name == "synthau-bp4d-probe_pixels-init.json"
    monkeypatch.setenv("AU_CACHE", str(tmp_path))
    monkeypatch.setitem(registry.DATASET_MODULES, "fakeau", "_fake_au")
    s = settings(report_test_tuned=False)
    kw = dict(profile="smoke", settings=s, device="cpu", progress=False)
    r1 = P.run_protocol("probe:pixels", "fakeau", {}, **kw)
    r2 = P.run_protocol("probe:pixels", "fakeau", {}, tag="init", **kw)
    assert Path(r1["path"]).name == "fakeau-probe_pixels.json" and Path(r2["path"]).name == "fakeau-probe_pixels-init.json"

"""The ablation sweeps wired to the real MCM pre-training and AU protocol, on a tiny smoke config."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from au_lib.experiments import ablations as abl
from au_lib.experiments.sweep import run_work_dir


@pytest.fixture(scope="module")
def tiny():
    return abl.ablation_settings("smoke", epochs=(0, 2), mask_ratios=(0.5,), nomix_ratios=(),
                                 ratio_modalities=("rgb", "fusion"))


def test_points_share_runs_and_map_epochs(tiny):
    pts = abl.all_points(("epochs", "mask-ratio"), tiny, "smoke")
    names = [p.name for p in pts]
    assert len(names) == len(set(names))
    # the 50% run of the epoch sweep is the 50% run of the ratio sweep: one run, epochs united
    assert len({p.run.name for p in pts}) == 1 and pts[0].run.epochs == (0, 2)
    assert [p.name for p in pts if p.labels["modality"] == "fusion"] == ["mcm-r0.50-e2-ep002-fusion"]
    # results made on other synthetic data are never reused: the generator version is in both keys
    from au_lib.data.synth.config import GENERATOR_VERSION

    assert pts[0].run.config["data"]["version"] == GENERATOR_VERSION
    assert all(p.evaluation["data_version"] == GENERATOR_VERSION for p in pts)
    assert abl.paper_epoch(2, tiny) == 100 and abl.paper_epoch(1, tiny) == 50
    cpu = abl.ablation_settings("cpu")
    assert [abl.paper_epoch(e, cpu) for e in cpu.epochs][-1] == 100
    assert 0.5 in cpu.mask_ratios and abl.ablation_settings("paper").epochs == tuple(range(0, 101, 10))


def test_hidden_fraction_and_verdicts():
    assert abl.hidden_fraction(0.5) == pytest.approx(0.7)
    assert abl.hidden_fraction(0.0) == pytest.approx(0.4)
    rows = [{"labels": {"epoch": e}, "metrics": {"mean": m, "std_over_folds": 0.01, "per_fold_mean": [m] * 3}}
            for e, m in ((0, 0.30), (1, 0.35), (2, 0.40))]
    a = abl.assess_epochs(rows)
    assert a["best_is_last"] and a["steps_up"] == 2 and abl.verdict_epochs(a).startswith("ours agrees")
    rows = [{"labels": {"mask_ratio": r}, "metrics": {"mean": m, "std_over_folds": 0.01, "per_fold_mean": [m] * 3}}
            for r, m in ((0.3, 0.35), (0.5, 0.40), (0.7, 0.30))]
    a = abl.assess_mask_ratio(rows)
    assert a["best_ratio"] == 0.5 and a["drop_above"] == pytest.approx(10.0)
    assert abl.verdict_mask_ratio(a).startswith("ours agrees")


def test_bad_settings_are_rejected(tiny):
    with pytest.raises(ValueError, match="epoch 5"):
        dataclasses.replace(tiny, epochs=(0, 5))
    with pytest.raises(ValueError, match="mask ratios"):
        dataclasses.replace(tiny, mask_ratios=(1.0,))
    with pytest.raises(ValueError, match="unknown sweep"):
        abl.sweep_points("nonsense", tiny, "smoke")
    with pytest.raises(ValueError, match="resplit needs method='probe'"):
        dataclasses.replace(tiny, method="finetune", resplit=True)
    with pytest.raises(ValueError, match="probe_grid must be 1..4"):
        dataclasses.replace(tiny, probe_grid=5)
    with pytest.raises(ValueError, match="only for method='probe'"):
        dataclasses.replace(tiny, method="finetune", probe_grid=2)


def test_resplit_scores_each_seed_on_its_own_subject_partition(tiny, tmp_path, monkeypatch):
    """Repeated 3-fold CV: with ``resplit`` each protocol seed draws its own partition of the
    subjects (3 x seeds runs per point), and the evaluation config records it (no reuse across)."""
    from au_lib.data.registry import dataset_folds
    from au_lib.experiments import protocol as P
    from au_lib.models.mcm import MCM

    torch.set_num_threads(1)
    settings = dataclasses.replace(tiny, resplit=True, protocol=dataclasses.replace(tiny.protocol, seeds=(0, 1)))
    ck = tmp_path / "init.pt"
    torch.manual_seed(0)
    from au_lib.train.engine import save_checkpoint

    save_checkpoint(ck, model=MCM(settings.pretrain.model), epoch=0, step=0, config=settings.pretrain.to_dict())
    seen = []
    real = P.run_fold

    def spy(table, fold, method, s, *, seed, **kw):
        seen.append((seed, tuple(sorted(fold.test))))
        return real(table, fold, method, s, seed=seed, **kw)

    monkeypatch.setattr(P, "run_fold", spy)
    met, extra = abl.probe_protocol(ck, "synthau", {"view": "bp4d"}, "rgb", settings.protocol, "smoke",
                                    resplit=True, grid=2)
    assert len(met["honest"]["per_fold_mean"]) == 6 and extra["partitions"] == 2
    assert extra["feature_dim"] == 4 * settings.pretrain.model.embed_dim  # a 2 x 2 grid of tokens
    tests = {seed: {t for s_, t in seen if s_ == seed} for seed in (0, 1)}
    assert len(tests[0]) == len(tests[1]) == 3 and tests[0] != tests[1]
    for seed in (0, 1):  # each seed's three test sets partition the subjects
        assert sorted(s for t in tests[seed] for s in t) == sorted(
            s for f in dataset_folds("synthau", view="bp4d", profile="smoke", seed=seed) for s in f.test)
    pts = abl.sweep_points("mask-ratio", settings, "smoke")
    assert all(p.evaluation["resplit"] is True for p in pts)
    assert all("resplit" not in p.evaluation and "probe_grid" not in p.evaluation
               for p in abl.sweep_points("mask-ratio", tiny, "smoke"))
    assert abl.sweep_points("epochs", dataclasses.replace(tiny, probe_grid=2), "smoke")[0].evaluation["probe_grid"] == 2
    with pytest.raises(ValueError, match="drop 'seed'"):
        abl.probe_protocol(ck, "synthau", {"view": "bp4d", "seed": 3}, "rgb", settings.protocol, "smoke", resplit=True)


def test_real_sweep_is_deterministic_and_reused(tiny, tmp_path):
    torch.set_num_threads(1)
    kw = dict(profile="smoke", settings=tiny, device="cpu", progress=False)
    pts, rep1 = abl.run_ablations(("epochs", "mask-ratio"), results_dir=tmp_path / "r1", work_dir=tmp_path / "w1", **kw)
    assert sorted(rep1.computed) == sorted(p.name for p in pts) and rep1.pretrained == ["mcm-r0.50-e2"]
    run_dir = run_work_dir(tmp_path / "w1", pts[0].run)
    assert {f.name for f in run_dir.glob("epoch_*.pt")} == {"epoch_0000.pt", "epoch_0002.pt"}
    for r in rep1.results.values():
        m = r["metrics"]
        assert 0.0 <= m["mean"] <= 1.0 and len(m["per_au"]) == 12 and len(m["per_fold_mean"]) == 3
        assert set(m["recon_heldout"]) == {"rgb", "depth", "thermal", "mean"}
    # the pre-trained checkpoint reconstructs the held-out frames better than its initialisation
    e0, e2 = (rep1.results[f"mcm-r0.50-e2-ep00{e}-rgb"]["metrics"]["recon_heldout"]["mean"] for e in (0, 2))
    assert e2 < e0
    # a second machine-identical run from scratch gives the same numbers
    _, rep2 = abl.run_ablations(("epochs", "mask-ratio"), results_dir=tmp_path / "r2", work_dir=tmp_path / "w2", **kw)
    for name, r in rep1.results.items():
        assert rep2.results[name]["metrics"] == r["metrics"], name
    # and a third call reuses everything without touching the checkpoints
    for f in run_dir.glob("*.pt"):
        f.unlink()
    _, rep3 = abl.run_ablations(("epochs", "mask-ratio"), results_dir=tmp_path / "r1", work_dir=tmp_path / "w1", **kw)
    assert rep3.computed == [] and rep3.pretrained == [] and len(rep3.reused) == len(pts)


def test_cli_lists_points(tmp_path, capsys):
    from au_lib.cli import main

    assert main(["ablate", "epochs", "--profile", "smoke", "--results", str(tmp_path), "--list"]) == 0
    out = capsys.readouterr().out
    assert "todo" in out and "0/3 points done" in out
    for bad in ("2/2", "x"):  # rejected before anything is computed
        assert main(["ablate", "epochs", "--profile", "smoke", "--shard", bad, "--results", str(tmp_path)]) == 2
        assert "--shard" in capsys.readouterr().err


def test_all_present_baseline_is_scored_on_the_sweeps_test_sets(tiny):
    """2p/(1+p) per AU of each test fold (p: the AU's rate there), averaged over AUs, then over the
    runs; with ``resplit`` the runs are the folds of each seed's own partition."""
    import numpy as np

    from au_lib.data.registry import dataset_folds
    from au_lib.experiments.protocol import load_table

    s = dataclasses.replace(tiny, resplit=True, protocol=dataclasses.replace(tiny.protocol, seeds=(0, 1)))
    p = s.protocol
    table = load_table("synthau", {"view": "bp4d"}, ("rgb", "depth", "thermal"), p.image_size, "smoke",
                       p.max_frames_per_subject)
    runs = []
    for seed in (0, 1):
        for fold in dataset_folds("synthau", view="bp4d", profile="smoke", seed=seed):
            y = table.au[table.rows(fold.test)].numpy()
            rate = np.array([(y[:, j][y[:, j] >= 0] == 1).mean() for j in range(y.shape[1])])
            runs.append(100 * np.mean(2 * rate / (1 + rate)))
    got = abl.all_present_baseline(s, "smoke")
    assert got["mean"] == pytest.approx(np.mean(runs), abs=1e-6)
    assert got["se"] == pytest.approx(np.std(runs, ddof=1) / np.sqrt(6), abs=1e-6)
    # one partition only: the same three folds for every seed
    same = abl.all_present_baseline(dataclasses.replace(s, resplit=False), "smoke")
    assert same["mean"] == pytest.approx(np.mean(runs[:3]), abs=1e-6)


def test_initial_mcm_is_the_pretraining_start_written_once(tmp_path, monkeypatch):
    from au_lib.experiments.pretrained import initial_mcm
    from au_lib.models.mcm import MCM, load_pretrained_encoder
    from au_lib.train.pretrain import resolve_config

    monkeypatch.setenv("AU_CACHE", str(tmp_path))
    path = initial_mcm("smoke")
    assert path == tmp_path / "mcm" / "smoke-init" / "epoch_0000.pt" and path.is_file()
    cfg = resolve_config("smoke")
    want = MCM(cfg.model, seed=cfg.seed).encoder.state_dict()
    got = load_pretrained_encoder(path).state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    stamp = path.stat().st_mtime_ns
    assert initial_mcm("smoke") == path and path.stat().st_mtime_ns == stamp  # reused, not rewritten

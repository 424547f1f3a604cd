"""The robust photometric penalty and the per-setting runs that measure the cpu profile's departures
from the paper (CPU, 1 thread, a few seconds)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from au_lib.experiments.tcae_settings import paper_value_changes, setting_effects, with_paper_value
from au_lib.models.tcae import PAPER_SETTINGS, ROBUST_EPS, ROBUST_POWER, TCAE, tcae_config
from au_lib.train.tcae import PAPER_TRAINING, ToyPairs, fixed_batch, train_config

torch.set_num_threads(1)


def test_robust_photometric_penalty():
    m = TCAE(replace(tcae_config("smoke"), photometric="robust"))
    a = torch.zeros(2, 3, 4, 4)
    b = torch.full((2, 3, 4, 4), 0.05)
    b[1] = 0.5
    err = m.photometric_error(a, b)
    expect = torch.tensor([(0.05 ** 2 + ROBUST_EPS) ** ROBUST_POWER, (0.5 ** 2 + ROBUST_EPS) ** ROBUST_POWER])
    torch.testing.assert_close(err, expect)
    # a residual ten times larger costs far less than ten times more (L1: exactly ten)
    assert float(err[1] / err[0]) < 3
    l1 = TCAE(replace(tcae_config("smoke"), photometric="l1")).photometric_error(a, b)
    torch.testing.assert_close(l1, torch.tensor([0.05, 0.5]))
    terms = m.losses(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    assert torch.isfinite(terms["total"]) and float(terms["recon"]) > 0
    with pytest.raises(ValueError, match="photometric must be 'l1' or 'robust'"):
        replace(tcae_config("smoke"), photometric="l2")
    assert PAPER_SETTINGS["photometric"] == "l1" == tcae_config("paper").photometric


def test_paper_value_changes_put_every_setting_back():
    cfg = train_config("cpu")
    changes = paper_value_changes(cfg)
    assert {"max_displacement", "zero_init_flow", "embedding_loss", "jitter", "optimizer", "aux_warmup"} <= set(changes)
    for name, change in changes.items():  # each change touches its own setting and nothing else
        one = with_paper_value(cfg, change)
        assert name not in paper_value_changes(one)
        assert len(paper_value_changes(one)) == len(changes) - 1, name
    back = cfg
    for change in changes.values():
        back = with_paper_value(back, change)
    assert paper_value_changes(back) == {}
    assert all(getattr(back.model, k) == v for k, v in PAPER_SETTINGS.items())
    assert all(getattr(back, k) == v for k, v in PAPER_TRAINING.items())


def test_setting_effects_trains_scores_and_reuses(tmp_path):
    cfg = train_config("smoke", model_overrides={"composition": "add"}, steps=4, checkpoint_every=4, log_every=2,
                       pool_pairs=None, aux_warmup=2)
    data = ToyPairs(n=16, image_size=32)
    batch = fixed_batch(ToyPairs(n=8, image_size=32, seed=1), 8)
    res = setting_effects(cfg, batch, tmp_path / "results", tmp_path / "runs", names=["composition", "aux_warmup"],
                          data=data, profile="smoke", progress=False)
    assert set(res) == {"composition", "aux_warmup"}
    for name, r in res.items():
        assert r["config"]["setting"] == name and r["provenance"]["profile"] == "smoke"
        assert {"epe_au", "epe_pose", "epe_au_zero"} <= set(r["metrics"])
    assert res["composition"]["config"]["train"]["model"]["composition"] == "mix"
    stamp = (tmp_path / "results" / "paper-composition.json").stat().st_mtime_ns
    again = setting_effects(cfg, batch, tmp_path / "results", tmp_path / "runs", names=["composition"], data=data,
                            profile="smoke", progress=False)
    assert again["composition"]["metrics"] == res["composition"]["metrics"]
    assert (tmp_path / "results" / "paper-composition.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    with pytest.raises(KeyError, match="not settings where this profile departs"):
        setting_effects(cfg, batch, tmp_path / "results", tmp_path / "runs", names=["weights"], data=data)


def test_plot_setting_effects_draws_a_bar_per_run():
    import matplotlib

    matplotlib.use("Agg")
    from au_lib.viz.tcae import plot_setting_effects

    ref = {"epe_au": 0.3, "epe_au_zero": 0.5, "epe_pose": 0.6, "epe_pose_zero": 1.2}
    fig = plot_setting_effects(ref, {"composition": {**ref, "epe_au": 0.5}, "jitter": {**ref, "epe_pose": 1.5}})
    au_ax, pose_ax = fig.axes[:2]
    assert [round(p.get_width(), 3) for p in au_ax.patches] == [0.6, 1.0, 0.6]
    assert [round(p.get_width(), 3) for p in pose_ax.patches] == [0.5, 0.5, 1.25]
    assert [t.get_text() for t in au_ax.get_yticklabels()] == ["profile as is", "paper's composition", "paper's jitter"]


def test_pose_warmup_hands_the_reconstruction_to_both_fields_before_the_other_terms():
    from au_lib.train.tcae import pose_only

    cfg = train_config("smoke", model_overrides={"pose_first": True, "composition": "add"}, aux_warmup=6, pose_warmup=2)
    assert [pose_only(cfg, k) for k in range(4)] == [True, True, False, False]
    assert pose_only(replace(cfg, pose_warmup=None), 0) is None  # the model's own rule: pose_first while aux is off
    torch.manual_seed(0)
    m = TCAE(replace(cfg.model, zero_init_flow=False))
    src, tgt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = m.losses(src, tgt, aux_scale=0.0, pose_only=True)["_output"]
    torch.testing.assert_close(out.disp, out.disp_pose)
    out = m.losses(src, tgt, aux_scale=0.0, pose_only=False)["_output"]
    torch.testing.assert_close(out.disp, out.disp_pose + out.disp_au)
    out = m.losses(src, tgt, aux_scale=0.0)["_output"]  # default: pose_first and aux_scale == 0
    torch.testing.assert_close(out.disp, out.disp_pose)
    with pytest.raises(ValueError, match="pose_warmup must be >= 0"):
        replace(cfg, pose_warmup=-1)


def test_with_length_scales_every_phase():
    from au_lib.train.tcae import with_length

    cfg = train_config("cpu")
    half = with_length(cfg, cfg.steps // 2)
    assert half.steps == cfg.steps // 2
    assert half.aux_warmup == cfg.aux_warmup // 2 and half.pose_warmup == cfg.pose_warmup // 2
    assert half.warmup_steps == round(cfg.warmup_steps / 2)
    assert with_length(replace(cfg, pose_warmup=None), 10).pose_warmup is None
    with pytest.raises(ValueError, match="steps must be >= 1"):
        with_length(cfg, 0)

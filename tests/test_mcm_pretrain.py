"""MCM pre-training loop: resume gives the same next steps, logs, checkpoints, collation, CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from au_lib.train.engine import JsonlLogger, load_checkpoint, step_generator
from au_lib.train.pretrain import (RandomRGBDT, collate_rgbdt, load_pretrained_mcm, pretrain,
                                   resolve_config)

torch.set_num_threads(1)


def small_cfg(**kw):
    cfg = resolve_config("smoke", epochs=3, batch_size=8, num_samples=32, save_epochs=(2,), warmup_epochs=1)
    return replace(cfg, **kw)


def test_resume_reproduces_uninterrupted_run(tmp_path):
    cfg = small_cfg()
    ds = RandomRGBDT(32, 32, seed=1)
    full = pretrain(cfg, ds, tmp_path / "full", show_progress=False)
    part = pretrain(cfg, ds, tmp_path / "part", show_progress=False, stop_after_epochs=1)
    assert part.history[-1]["epoch"] == 1
    resumed = pretrain(cfg, ds, tmp_path / "part", show_progress=False)
    assert resumed.resumed_from_epoch == 1
    a = load_checkpoint(full.checkpoint)
    b = load_checkpoint(resumed.checkpoint)
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"] == 12
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["loss"] for r in full.history] == pytest.approx([r["loss"] for r in resumed.history], rel=1e-6)
    # sweep checkpoint kept, log has one record per epoch
    assert (tmp_path / "full" / "epoch_0002.pt").is_file()
    log = JsonlLogger.read(tmp_path / "part" / "log.jsonl")
    assert [r["epoch"] for r in log if r["kind"] == "epoch"] == [1, 2, 3]
    # a finished run returns at once and a changed config refuses to resume
    again = pretrain(cfg, ds, tmp_path / "full", show_progress=False)
    assert len(again.history) == 3
    with pytest.raises(ValueError, match="cannot resume"):
        pretrain(replace(cfg, batch_size=4), ds, tmp_path / "full", show_progress=False)
    model, cfg2, _ = load_pretrained_mcm(full.checkpoint)
    assert cfg2 == cfg and model.cfg == cfg.model


def test_loss_decreases_and_rgb_only_data_trains(tmp_path):
    cfg = small_cfg(epochs=4, blr=3e-3, save_epochs=())
    res = pretrain(cfg, RandomRGBDT(32, 32, seed=2), tmp_path / "a", show_progress=False)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    rgb_only = RandomRGBDT(32, 32, seed=2, modalities=("rgb",))
    res = pretrain(replace(cfg, epochs=1), rgb_only, tmp_path / "b", show_progress=False)
    rec = res.history[-1]
    assert rec["loss_rgb"] == rec["loss_rgb"] and rec["loss_depth"] != rec["loss_depth"]  # NaN: no target


def test_collate_mixed_modalities_and_bad_samples():
    full = RandomRGBDT(2, 16)[0]
    rgb = {"rgb": full["rgb"]}
    batch = collate_rgbdt([full, rgb])
    assert batch["x5"].shape == (2, 5, 16, 16)
    assert batch["available"].tolist() == [[True] * 5, [True, True, True, False, False]]
    with pytest.raises(ValueError, match="'depth' must be 1x16x16"):
        collate_rgbdt([{"rgb": full["rgb"], "depth": torch.zeros(1, 8, 8)}])
    with pytest.raises(KeyError, match="no 'rgb'"):
        collate_rgbdt([{"depth": full["depth"]}])


def test_dataset_too_small_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="fewer than one global batch"):
        pretrain(small_cfg(), RandomRGBDT(4, 32), tmp_path, show_progress=False)


def test_step_generator_is_deterministic_and_distinct():
    a = torch.rand(4, generator=step_generator(0, 5, 0))
    assert torch.equal(a, torch.rand(4, generator=step_generator(0, 5, 0)))
    assert not torch.equal(a, torch.rand(4, generator=step_generator(0, 5, 1)))
    assert not torch.equal(a, torch.rand(4, generator=step_generator(0, 6, 0)))


def test_cli_pretrain_random_data(tmp_path, capsys):
    from au_lib.cli import main

    rc = main(["pretrain", "--data", "random", "--profile", "smoke", "--out", str(tmp_path),
               "--epochs", "1", "--num-samples", "32", "--batch-size", "8", "--no-progress"])
    assert rc == 0
    assert (tmp_path / "last.pt").is_file()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["extra"]["epochs_done"] == 1 and summary["metrics"]["loss"] > 0
    rc = main(["pretrain", "--data", "random", "--profile", "smoke", "--out", str(tmp_path / "x"),
               "--save-epochs", "1,a"])
    assert rc == 2
    assert "--save-epochs" in capsys.readouterr().err


def test_torch_compile_trains_like_eager_and_saves_plain_weights(tmp_path):
    """``compile=True`` (torch.compile of the training module): same losses as eager to float
    tolerance, and the checkpoint holds the bare model's keys (no ``_orig_mod.`` prefix)."""
    cfg = small_cfg(epochs=1, save_epochs=())
    ds = RandomRGBDT(32, 32, seed=3)
    eager = pretrain(cfg, ds, tmp_path / "eager", show_progress=False)
    compiled = pretrain(replace(cfg, compile=True), ds, tmp_path / "compiled", show_progress=False)
    assert compiled.history[-1]["loss"] == pytest.approx(eager.history[-1]["loss"], rel=1e-3)
    model, cfg2, _ = load_pretrained_mcm(compiled.checkpoint)
    assert cfg2.compile and not any("_orig_mod" in k for k in model.state_dict())

"""Fine-tuning on the engine: timm's warm-up + cosine schedule (layer decay kept), bf16 autocast on
CPU, and DDP batch splitting (two gloo processes end identical)."""

from __future__ import annotations

import importlib
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
fake = importlib.import_module("_fake_au")

from au_lib.train import engine  # noqa: E402
from au_lib.train.finetune import TrainConfig, fit, materialize  # noqa: E402
from _distributed import free_port, set_rank_env


@pytest.fixture(scope="module")
def table():
    return materialize(fake.open_dataset(modalities=("rgb",)), aus=fake.AUS)


def test_cosine_scheduler_warms_up_from_zero_and_keeps_layer_decay_scales():
    w1, w2 = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([{"params": [w1], "lr": 1e-3 * 0.25, "lr_scale": 0.25}, {"params": [w2], "lr": 1e-3}],
                            lr=1e-3)
    sched = engine.cosine_scheduler(opt, total_updates=100, warmup_updates=10)
    lrs = []
    for k in range(101):
        sched.step_update(k)
        lrs.append([g["lr"] for g in opt.param_groups])
    lrs = np.array(lrs)
    assert lrs[0].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(lrs[5], [0.5e-3 * 0.25, 0.5e-3])  # linear warm-up
    np.testing.assert_allclose(lrs[10], [1e-3 * 0.25, 1e-3])  # peak: the scale applied once, not twice
    np.testing.assert_allclose(lrs[55], [0.5e-3 * 0.25, 0.5e-3], rtol=1e-6)  # half-way down the cosine
    np.testing.assert_allclose(lrs[100], [0.0, 0.0], atol=1e-12)
    assert (np.diff(lrs[10:, 1]) <= 1e-15).all()


def test_fit_follows_the_schedule(table):
    from au_lib.models.heads import LinearProbe

    x = table.au.clamp_min(0) + 0.1 * torch.randn(len(table), 4, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(epochs=4, batch_size=54, lr=1e-2, warmup_epochs=1, patience=10, flip=False)
    res = fit(LinearProbe(4, 4), (x[:162], table.au[:162]), (x[162:], table.au[162:]), cfg, seed=0)
    # 3 updates per epoch; the lr logged after each epoch is the one of its last update (k = 3e - 1)
    total, warm = 12, 3
    expect = [0.5 * 1e-2 * (1 + math.cos(math.pi * (3 * e - 1 - warm) / (total - warm))) for e in (1, 2, 3, 4)]
    expect[0] = 1e-2 * 2 / 3  # update 2 is still in the warm-up
    np.testing.assert_allclose([h["lr"] for h in res.history], expect, rtol=1e-6)


def test_finetune_runs_under_bf16_autocast_on_cpu(table):
    from au_lib.data import registry
    from au_lib.experiments import protocol as P

    registry.DATASET_MODULES.setdefault("fakeau", "_fake_au")
    fold = registry.dataset_folds("fakeau")[0]
    s = P.protocol_settings("smoke", max_frames_per_subject=None, report_test_tuned=False)
    m = P.Method("scratch", "vit")
    fp32 = P.run_fold(table, fold, m, s, seed=0)
    calls = []
    real = engine.autocast

    def spy(device, amp=True):
        calls.append(engine.amp_dtype(device, amp))
        return real(device, amp)
    mp_ = pytest.MonkeyPatch()
    mp_.setattr(engine, "autocast", spy)
    try:
        bf16 = P.run_fold(table, fold, m, replace(s, amp="bf16"), seed=0)
    finally:
        mp_.undo()
    assert calls and set(calls) == {torch.bfloat16}
    assert all(np.isfinite(h["train_loss"]) for h in bf16.history)
    assert np.isfinite(bf16.test_scores).all() and 0 <= np.nanmean(bf16.f1) <= 1
    assert not np.array_equal(fp32.test_scores, bf16.test_scores)  # bf16 really computed something else


def _worker(rank: int, world: int, port: int, out: str) -> None:
    set_rank_env(rank, world, port)
    torch.set_num_threads(1)
    from au_lib.train.engine import cleanup_distributed, init_distributed

    init_distributed(backend="gloo")
    try:
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(40, 6, generator=g), (torch.rand(40, 3, generator=g) < 0.5).float()
        torch.manual_seed(rank)  # a different init per rank: DDP must broadcast rank 0's
        model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.2), nn.ReLU(), nn.Linear(8, 3))
        res = fit(model, (x[:32], y[:32]), (x[32:], y[32:]), TrainConfig(epochs=2, batch_size=8, lr=1e-2,
                  warmup_epochs=0.5, patience=5, flip=False), seed=1, device="cpu")
        torch.save({"state": res.model.state_dict(), "history": res.history}, f"{out}/rank{rank}.pt")
    finally:
        cleanup_distributed()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_fit_under_ddp_splits_batches_and_ranks_end_identical(tmp_path):
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), f"ranks differ in {k}"
    assert len(r0["history"]) == 2
    assert r0["history"][0]["train_loss"] != r1["history"][0]["train_loss"]  # each rank saw its own half

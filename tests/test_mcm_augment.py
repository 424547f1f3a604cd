"""MAE's pre-training augmentation (random resized crop 0.2-1, bicubic, horizontal flip), applied
identically to RGB, depth and thermal of a sample, deterministic in (seed, epoch, index)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.utils.data import Dataset

from au_lib.train.pretrain import (PRETRAIN_PROFILES, AlignedAugment, EpochIndices, RandomRGBDT, pretrain,
                                   resolve_config)


class Tied(Dataset):
    """Depth = the red channel, thermal = the blue channel: alignment is checkable pixel by pixel.
    The image is asymmetric (a ramp plus a corner square) so crops and flips are visible."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
        rgb = torch.stack([xx, yy, torch.rand(32, 32, generator=g)]) * 0.8
        rgb[:, :6, :6] = 1.0
        return {"rgb": rgb, "depth": rgb[:1].clone(), "thermal": rgb[2:].clone(), "subject": "S", "frame": i}


def test_modalities_stay_aligned_through_crop_and_flip():
    aug = AlignedAugment(Tied(), 24, scale=(0.2, 1.0), hflip=True, seed=0)
    flips, crops = 0, 0
    for i in range(16):
        for epoch in (0, 1):
            s = aug[(epoch, i)]
            assert s["rgb"].shape == (3, 24, 24) and s["depth"].shape == s["thermal"].shape == (1, 24, 24)
            assert torch.equal(s["depth"][0], s["rgb"][0]) and torch.equal(s["thermal"][0], s["rgb"][2])
            assert 0 <= s["rgb"].min() and s["rgb"].max() <= 1
            top, left, h, w, flip = aug.params(epoch, i, 32, 32)
            assert 0.2 * 32 * 32 - 1e-6 <= h * w <= 32 * 32 and 3 / 4 - 0.1 <= w / h <= 4 / 3 + 0.1
            flips += flip
            crops += (h, w) != (32, 32)
            # the ramp x runs left->right unless flipped
            assert (s["rgb"][0, :, -1].mean() > s["rgb"][0, :, 0].mean()) != flip
    assert 8 <= flips <= 24 and crops >= 24


def test_draws_are_deterministic_per_seed_epoch_index():
    a, b = AlignedAugment(Tied(), 24, seed=0), AlignedAugment(Tied(), 24, seed=0)
    assert torch.equal(a[(3, 5)]["rgb"], b[(3, 5)]["rgb"])
    assert a.params(0, 5, 32, 32) != a.params(1, 5, 32, 32)  # a new crop every epoch
    assert a.params(0, 5, 32, 32) != AlignedAugment(Tied(), 24, seed=1).params(0, 5, 32, 32)
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    a[(0, 1)]
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    off = AlignedAugment(Tied(), 32, scale=None, hflip=False)
    assert torch.equal(off[(0, 2)]["rgb"], Tied()[2]["rgb"])  # both switches off: identity
    with pytest.raises(ValueError, match="crop scale"):
        AlignedAugment(Tied(), 24, scale=(0.0, 1.0))


def test_epoch_indices_follow_the_sampler_epoch():
    from torch.utils.data import DistributedSampler

    s = EpochIndices(DistributedSampler(range(8), num_replicas=1, rank=0, shuffle=True, seed=0))
    s.set_epoch(2)
    pairs = list(s)
    assert {e for e, _ in pairs} == {2} and sorted(i for _, i in pairs) == list(range(8))


def test_profiles_augment_and_pretraining_runs_with_it(tmp_path):
    for prof in ("cpu", "paper"):
        assert PRETRAIN_PROFILES[prof].crop_scale == (0.2, 1.0) and PRETRAIN_PROFILES[prof].hflip
    cfg = resolve_config("smoke", epochs=1, batch_size=8, save_epochs=())
    on = pretrain(cfg, RandomRGBDT(16, 32, seed=3), tmp_path / "on", device="cpu", show_progress=False)
    off = pretrain(replace(cfg, crop_scale=None, hflip=False), RandomRGBDT(16, 32, seed=3), tmp_path / "off",
                   device="cpu", show_progress=False)
    assert on.history[0]["loss"] != off.history[0]["loss"]


def test_cli_switches_reach_the_config(tmp_path, capsys):
    import json

    from au_lib.cli import main

    common = ["pretrain", "--data", "random", "--profile", "smoke", "--epochs", "1", "--num-samples", "16",
              "--batch-size", "8", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "a"), "--no-crop", "--no-hflip"]) == 0
    cfg = json.loads((tmp_path / "a" / "summary.json").read_text())["config"]
    assert cfg["crop_scale"] is None and cfg["hflip"] is False
    assert main([*common, "--out", str(tmp_path / "b"), "--crop-scale", "0.5,1"]) == 0
    cfg = json.loads((tmp_path / "b" / "summary.json").read_text())["config"]
    assert cfg["crop_scale"] == [0.5, 1.0] and cfg["hflip"] is True
    assert main([*common, "--out", str(tmp_path / "c"), "--crop-scale", "half"]) == 2
    assert "--crop-scale" in capsys.readouterr().err

"""TCAE: shapes, sizes, conventions, losses, training, resume, metrics (CPU, 1 thread, < 60 s)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from au_lib.experiments.disentanglement import disentanglement_metrics, end_point_error, leakage
from au_lib.models.tcae import TCAE, TCAEConfig, count_parameters, load_tcae, tcae_config
from au_lib.ops.warp import displacement_to_official_flow, official_flow_to_displacement, warp
from au_lib.models.tcae import PAPER_SETTINGS
from au_lib.train.tcae import ToyPairs, fixed_batch, jitter_pairs, train_config, train_tcae

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def smoke_model():
    torch.manual_seed(0)
    return TCAE(tcae_config("smoke"))


def test_shapes_and_encode(smoke_model):
    x = torch.rand(3, 3, 32, 32)
    y = torch.rand(3, 3, 32, 32)
    au, pose = smoke_model.encode(x)
    assert au.shape == (3, 256) and pose.shape == (3, 256)
    out = smoke_model(x, y)
    for name in ("disp_au", "disp_pose", "disp", "attention"):
        assert getattr(out, name).shape == (3, 2, 32, 32), name
    for name in ("recon", "au_changed", "pose_changed"):
        assert getattr(out, name).shape == (3, 3, 32, 32), name
    # the paper's composition: the mix is a per-pixel convex combination of the two branches
    out = TCAE(replace(smoke_model.cfg, composition="mix", zero_init_flow=False))(x, y)
    torch.testing.assert_close(out.attention.sum(1), torch.ones(3, 32, 32))
    mixed = out.attention[:, :1] * out.disp_au + out.attention[:, 1:] * out.disp_pose
    torch.testing.assert_close(out.disp, mixed)
    # displacement bound: tanh * max_displacement in normalised units = (W-1)/2 px
    assert out.disp_au.abs().max() <= 15.5 + 1e-4


def test_paper_sizes_match_official_code():
    m = TCAE(tcae_config("paper"))
    enc = count_parameters(m.encoder)
    dec = count_parameters(m.au_decoder)
    # counted from mysee1989/TCAE models_multiview.py: encoder ~8.04 M, each decoder ~3.34 M
    assert abs(enc - 8.04e6) / 8.04e6 < 0.01, enc
    assert abs(dec - 3.34e6) / 3.34e6 < 0.01, dec
    with torch.no_grad():
        au, pose = m.encode(torch.rand(1, 3, 256, 256))
    assert au.shape == pose.shape == (1, 256)


def test_bad_inputs_are_named(smoke_model):
    with pytest.raises(ValueError, match="source must be Bx3x32x32"):
        smoke_model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="stride-2 convs"):
        TCAEConfig(image_size=64, trunk_channels=(8,), branch_channels=(16,), decoder_channels=(8, 8))
    with pytest.raises(ValueError, match="attention"):
        replace(tcae_config("smoke"), attention="sigmoid")
    with pytest.raises(FileNotFoundError, match="no_such.pt"):
        load_tcae("/nonexistent/no_such.pt")
    with pytest.raises(ValueError, match="optimizer"):
        train_config("smoke", optimizer="lbfgs")


def test_official_flow_convention_round_trip_and_matches_grid_sample():
    g = torch.Generator().manual_seed(1)
    flow = (torch.rand(2, 2, 9, 13, generator=g) - 0.5) * 0.4       # official code: normalised, x_hat = x + flow
    d = official_flow_to_displacement(flow)
    torch.testing.assert_close(displacement_to_official_flow(d), flow)
    # sign and unit: a flow of +2/(W-1) in x is a displacement of -1 px
    one = torch.zeros(1, 2, 9, 13)
    one[:, 0] = 2.0 / 12
    torch.testing.assert_close(official_flow_to_displacement(one)[:, 0], -torch.ones(1, 9, 13))
    # what the official code samples: grid_sample(S, identity + flow), align_corners=True (PyTorch 0.4.1)
    src = torch.rand(2, 3, 9, 13, generator=g)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 9), torch.linspace(-1, 1, 13), indexing="ij")
    grid = torch.stack([xs, ys], -1)[None] + flow.permute(0, 2, 3, 1)
    ref = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    torch.testing.assert_close(warp(src, d, padding_mode="zeros"), ref, atol=1e-5, rtol=1e-5)


class _FixedDecoder(torch.nn.Module):
    """Returns +d on its first call (the change) and -d on its second (the morph back)."""

    def __init__(self, d: torch.Tensor):
        super().__init__()
        self.d, self.calls = d, 0

    def forward(self, a, b):
        self.calls += 1
        sign = 1.0 if self.calls % 2 == 1 else -1.0
        return sign * self.d.expand(a.shape[0], -1, -1, -1), torch.zeros(a.shape[0], 1, *self.d.shape[-2:])


def test_cycle_losses_vanish_for_exact_inverse_warps():
    model = TCAE(replace(tcae_config("smoke"), padding_mode="zeros", photometric="l1")).eval()
    d_au = torch.zeros(1, 2, 32, 32)
    d_au[:, 0, 10:20, 10:20] = 2.0                    # integer shifts: bilinear weights are exactly 0/1
    d_pose = torch.zeros(1, 2, 32, 32)
    d_pose[:, 0], d_pose[:, 1] = 3.0, -1.0
    model.au_decoder, model.pose_decoder = _FixedDecoder(d_au), _FixedDecoder(d_pose)
    src = torch.zeros(2, 3, 32, 32)
    src[:, :, 6:26, 6:26] = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        terms = model.losses(src, src.flip(-1))
    assert float(terms["cycle_pose"]) == 0.0
    # a local AU field is not invertible by -d near its edges: the AU cycle is not zero there
    assert float(terms["cycle_au"]) > 0
    assert float(terms["sparsity"]) > 0


def test_cycle_losses_vanish_for_global_inverse_pair():
    model = TCAE(replace(tcae_config("smoke"), padding_mode="zeros", photometric="l1")).eval()
    d = torch.zeros(1, 2, 32, 32)
    d[:, 0], d[:, 1] = -2.0, 1.0
    model.au_decoder, model.pose_decoder = _FixedDecoder(d), _FixedDecoder(2 * d)
    src = torch.zeros(2, 3, 32, 32)
    src[:, :, 8:24, 8:24] = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        terms = model.losses(src, src)
    assert float(terms["cycle_au"]) == 0.0 and float(terms["cycle_pose"]) == 0.0


def test_loss_weights_ratio_and_switches():
    w = tcae_config("paper").weights
    assert w.recon == 10 * w.embedding == 10 * w.cycle == 100 * w.sparsity
    cfg = tcae_config("paper")
    assert cfg.attention == "softmax" and not cfg.detach_cycle_input and not cfg.output_consistency
    m = TCAE(replace(tcae_config("smoke"), composition="mix", output_consistency=True, attention="tanh_softmax",
                     curriculum=(0.0, 0.5),
                     zero_init_flow=False))
    terms = m.losses(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32))
    assert {"out_au", "out_pose"} <= set(terms)
    # tanh-bounded attention: each weight within [0.119, 0.881]
    att = terms["_output"].attention
    att = att.detach()
    assert float(att.min()) >= 0.1192 - 1e-4 and float(att.max()) <= 0.8808 + 1e-4
    terms["total"].backward()


def test_add_composition_sums_the_fields_and_warps_once():
    torch.manual_seed(0)
    m = TCAE(replace(tcae_config("smoke"), composition="add", zero_init_flow=False)).eval()
    src, tgt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = m(src, tgt)
    assert out.disp_au.abs().max() > 0.1 and out.disp_pose.abs().max() > 0.1
    torch.testing.assert_close(out.disp, out.disp_au + out.disp_pose)
    torch.testing.assert_close(out.attention, torch.ones(2, 2, 32, 32))  # both fields count in full
    torch.testing.assert_close(out.recon, warp(src, out.disp_au + out.disp_pose, padding_mode="border"))
    # the mix of the same model differs: a convex combination is not the sum
    mixed = TCAE(replace(m.cfg, composition="mix")).eval()
    mixed.load_state_dict(m.state_dict())
    assert not torch.allclose(mixed(src, tgt).disp, out.disp)
    assert PAPER_SETTINGS["composition"] == "mix" == tcae_config("paper").composition
    with pytest.raises(ValueError, match="composition must be 'mix' or 'add'"):
        replace(tcae_config("smoke"), composition="sum")


def test_jitter_translates_independently():
    cfg = train_config("smoke", jitter="independent")
    img = torch.rand(4, 3, 32, 32)
    a, b = jitter_pairs(img, img.clone(), cfg, torch.Generator().manual_seed(0))
    assert a.shape == b.shape == img.shape
    assert (a - b).abs().mean() > 1e-3             # same image, different crops
    a2, _ = jitter_pairs(img, img.clone(), cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, a2)              # deterministic given the generator
    # shared: one crop for both frames (no invented motion), still a crop
    a, b = jitter_pairs(img, img.clone(), replace(cfg, jitter="shared"), torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert (a - img).abs().mean() > 1e-3
    a, b = jitter_pairs(img, img.clone(), replace(cfg, jitter="off"), torch.Generator().manual_seed(0))
    assert torch.equal(a, img) and torch.equal(b, img)
    with pytest.raises(ValueError, match="jitter must be"):
        train_config("smoke", jitter="sideways")


def test_metrics_on_ground_truth():
    batch = fixed_batch(ToyPairs(n=6, image_size=32, seed=3), 6)
    gt_p, gt_a = batch["disp_pose"], batch["disp_au"]
    assert float(end_point_error(gt_p, gt_p).max()) == 0.0
    torch.testing.assert_close(leakage(gt_p, gt_p), torch.ones(6))
    torch.testing.assert_close(leakage(gt_p + 0.5 * gt_a, gt_a), 0.5 + leakage(gt_p, gt_a))
    assert float(leakage(torch.zeros_like(gt_a), gt_p).abs().max()) == 0.0


def test_trains_resumes_and_identity_gives_small_displacement(tmp_path):
    cfg = train_config("smoke", steps=60, batch_size=8, jitter="off", checkpoint_every=30, log_every=10, lr=2e-3,
                       schedule="none", model_overrides=PAPER_SETTINGS)  # random fields to start from
    # a tiny set: 8 moving pairs and 8 still ones (target == source)
    tiny = torch.utils.data.ConcatDataset([ToyPairs(n=8, image_size=32, seed=0, max_shift=1.5, bump=1.0),
                                           ToyPairs(n=8, image_size=32, seed=1, identity=True)])
    ident = fixed_batch(ToyPairs(n=8, image_size=32, seed=9, identity=True), 8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        m0 = TCAE(cfg.model).eval()
    with torch.no_grad():
        d0 = m0(ident["source"], ident["target"]).disp.norm(dim=1).mean()
    run = train_tcae(replace(cfg, steps=30), tmp_path / "run", data=tiny, progress=False)
    assert run.step == 30 and (tmp_path / "run" / "ckpt_0000030.pt").exists()
    run = train_tcae(cfg, tmp_path / "run", data=tiny, progress=False)       # resumes 30 -> 60
    assert run.step == 60
    assert [h["step"] for h in run.history] == [10, 20, 30, 40, 50, 60]
    assert run.history[-1]["recon"] < run.history[0]["recon"]
    with torch.no_grad():
        d1 = run.model(ident["source"], ident["target"]).disp.norm(dim=1).mean()
    # unseen still pairs: near-zero motion (pixels), far below the untrained model's
    assert float(d1) < 0.25 * float(d0), (float(d0), float(d1))
    # checkpoints reload to the same function; a changed config refuses to resume
    m = load_tcae(tmp_path / "run" / "last.pt")
    with torch.no_grad():
        torch.testing.assert_close(m.encode(ident["source"])[0], run.model.encode(ident["source"])[0])
    with pytest.raises(ValueError, match="different TCAE training config"):
        train_tcae(replace(cfg, lr=1e-2), tmp_path / "run", data=tiny, progress=False)
    rows = disentanglement_metrics(m, fixed_batch(ToyPairs(n=8, image_size=32, seed=4), 8))
    assert set(rows) >= {"epe_au", "epe_pose", "photo_au", "photo_pose", "leak_pose_in_au", "leak_au_in_pose"}
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30, 40, 50, 60]

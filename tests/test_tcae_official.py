"""The ``--official`` TCAE against a port of the released code (mysee1989/TCAE), written here from the
code's equations (``models_multiview.py``: ``Gen_sep_feature``, ``generate_decoder_layers``;
``self_supervised_train_TCAE.py``: ``train()``, ``run()``; ``TrackLoss.py``), run on the same weights.

The port is deliberately written the way the code computes: separate encoder calls in the code's
order, normalised flows ``tanh(decoder)`` added to a ``linspace(-1, 1)`` grid, clamped to [-1, 1] and
sampled with ``grid_sample`` as PyTorch 0.4.1 did (``align_corners=True``), decoder upsampling with
0.4.1's default ``align_corners=False``, every loss term sorted per sample and averaged over the
window ``[int(lo B), int(hi B))``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from au_lib.models.tcae import OFFICIAL_SWITCHES, TCAE, curriculum_mean, tcae_config
from au_lib.train.tcae import OfficialSchedule, ToyPairs, fixed_batch, train_config, train_tcae


# ------------------------------------------------------------------------------------ the port
def _bn(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    return F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)


def _port_encoder(model: TCAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``Gen_sep_feature.forward``: returns ``(pose_feature, emotion_feature)`` as ``B x 256 x 1 x 1``."""
    def conv_bn_lrelu(seq, h):
        conv, bn = seq[0], seq[1]
        return F.leaky_relu(_bn(F.conv2d(h, conv.weight, conv.bias, 2, 1), bn), 0.2)

    h = x
    for block in model.encoder.trunk:
        h = conv_bn_lrelu(block, h)

    def branch(seq, h):
        for block in seq[:-1]:
            h = conv_bn_lrelu(block, h)
        last = seq[-1][0]
        return F.conv2d(h, last.weight, last.bias, 2, 1)   # no BN, no activation

    return branch(model.encoder.pose_branch, h), branch(model.encoder.au_branch, h)


def _port_decoder(dec: nn.Module, v: torch.Tensor, size: int) -> torch.Tensor:
    """``generate_decoder_layers``: ReLU, (log2(S) - 1) x [Upsample, Conv3x3, BN, ReLU], Upsample, Conv3x3, Tanh."""
    convs = [m for m in dec.net if isinstance(m, nn.Conv2d)]
    bns = [m for m in dec.net if isinstance(m, nn.BatchNorm2d)]
    n = int(math.log2(size))
    assert len(convs) == n and len(bns) == n - 1, "the code has log2(S) - 1 blocks, then Upsample + conv"
    h = F.relu(v)
    for conv, bn in zip(convs[:-1], bns):
        h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
        h = F.relu(_bn(F.conv2d(h, conv.weight, conv.bias, 1, 1), bn))
    h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
    h = F.conv2d(h, convs[-1].weight, convs[-1].bias, 1, 1)
    assert h.shape[-1] == size
    return torch.tanh(h)


def _grid(b: int, size: int) -> torch.Tensor:
    g = torch.linspace(-1, 1, size)
    gx, gy = torch.meshgrid(g, g, indexing="xy")
    return torch.stack([gx, gy], 2).unsqueeze(0).repeat(b, 1, 1, 1)


def _sample(img: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    grid = _grid(img.shape[0], img.shape[-1])
    samplers = (flow.permute(0, 2, 3, 1) + grid).clamp(-1, 1)
    return F.grid_sample(img.detach(), samplers, align_corners=True), samplers - grid


def port_losses(model: TCAE, input_images: torch.Tensor, target_image: torch.Tensor,
                lo: float = 0.0, hi: float = 0.5) -> dict[str, torch.Tensor]:
    """The code's ``train()`` loss terms (unweighted, windowed) and ``total`` (weights 10, 1, 0.1)."""
    S = input_images.shape[-1]
    B = input_images.shape[0]
    target_pose_f, target_exp_f = _port_encoder(model, target_image)
    input_pose_f, input_exp_f = _port_encoder(model, input_images)
    all_pose = _port_decoder(model.pose_decoder, torch.cat((input_pose_f, target_pose_f), 1), S)
    pose_flow, pose_mask = all_pose[:, 0:2], all_pose[:, -1:]
    pose_image, _ = _sample(input_images, pose_flow)
    pose_img_pose_f, pose_img_exp_f = _port_encoder(model, pose_image)

    def l2(a, b):
        return ((a - b) ** 2).reshape(a.size(0), -1).mean(1)

    def l1(a, b):
        return (a - b).abs().reshape(a.size(0), -1).mean(1)

    t = {"emb_pose_img_pose": l2(pose_img_pose_f, target_pose_f), "emb_pose_img_au": l2(pose_img_exp_f, input_exp_f)}
    back_pose = _port_decoder(model.pose_decoder, torch.cat((pose_img_pose_f, input_pose_f), 1), S)[:, 0:2]
    t["cycle_pose"] = l1(_sample(pose_image.detach(), back_pose)[0], input_images)
    all_exp = _port_decoder(model.au_decoder, torch.cat((input_exp_f, target_exp_f), 1), S)
    exp_flow, exp_mask = all_exp[:, 0:2], all_exp[:, -1:]
    exp_image, exp_sub = _sample(input_images, exp_flow)
    exp_img_pose_f, exp_img_exp_f = _port_encoder(model, exp_image)
    t["emb_au_img_pose"] = l2(exp_img_pose_f, input_pose_f)
    t["emb_au_img_au"] = l2(exp_img_exp_f, target_exp_f)
    back_exp = _port_decoder(model.au_decoder, torch.cat((exp_img_exp_f, input_exp_f), 1), S)[:, 0:2]
    t["cycle_au"] = l1(_sample(exp_image.detach(), back_exp)[0], input_images)
    t["sparsity"] = exp_sub.abs().reshape(B, -1).mean(1)
    merge = torch.stack([pose_flow, exp_flow], 4)
    att = torch.stack([pose_mask, exp_mask], 4).exp()
    out_flow = (merge * att).sum(4) / att.sum(4)
    output_image, _ = _sample(input_images, out_flow)
    out_img_pose_f, out_img_exp_f = _port_encoder(model, output_image)
    t["out_pose"] = l2(out_img_pose_f, target_pose_f)
    t["out_au"] = l2(out_img_exp_f, target_exp_f)
    t["recon"] = l1(output_image, target_image)
    start, end = int(lo * B), int(hi * B)
    res = {k: v.sort()[0][start:end].mean() for k, v in t.items()}
    w = {"recon": 10.0, "sparsity": 0.1}
    res["total"] = sum(w.get(k, 1.0) * v for k, v in res.items())
    return res


def _official_model(seed: int = 0) -> TCAE:
    torch.manual_seed(seed)
    return TCAE(replace(tcae_config("smoke"), **OFFICIAL_SWITCHES)).train()


def _smooth_images(b: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(b, 3, 6, 6, generator=g), size=(size, size), mode="bicubic",
                         align_corners=True).clamp(0, 1)


# ------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("window", [(0.0, 0.5), (0.2, 0.7), (0.4, 0.9)])
def test_official_switches_match_the_port_of_the_released_code(window):
    model = _official_model()
    src, tgt = _smooth_images(8, 32, 1), _smooth_images(8, 32, 2)
    with torch.no_grad():   # large random fields: the clamp and the tanh attention both matter
        for dec in (model.au_decoder, model.pose_decoder):
            dec.net[-1].weight.mul_(20.0)
    ours = model.losses(src, tgt, curriculum=window)
    ref = port_losses(model, src, tgt, *window)
    for k in ref:
        torch.testing.assert_close(ours[k].float(), ref[k].float(), rtol=2e-5, atol=2e-6, msg=k)
    # the same gradients too (the code detaches the warped sources and the cycle inputs); our warp's
    # backward is not grid_sample's kernel, so compare each parameter's gradient as a vector
    g_ours = torch.autograd.grad(model.losses(src, tgt, curriculum=window)["total"], list(model.parameters()))
    g_ref = torch.autograd.grad(port_losses(model, src, tgt, *window)["total"], list(model.parameters()))
    gmax = max(float(b.norm()) for b in g_ref)   # (biases before a BatchNorm have gradient 0 up to noise)
    for (name, _), a, b in zip(model.named_parameters(), g_ours, g_ref):
        assert float((a - b).norm()) <= 1e-3 * float(b.norm()) + 1e-5 * gmax, name


def test_paper_decoder_has_the_code_block_count_and_sizes():
    paper = TCAE(tcae_config("paper"))
    ups = [m for m in paper.au_decoder.net if isinstance(m, nn.Upsample)]
    convs = [m for m in paper.au_decoder.net if isinstance(m, nn.Conv2d)]
    assert len(ups) == 8 and len(convs) == 8 and all(not u.align_corners for u in ups)
    assert [c.out_channels for c in convs] == [256, 256, 256, 256, 128, 64, 32, 3]
    assert all(c.bias is not None for c in paper.modules() if isinstance(c, nn.Conv2d))
    # parameter counts of the released code (counted from models_multiview.py, num_filters 32)
    n_dec = sum(p.numel() for p in paper.au_decoder.parameters())
    n_enc = sum(p.numel() for p in paper.encoder.parameters())
    assert n_dec == 3_340_803 and n_enc == 8_035_488, (n_dec, n_enc)


def test_separate_encoder_calls_as_the_code():
    for calls, expected in (("separate", 5), ("batched", 2)):
        model = TCAE(replace(tcae_config("smoke"), encoder_calls=calls, output_consistency=True))
        sizes = []
        model.encoder.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
        model.losses(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32))
        assert len(sizes) == expected, (calls, sizes)
        assert sizes == ([4] * 5 if calls == "separate" else [8, 12])


def test_sparsity_is_taken_on_the_clamped_field():
    model = TCAE(tcae_config("smoke"))
    d = torch.zeros(1, 2, 32, 32)
    d[:, 0] = -5.0                                   # content from x + 5: beyond the right edge for x > 26
    xs = torch.arange(32.0)
    inside = (xs - (xs + 5).clamp(max=31)).abs()     # what stays inside the image
    expected = float(inside.mean() * 2 / 31) / 2     # mean over both components, normalised units
    assert float(model.sparsity(d)) == pytest.approx(expected, rel=1e-6)
    assert float(model.sparsity(d)) < 5 * 2 / 31 / 2  # less than the unclamped mean


def test_curriculum_window_averages_the_ranked_slice():
    x = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0, 0.0, 7.0, 6.0, 9.0, 8.0])
    assert float(curriculum_mean(x, (0.0, 0.5))) == pytest.approx(2.0)      # 0..4
    assert float(curriculum_mean(x, (0.4, 0.9))) == pytest.approx(6.0)      # 4..8
    assert float(curriculum_mean(x, None)) == pytest.approx(4.5)
    assert float(curriculum_mean(torch.tensor([3.0]), (0.0, 0.5))) == 3.0   # at least one sample


def test_official_schedule_moves_the_window_then_plateaus():
    cfg = train_config("smoke", official=True)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = OfficialSchedule(cfg, opt)
    assert sched.window == (0.0, 0.5)
    acts = {}
    for epoch in range(1, 400):
        act = sched.update(1.0 if epoch > 1 else 0.5, epoch)   # best at epoch 1, then a plateau
        if act:
            acts[epoch] = (act, sched.window, opt.param_groups[0]["lr"])
    moves = [(e, w) for e, (a, w, _) in acts.items() if a == "window"]
    # TrackLoss(15): first move 16 validations after the best; a move starts a fresh TrackLoss, whose
    # first validation is its best, so the next move comes 17 validations later
    assert [e for e, _ in moves] == [17, 34, 51, 68]
    assert [w for _, w in moves] == [(0.1, 0.6), (0.2, 0.7), (0.3, 0.8), (0.4, 0.9)]
    plateau = [e for e, (a, _, _) in acts.items() if a == "plateau"]
    assert plateau[0] == 85 and all(b - a == 16 for a, b in zip(plateau, plateau[1:]))
    # ReduceLROnPlateau(patience=10) counts only these signals: the lr drops after the 11th bad one
    lrs = [acts[e][2] for e in plateau]
    assert lrs[:11] == [1e-3] * 11 and lrs[11] == pytest.approx(1e-4)
    # round trip of the state (resume)
    again = OfficialSchedule(cfg, torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-3))
    again.load_state_dict(sched.state_dict())
    assert again.window == sched.window and again.moves == sched.moves


def test_official_training_runs_validates_and_resumes(tmp_path):
    cfg = train_config("smoke", official=True, steps=8, batch_size=4, validate_every=2, val_pairs=8,
                       checkpoint_every=4, log_every=2, plateau_interval=1)
    data = ToyPairs(n=40, image_size=32, seed=0)
    run = train_tcae(replace(cfg, steps=4), tmp_path / "run", data=data, progress=False)
    run = train_tcae(cfg, tmp_path / "run", data=data, progress=False)
    full = train_tcae(cfg, tmp_path / "full", data=data, progress=False)
    assert [h["step"] for h in full.history] == [2, 4, 6, 8] and all("val_total" in h for h in full.history)
    assert [h.get("window") for h in run.history] == [h.get("window") for h in full.history]
    for a, b in zip(run.model.state_dict().values(), full.model.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_tiny_run_on_known_motion_beats_the_zero_field(tmp_path):
    """16 textures moved by known global shifts (up to 2 px): after 150 updates of the smoke model the
    rebuilt target's field is far closer to the truth than no motion (scored on the training pairs:
    a global code has to learn where 16 textures sit, not generalise)."""
    from au_lib.experiments.disentanglement import disentanglement_metrics

    cfg = train_config("smoke", steps=150, batch_size=16, jitter="off", checkpoint_every=150, log_every=50,
                       lr=2e-3, warmup_steps=10)
    pairs = ToyPairs(n=16, image_size=32, seed=0, max_shift=2.0, bump=0.0)
    run = train_tcae(cfg, tmp_path / "run", data=pairs, progress=False)
    m = disentanglement_metrics(run.model, fixed_batch(pairs, 16))
    assert m["epe_total"] < 0.25 * m["epe_pose_zero"], m


def test_probe_verdict_on_known_differences():
    from au_lib.experiments.disentanglement import probe_verdict

    def res(folds):
        return {"metrics": {"honest": {"per_fold_mean": folds}}}

    assert probe_verdict(res([0.60, 0.62, 0.61]), res([0.50, 0.51, 0.52]))["verdict"] == "supported"
    assert probe_verdict(res([0.40, 0.41, 0.42]), res([0.50, 0.52, 0.51]))["verdict"] == "contradicted"
    v = probe_verdict(res([0.60, 0.45, 0.52]), res([0.50, 0.55, 0.52]))
    assert v["verdict"] == "inconclusive" and v["interval"][0] < 0 < v["interval"][1]
    with pytest.raises(ValueError, match="need the same runs"):
        probe_verdict(res([0.5, 0.6]), res([0.5, 0.6, 0.7]))


def test_learning_verdict_against_the_bar():
    from au_lib.experiments.disentanglement import learning_verdict

    m = {"epe_au": 0.25, "epe_au_zero": 0.5, "epe_pose": 0.6, "epe_pose_zero": 1.0,
         "photo_au": 0.01, "photo_au_source": 0.02, "photo_pose": 0.05, "photo_pose_source": 0.04}
    v = learning_verdict(m)
    assert v["epe_au"]["met"] and v["epe_au"]["ratio"] == pytest.approx(0.5)
    assert not v["epe_pose"]["met"] and v["photo_au"]["met"] and not v["photo_pose"]["met"]
    # a zero field reproduces the source up to rounding: not "closer"
    assert not learning_verdict({**m, "photo_pose": 0.04 - 1e-7})["photo_pose"]["met"]

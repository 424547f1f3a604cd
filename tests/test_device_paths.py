"""The code paths that differ on CUDA, checked on each device present.

Every check runs on the CPU (the fused C kernel and the PyTorch path; CI) and, marked ``cuda``, on a
GPU, where ``warp`` dispatches to the Triton kernels, autocast gives bf16 and timm's attention is
SDPA. ``bench/gpu_check.py`` runs the ``cuda`` ones (``pytest -m cuda``); here they are skipped.

- Triton warp forward/backward against the PyTorch path and ``grid_sample`` (fp32; fp64 for the
  fused attention mix, whose mixed positions cannot be kept away from integer pixel positions,
  where the derivative is one-sided and fp32 rounding may pick either side);
- bf16: a bf16 displacement from an autocast conv, bf16 inputs, TCAE's and MCM's losses and
  gradients under autocast against fp32.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from au_lib.models.mcm import MCM, MCM_PROFILES
from au_lib.models.tcae import TCAE, tcae_config
from au_lib.ops.warp import displacement_to_grid, mix_displacements, warp, warp_mixed, warp_reference

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run by bench/gpu_check.py)")
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, CUDA])]
PADS = ("zeros", "border")


def _away_from_integers(shape, g, max_px=6):
    """Pixel displacements whose fractional part lies in [0.05, 0.95]: sample positions x - dx are
    never near an integer, so every implementation takes the same side of the one-sided derivative."""
    whole = torch.randint(-max_px, max_px + 1, shape, generator=g).float()
    return whole + 0.05 + 0.9 * torch.rand(shape, generator=g)


def _grads(fn, inputs, gout):
    xs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*xs)
    out.backward(gout)
    return out.detach(), [x.grad for x in xs], out.grad_fn


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


@pytest.mark.parametrize("padding_mode", PADS)
@pytest.mark.parametrize("device", DEVICES)
def test_warp_matches_torch_path_and_grid_sample_fp32(device, padding_mode):
    g = torch.Generator().manual_seed(0)
    src = torch.rand(2, 3, 33, 47, generator=g).to(device)
    disp = _away_from_integers((2, 2, 33, 47), g).to(device)
    gout = torch.randn(2, 3, 33, 47, generator=g).to(device)
    ours = _grads(lambda s, d: warp(s, d, padding_mode), (src, disp), gout)
    if device == "cuda":
        assert type(ours[2]).__name__.startswith("TritonWarp"), ours[2]
    for name, ref_fn in (("torch path", lambda s, d: warp(s, d, padding_mode, backend="torch")),
                         ("grid_sample", lambda s, d: warp_reference(s, d, padding_mode))):
        ref = _grads(ref_fn, (src, disp), gout)
        torch.testing.assert_close(ours[0], ref[0], atol=2e-5, rtol=1e-5, msg=lambda m: f"{name} forward: {m}")
        for what, a, b in (("source", ours[1][0], ref[1][0]), ("displacement", ours[1][1], ref[1][1])):
            torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4, msg=lambda m: f"{name} {what} grad: {m}")
    assert ours[1][1].abs().sum() > 0


@pytest.mark.parametrize("padding_mode", PADS)
@pytest.mark.parametrize("device", DEVICES)
def test_fused_mix_matches_mix_then_grid_sample(device, padding_mode):
    g = torch.Generator().manual_seed(1)
    N, C, H, W = 2, 3, 21, 26
    src = torch.rand(N, C, H, W, generator=g, dtype=torch.float64)
    d_au, d_pose = (torch.randn(N, 2, H, W, generator=g, dtype=torch.float64) * 3 for _ in range(2))
    la, lp = (torch.randn(N, 1, H, W, generator=g, dtype=torch.float64) for _ in range(2))
    gout = torch.randn(N, C, H, W, generator=g, dtype=torch.float64)

    def unfused(s, a, p, l1, l2):
        d, _ = mix_displacements(a, p, l1, l2)
        return F.grid_sample(s, displacement_to_grid(d), padding_mode=padding_mode, align_corners=True)

    for dtype, atol in ((torch.float64, 1e-9), (torch.float32, 2e-5)):
        inputs = [t.to(device, dtype) for t in (src, d_au, d_pose, la, lp)]
        ours = _grads(lambda *t: warp_mixed(*t, padding_mode=padding_mode)[0], inputs, gout.to(device, dtype))
        ref = _grads(unfused, inputs, gout.to(device, dtype))
        if device == "cuda":
            assert type(ours[2]).__name__.startswith("TritonWarpMixed"), ours[2]
        torch.testing.assert_close(ours[0], ref[0], atol=atol, rtol=0)
        # fp32: the gradients of the displacements jump at integer positions (see the module docstring)
        checked = ours[1] if dtype == torch.float64 else ours[1][:1]
        for i, (a, b) in enumerate(zip(checked, ref[1])):
            torch.testing.assert_close(a, b, atol=atol * 100, rtol=0, msg=lambda m: f"{dtype} grad {i}: {m}")
    _, att = warp_mixed(*inputs, padding_mode=padding_mode)
    torch.testing.assert_close(att, mix_displacements(*inputs[1:])[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_displacement_from_autocast_conv(device):
    """A displacement predicted under bf16 autocast warps an fp32 image: fp32 out, gradients reach the conv."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 2, 3, padding=1).to(device)
    src = torch.rand(2, 3, 24, 30, device=device)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        disp = conv(src) * 4
        out = warp(src, disp)
    assert disp.dtype == torch.bfloat16 and out.dtype == torch.float32
    exact = warp_reference(src.double(), disp.detach().double())  # the same rounded field, exact arithmetic
    assert (out.double() - exact).abs().max() < 1e-4
    out.square().mean().backward()
    g_amp = conv.weight.grad.clone()
    assert torch.isfinite(g_amp).all() and g_amp.abs().sum() > 0
    conv.zero_grad()
    warp(src, conv(src) * 4).square().mean().backward()  # fp32 throughout
    assert _cos(g_amp, conv.weight.grad) > 0.98


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_inputs_within_tolerance(device):
    g = torch.Generator().manual_seed(2)
    src = torch.rand(2, 3, 17, 19, generator=g).to(device, torch.bfloat16)
    disp = (torch.randn(2, 2, 17, 19, generator=g) * 1.5).to(device, torch.bfloat16)
    s, d = src.clone().requires_grad_(), disp.clone().requires_grad_()
    out = warp(s, d)
    assert out.dtype == torch.bfloat16
    exact = warp_reference(src.double(), disp.double())
    assert (out.double() - exact).abs().max() <= 1.6e-2
    out.float().sum().backward()
    assert s.grad.dtype == torch.bfloat16 and d.grad.dtype == torch.bfloat16
    assert torch.isfinite(s.grad.float()).all() and torch.isfinite(d.grad.float()).all()


@pytest.mark.parametrize("device", DEVICES)
def test_tcae_losses_and_gradients_under_bf16_autocast(device):
    torch.manual_seed(0)
    model = TCAE(tcae_config("smoke")).to(device)
    g = torch.Generator().manual_seed(3)
    src = torch.rand(4, 3, 32, 32, generator=g).to(device)
    tgt = torch.roll(src, shifts=(1, 2), dims=(2, 3))
    fp32 = model.losses(src, tgt)["total"].detach()
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        terms = model.losses(src, tgt)
    amp = terms["total"]
    assert amp.dtype == torch.float32 and torch.isfinite(amp)
    assert abs(float(amp.detach()) - float(fp32)) <= 0.05 * abs(float(fp32))
    amp.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads) > 0


@pytest.mark.parametrize("device", DEVICES)
def test_mcm_loss_and_gradients_under_bf16_autocast(device):
    model = MCM(MCM_PROFILES["smoke"], seed=0).to(device)
    size = MCM_PROFILES["smoke"].img_size
    x5 = torch.rand(4, 5, size, size, generator=torch.Generator().manual_seed(4)).to(device)
    fp32 = model(x5, generator=torch.Generator().manual_seed(5)).loss.detach()
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        out = model(x5, generator=torch.Generator().manual_seed(5))
    assert torch.isfinite(out.loss)
    assert abs(float(out.loss) - float(fp32)) <= 0.05 * abs(float(fp32))
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)


@pytest.mark.cuda
@CUDA
def test_triton_warp_at_tcae_size_matches_grid_sample():
    """TCAE's 64 x 3 x 256 x 256: forward and source gradient against grid_sample (fp32)."""
    g = torch.Generator().manual_seed(6)
    src = torch.rand(64, 3, 256, 256, generator=g).cuda()
    disp = _away_from_integers((64, 2, 256, 256), g, max_px=20).cuda()
    gout = torch.randn(64, 3, 256, 256, generator=g).cuda()
    ours = _grads(lambda s, d: warp(s, d), (src, disp), gout)
    ref = _grads(lambda s, d: warp_reference(s, d), (src, disp), gout)
    assert type(ours[2]).__name__.startswith("TritonWarp")
    torch.testing.assert_close(ours[0], ref[0], atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(ours[1][0], ref[1][0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours[1][1], ref[1][1], atol=1e-3, rtol=1e-4)

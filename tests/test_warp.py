"""The bilinear displacement warp: agreement with grid_sample, gradients, conventions, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from au_lib.ops.warp import (
    WarpFunction,
    displacement_to_grid,
    displacement_to_official_flow,
    grid_to_displacement,
    mix_displacements,
    official_flow_to_displacement,
    warp,
    warp_mixed,
    warp_reference,
)

PADS = ("zeros", "border")
# both CPU implementations: the fused C kernel (au_lib.ops.warp_cpu) and the PyTorch path
CPU_BACKENDS = ("cpu", "torch")


def _inputs(N=2, C=3, H=9, W=11, scale=3.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(N, C, H, W, generator=g, dtype=dtype)
    disp = torch.randn(N, 2, H, W, generator=g, dtype=dtype) * scale
    return src, disp


def _grid_sample_path(src, disp, padding_mode):
    grid = displacement_to_grid(disp)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("padding_mode", PADS)
def test_forward_and_gradients_match_grid_sample_float64(padding_mode, backend):
    src, disp = _inputs()
    s1, d1 = src.clone().requires_grad_(), disp.clone().requires_grad_()
    s2, d2 = src.clone().requires_grad_(), disp.clone().requires_grad_()
    out = warp(s1, d1, padding_mode, backend=backend)
    ref = _grid_sample_path(s2, d2, padding_mode)
    assert out.shape == src.shape and out.dtype == torch.float64
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    gout = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ga = torch.autograd.grad(out, (s1, d1), gout)
    gb = torch.autograd.grad(ref, (s2, d2), gout)
    torch.testing.assert_close(ga[0], gb[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(ga[1], gb[1], atol=1e-6, rtol=0)
    assert ga[1].abs().sum() > 0 and ga[0].abs().sum() > 0


def test_identity_and_integer_shift():
    src, _ = _inputs(N=1, C=2, H=6, W=7)
    zero = torch.zeros(1, 2, 6, 7, dtype=torch.float64)
    torch.testing.assert_close(warp(src, zero), src)
    shift = zero.clone()
    shift[:, 0] = 1.0  # content moves right by one pixel: out(x) = S(x - 1)
    out = warp(src, shift)
    torch.testing.assert_close(out[..., 1:], src[..., :-1])
    assert torch.all(out[..., 0] == 0)  # zeros padding
    out_b = warp(src, shift, padding_mode="border")
    torch.testing.assert_close(out_b[..., 0], src[..., 0])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("padding_mode", PADS)
def test_gradcheck_and_gradgradcheck(padding_mode, backend):
    src, disp = _inputs(N=1, C=2, H=5, W=6, scale=2.0, seed=3)
    # random non-integer positions (the operator has kinks at integers)
    assert (disp - disp.round()).abs().min() > 1e-3
    s, d = src.requires_grad_(), disp.requires_grad_()
    f = lambda a, b: warp(a, b, padding_mode, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(f, (s, d), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradgradcheck(f, (s, d), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_integer_positions_use_right_sided_derivative_like_grid_sample(backend):
    # W - 1 and H - 1 powers of two: the pixel -> grid -> pixel round trip inside grid_sample is
    # exact, so its sample positions are exact integers too (otherwise rounding picks a side)
    src, _ = _inputs(N=1, C=1, H=5, W=9, seed=5)
    disp = torch.zeros(1, 2, 5, 9, dtype=torch.float64)
    disp[:, 0] = 1.0  # every sample position is an integer
    disp[:, 1] = -0.4
    d1 = disp.clone().requires_grad_()
    d2 = disp.clone().requires_grad_()
    warp(src, d1, backend=backend).sum().backward()
    _grid_sample_path(src, d2, "zeros").sum().backward()
    torch.testing.assert_close(d1.grad, d2.grad, atol=1e-9, rtol=0)
    # right-sided: x̂ -> x̂ + h, i.e. dx -> dx - h
    h = 1e-7
    dp = disp.clone()
    dp[0, 0, 2, 3] -= h
    right = -(warp(src, dp, backend=backend).sum() - warp(src, disp, backend=backend).sum()) / h
    assert abs(right.item() - d1.grad[0, 0, 2, 3].item()) < 1e-5


def test_source_only_and_displacement_only_gradients():
    src, disp = _inputs(N=1, C=1, H=5, W=5)
    d = disp.clone().requires_grad_()
    warp(src, d).sum().backward()
    assert d.grad is not None
    s = src.clone().requires_grad_()
    warp(s, disp).sum().backward()
    assert s.grad is not None
    # total weight scattered into the source equals the number of in-image samples' weight mass
    assert s.grad.sum() <= 25 + 1e-9


def test_non_contiguous_and_channels_last():
    src, disp = _inputs(N=2, C=4, H=8, W=10)
    ref = warp(src, disp)
    src_cl = src.to(memory_format=torch.channels_last)
    disp_cl = disp.to(memory_format=torch.channels_last)
    torch.testing.assert_close(warp(src_cl, disp_cl), ref)
    big = torch.rand(2, 4, 10, 8, dtype=torch.float64).transpose(2, 3)  # non-contiguous, 2x4x8x10
    dT = disp.transpose(2, 3).contiguous().transpose(2, 3)
    assert not big.is_contiguous()
    torch.testing.assert_close(warp(big, dT), warp(big.contiguous(), disp))
    s = src_cl.clone().requires_grad_()
    warp(s, disp).sum().backward()
    s2 = src.clone().requires_grad_()
    warp(s2, disp).sum().backward()
    torch.testing.assert_close(s.grad, s2.grad)


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
def test_half_precision_within_stated_tolerance(dtype, tol):
    """Half inputs are computed in float32; the error is the rounding of inputs and output."""
    src, disp = _inputs(dtype=torch.float32, scale=1.5)
    s, d = src.to(dtype), disp.to(dtype)
    out = warp(s, d)
    assert out.dtype == dtype
    ref = warp(s.double(), d.double())  # same rounded inputs, exact arithmetic
    assert (out.double() - ref).abs().max() <= tol
    s.requires_grad_(), d.requires_grad_()
    warp(s, d).sum().backward()
    assert s.grad.dtype == dtype and d.grad.dtype == dtype
    sd, dd = s.detach().double().requires_grad_(), d.detach().double().requires_grad_()
    warp(sd, dd).sum().backward()
    assert (s.grad.double() - sd.grad).abs().max() <= tol * 4
    assert (d.grad.double() - dd.grad).abs().max() <= tol * 8 * 3  # summed over 3 channels


@pytest.mark.parametrize("align_corners", [True, False])
def test_grid_conversion_round_trip_and_matches_grid_sample(align_corners):
    _, disp = _inputs()
    grid = displacement_to_grid(disp, align_corners=align_corners)
    assert grid.shape == (2, 9, 11, 2)
    torch.testing.assert_close(grid_to_displacement(grid, align_corners=align_corners), disp)
    zero = torch.zeros_like(disp)
    ident = F.affine_grid(torch.eye(2, 3, dtype=torch.float64).expand(2, 2, 3), [2, 1, 9, 11],
                          align_corners=align_corners)
    torch.testing.assert_close(displacement_to_grid(zero, align_corners=align_corners), ident)


def test_official_flow_convention():
    src, disp = _inputs(N=1, C=1, H=8, W=12, scale=1.0)
    flow = displacement_to_official_flow(disp)
    torch.testing.assert_close(official_flow_to_displacement(flow), disp)
    # the official code: grid = linspace identity + flow, grid_sample with align_corners=True
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 8, dtype=torch.float64),
                            torch.linspace(-1, 1, 12, dtype=torch.float64), indexing="ij")
    grid = torch.stack([xs, ys], -1)[None] + flow.permute(0, 2, 3, 1)
    official = F.grid_sample(src, grid, mode="bilinear", align_corners=True)
    torch.testing.assert_close(warp(src, disp), official)
    # a rightward pixel displacement is a negative official flow
    d = torch.zeros(1, 2, 8, 12, dtype=torch.float64)
    d[:, 0] = 2.0
    assert torch.all(displacement_to_official_flow(d)[:, 0] < 0)


def test_mix_displacements_and_warp_mixed():
    g = torch.Generator().manual_seed(7)
    src = torch.rand(2, 3, 6, 7, generator=g, dtype=torch.float64)
    d_au, d_pose = (torch.randn(2, 2, 6, 7, generator=g, dtype=torch.float64) for _ in range(2))
    la, lp = (torch.randn(2, 1, 6, 7, generator=g, dtype=torch.float64) for _ in range(2))
    d, att = mix_displacements(d_au, d_pose, la, lp)
    assert att.shape == (2, 2, 6, 7) and d.shape == (2, 2, 6, 7)
    torch.testing.assert_close(att.sum(1), torch.ones(2, 6, 7, dtype=torch.float64))
    torch.testing.assert_close(att[:, :1], torch.sigmoid(la - lp))
    # equal logits -> plain average; huge AU logit -> AU field
    d_eq, _ = mix_displacements(d_au, d_pose, la, la)
    torch.testing.assert_close(d_eq, (d_au + d_pose) / 2)
    d_big, _ = mix_displacements(d_au, d_pose, la + 100, lp)
    torch.testing.assert_close(d_big, d_au)
    out, att2 = warp_mixed(src, d_au, d_pose, la, lp)
    torch.testing.assert_close(out, warp(src, d))
    torch.testing.assert_close(att2, att)
    inputs = [t.clone().requires_grad_() for t in (src, d_au, d_pose, la, lp)]
    assert torch.autograd.gradcheck(lambda *t: warp_mixed(*t)[0], inputs, eps=1e-6, atol=1e-5)


def test_warp_function_apply_directly():
    src, disp = _inputs(N=1, C=1, H=4, W=4)
    torch.testing.assert_close(WarpFunction.apply(src, disp, "zeros"), warp_reference(src, disp))


@pytest.mark.parametrize(
    "src_shape,disp_shape,dtypes,match",
    [
        ((2, 3, 8, 8), (2, 3, 8, 8), (torch.float32, torch.float32), "N x 2 x H x W"),
        ((2, 3, 8, 8), (2, 2, 8), (torch.float32, torch.float32), "N x 2 x H x W"),
        ((3, 8, 8), (1, 2, 8, 8), (torch.float32, torch.float32), "source must be N x C x H x W"),
        ((2, 3, 8, 8), (3, 2, 8, 8), (torch.float32, torch.float32), "batch sizes differ"),
        ((2, 3, 8, 8), (2, 2, 8, 9), (torch.float32, torch.float32), "spatial sizes differ"),
        ((2, 3, 8, 8), (2, 2, 8, 8), (torch.uint8, torch.float32), "source must be a floating-point"),
        ((2, 3, 8, 8), (2, 2, 8, 8), (torch.float32, torch.int64), "displacement must be a floating-point"),
    ],
)
def test_clear_errors(src_shape, disp_shape, dtypes, match):
    src = torch.zeros(src_shape, dtype=dtypes[0])
    disp = torch.zeros(disp_shape, dtype=dtypes[1])
    with pytest.raises((ValueError, TypeError), match=match):
        warp(src, disp)


def test_bad_padding_mode_and_backend():
    src, disp = _inputs(N=1, C=1, H=4, W=4)
    with pytest.raises(ValueError, match="padding_mode"):
        warp(src, disp, padding_mode="reflection")
    with pytest.raises(ValueError, match="backend"):
        warp(src, disp, backend="cuda")
    with pytest.raises(ValueError, match="logit_au"):
        mix_displacements(disp, disp, torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))

"""The fused CPU kernel of the warp (au_lib.ops.warp_cpu): agreement with the PyTorch path and
grid_sample on awkward shapes, every threading split, NaN safety, build cache and fallback."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from au_lib.ops import warp_cpu
from au_lib.ops.warp import displacement_to_grid, warp

pytestmark = pytest.mark.skipif(not warp_cpu.available(), reason=f"no C compiler: {warp_cpu.build_error()}")


def _case(N, C, H, W, scale=4.0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(N, C, H, W, generator=g, dtype=dtype)
    disp = torch.randn(N, 2, H, W, generator=g, dtype=dtype) * scale
    gout = torch.randn(N, C, H, W, generator=g, dtype=dtype)
    return src, disp, gout


def _fwd_bwd(src, disp, gout, backend, padding_mode="zeros", need_src=True):
    s = src.clone().requires_grad_(need_src)
    d = disp.clone().requires_grad_()
    out = warp(s, d, padding_mode, backend=backend)
    out.backward(gout)
    return out.detach(), (s.grad if need_src else None), d.grad


# W > the kernel's 128-pixel tile and not a multiple of it; single rows/columns; one channel; many
@pytest.mark.parametrize("shape", [(2, 3, 7, 300), (1, 1, 1, 5), (3, 2, 6, 1), (1, 5, 33, 129), (5, 3, 4, 4)])
@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_kernel_matches_torch_path_and_grid_sample_float64(shape, padding_mode):
    src, disp, gout = _case(*shape, dtype=torch.float64)
    a = _fwd_bwd(src, disp, gout, "cpu", padding_mode)
    b = _fwd_bwd(src, disp, gout, "torch", padding_mode)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-9, rtol=0)
    if min(shape[2:]) == 1:  # grid_sample's align_corners geometry collapses a size-1 axis to one point
        return
    s = src.clone().requires_grad_()
    d = disp.clone().requires_grad_()
    ref = F.grid_sample(s, displacement_to_grid(d), padding_mode=padding_mode, align_corners=True)
    ref.backward(gout)
    torch.testing.assert_close(a[0], ref.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(a[1], s.grad, atol=1e-6, rtol=0)
    torch.testing.assert_close(a[2], d.grad, atol=1e-6, rtol=0)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("N", [1, 2, 5])
@pytest.mark.parametrize("need_src", [True, False])
def test_every_thread_split_gives_the_same_result(threads, N, need_src):
    """Row bands, whole items, and the (item, channel) scatter split all agree with the PyTorch path."""
    src, disp, gout = _case(N, 3, 17, 23, seed=N)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        got = _fwd_bwd(src, disp, gout, "cpu", need_src=need_src)
    finally:
        torch.set_num_threads(old)
    want = _fwd_bwd(src, disp, gout, "torch", need_src=need_src)
    for x, y in zip(got, want):
        if y is None:
            assert x is None
        else:
            torch.testing.assert_close(x, y, atol=2e-5, rtol=1e-5)


def test_mixed_dtypes_and_float32_agreement():
    src, disp, gout = _case(2, 3, 16, 16)
    out = warp(src, disp.double(), backend="cpu")  # computed in float64, returned as the source's dtype
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, warp(src.double(), disp.double(), backend="torch").float())


def test_nan_displacement_is_safe_and_propagates():
    src, disp, _ = _case(1, 2, 8, 8)
    disp[0, 0, 3, 4] = float("nan")
    disp[0, 1, 5, 5] = float("inf")
    disp[0, 0, 6, 6] = -1e30
    out = warp(src, disp, backend="cpu")  # must not read out of bounds
    assert torch.isnan(out[0, :, 3, 4]).all()
    mask = torch.ones(8, 8, dtype=torch.bool)
    mask[3, 4] = mask[5, 5] = mask[6, 6] = False
    ref = warp(src, disp, backend="torch")
    assert torch.isnan(ref[0, :, 3, 4]).all()  # the PyTorch path agrees, without crashing either
    torch.testing.assert_close(out[0][:, mask], ref[0][:, mask])
    assert (out[0, :, 6, 6] == 0).all()  # far outside: zeros padding


def test_empty_batch():
    src, disp, gout = _case(0, 3, 4, 4)
    out, gs, gd = _fwd_bwd(src, disp, gout, "cpu")
    assert out.shape == (0, 3, 4, 4) and gs.shape == src.shape and gd.shape == disp.shape


def test_library_is_cached_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("AU_EXT_DIR", str(tmp_path))
    warp_cpu._reset_for_tests()
    try:
        assert warp_cpu.available()
        path = warp_cpu.library_path()
        assert path.parent == tmp_path and path.suffix == ".so"
        stamp = path.stat().st_mtime_ns
        warp_cpu._reset_for_tests()
        assert warp_cpu.available() and warp_cpu.library_path() == path
        assert path.stat().st_mtime_ns == stamp  # loaded from the cache, not rebuilt
        assert not list(tmp_path.glob("*.tmp"))  # nothing half-written left behind
    finally:
        monkeypatch.undo()
        warp_cpu._reset_for_tests()


def test_without_a_compiler_warns_and_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("AU_EXT_DIR", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    warp_cpu._reset_for_tests()
    try:
        src, disp, _ = _case(1, 1, 5, 5, dtype=torch.float64)
        with pytest.warns(RuntimeWarning, match="could not be built"):
            out = warp(src, disp)
        torch.testing.assert_close(out, warp(src, disp, backend="torch"))
        assert "no-such-compiler" in warp_cpu.build_error()
        with pytest.raises(RuntimeError, match="backend 'cpu' requested"):
            warp(src, disp, backend="cpu")
    finally:
        monkeypatch.undo()
        warp_cpu._reset_for_tests()


def test_backend_env_and_errors(monkeypatch):
    src, disp, _ = _case(1, 1, 4, 4)
    monkeypatch.setenv("AU_WARP_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="AU_WARP_BACKEND"):
        warp(src, disp)
    monkeypatch.setenv("AU_WARP_BACKEND", "torch")
    torch.testing.assert_close(warp(src, disp), warp(src, disp, backend="cpu"))
    with pytest.raises(TypeError, match="float32 or both float64"):
        warp_cpu.warp_forward(src.half(), disp.half(), "zeros")
    with pytest.raises(ValueError, match="contiguous"):
        warp_cpu.warp_forward(src.transpose(2, 3), disp, "zeros")

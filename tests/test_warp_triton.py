"""The Triton warp kernels, run under Triton's CPU interpreter (and natively when a GPU is present).

``TRITON_INTERPRET`` must be set before Triton compiles the kernels, so the interpreter checks run in
a subprocess. They are skipped when Triton or its interpreter does not work here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

CHECK = textwrap.dedent(
    """
    import torch
    from au_lib.ops.warp import warp, warp_mixed
    from au_lib.ops import warp_triton
    assert warp_triton.available()
    dev = "{device}"
    torch.manual_seed(0)
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-5), (torch.float16, 3e-3)):
        for pm in ("zeros", "border"):
            S = torch.rand(2, 3, 9, 11, dtype=torch.float64, device=dev).to(dtype)
            D = (torch.randn(2, 2, 9, 11, dtype=torch.float64, device=dev) * 3).to(dtype)
            G = torch.randn(2, 3, 9, 11, dtype=torch.float64, device=dev).to(dtype)
            s1, d1 = S.clone().requires_grad_(), D.clone().requires_grad_()
            s2, d2 = S.double().clone().requires_grad_(), D.double().clone().requires_grad_()
            o1 = warp(s1, d1, pm, backend="triton")
            assert type(o1.grad_fn).__name__.startswith("TritonWarp"), o1.grad_fn
            o2 = warp(s2, d2, pm, backend="torch")
            assert o1.dtype == dtype
            err = (o1.double() - o2).abs().max().item()
            assert err < tol, ("forward", dtype, pm, err)
            o1.backward(G); o2.backward(G.double())
            for a, b, name in ((s1.grad, s2.grad, "source"), (d1.grad, d2.grad, "disp")):
                err = (a.double() - b).abs().max().item()
                assert err < tol * 20, (name, dtype, pm, err)
            # fused attention mix
            A = (torch.randn(2, 2, 9, 11, dtype=torch.float64, device=dev) * 3).to(dtype)
            L1 = torch.randn(2, 1, 9, 11, dtype=torch.float64, device=dev).to(dtype)
            L2 = torch.randn(2, 1, 9, 11, dtype=torch.float64, device=dev).to(dtype)
            xs = [t.clone().requires_grad_() for t in (S, A, D, L1, L2)]
            ys = [t.double().clone().requires_grad_() for t in (S, A, D, L1, L2)]
            m1, a1 = warp_mixed(*xs, padding_mode=pm, backend="triton")
            m2, a2 = warp_mixed(*ys, padding_mode=pm, backend="torch")
            assert (m1.double() - m2).abs().max().item() < tol
            assert (a1.double() - a2).abs().max().item() < tol
            m1.backward(G); m2.backward(G.double())
            for i, (x, y) in enumerate(zip(xs, ys)):
                err = (x.grad.double() - y.grad).abs().max().item()
                assert err < tol * 40, ("mixed grad", i, dtype, pm, err)
    # only the displacement requires grad
    d = D.double().clone().requires_grad_()
    warp(S.double(), d, backend="triton").sum().backward()
    d2 = D.double().clone().requires_grad_()
    warp(S.double(), d2, backend="torch").sum().backward()
    assert (d.grad - d2.grad).abs().max() < 1e-9
    print("TRITON-OK")
    """
)


def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def _run(device: str, interpret: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    return subprocess.run([sys.executable, "-c", CHECK.format(device=device)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _interpreter_works() -> bool:
    if not _triton_importable():
        return False
    probe = textwrap.dedent(
        """
        import torch, triton, triton.language as tl
        @triton.jit
        def k(x, n, B: tl.constexpr):
            o = tl.arange(0, B)
            tl.store(x + o, o.to(tl.float32), mask=o < n)
        t = torch.zeros(4); k[(1,)](t, 4, B=4); assert t.tolist() == [0, 1, 2, 3]
        """
    )
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    return r.returncode == 0


@pytest.mark.skipif(not _interpreter_works(), reason="Triton CPU interpreter not available")
def test_triton_kernels_match_torch_under_interpreter():
    r = _run("cpu", interpret=True)
    assert r.returncode == 0 and "TRITON-OK" in r.stdout, r.stdout + r.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available() or not _triton_importable(), reason="needs CUDA + Triton")
def test_triton_kernels_match_torch_on_gpu():
    r = _run("cuda", interpret=False)
    assert r.returncode == 0 and "TRITON-OK" in r.stdout, r.stdout + r.stderr


def test_cpu_tensors_do_not_use_triton_by_default():
    from au_lib.ops.warp import warp

    s = torch.rand(1, 1, 4, 4, requires_grad=True)
    out = warp(s, torch.zeros(1, 2, 4, 4))
    assert type(out.grad_fn).__name__ == "WarpFunctionBackward"

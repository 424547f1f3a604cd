"""Triton kernels for the bilinear displacement warp (forward + hand-written backward).

Same operator and conventions as :mod:`au_lib.ops.warp` (pixels, ``S(x - dx, y - dy)``, floor-based
corners so the derivative is right-sided at integer positions, ``zeros``/``border`` padding). The
kernels fuse what the ``grid_sample`` path does in separate passes:

* the pixel -> sampling-position conversion (no grid tensor is materialised);
* optionally TCAE's attention mix ``d = a d_au + (1 - a) d_pose``, ``a = softmax(l_au, l_pose)_0``
  (:func:`warp_mixed_triton`), forward and backward, so the mixed field is never stored;
* in the backward, the source gradient (``atomic_add`` of the bilinear weights) and the
  displacement / logit gradients in one pass over the pixels.

One program handles ``BLOCK`` output pixels of one image and loops over the channels. Loads are in
the input dtype and the arithmetic is float32 (float64 when the inputs are float64); the source
gradient is accumulated in a float32/float64 buffer and cast back. The backward is not itself
differentiable (no double backward on this path; use ``backend="torch"`` for that).

Used automatically by :func:`au_lib.ops.warp.warp` on CUDA tensors when Triton is importable. The
kernels also run under Triton's CPU interpreter (``TRITON_INTERPRET=1`` set before ``triton`` is
imported), which is how they are tested on machines without a GPU.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

try:  # pragma: no cover - import guard
    import triton
    import triton.language as tl

    _TRITON_ERROR: str | None = None
except Exception as exc:  # pragma: no cover
    triton = None
    tl = None
    _TRITON_ERROR = f"{type(exc).__name__}: {exc}"

BLOCK = 256


def interpreter_enabled() -> bool:
    """True when Triton's CPU interpreter is on (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def available() -> bool:
    """True when the Triton kernels can run (Triton importable, and a CUDA device or the interpreter)."""
    if triton is None:
        return False
    return torch.cuda.is_available() or interpreter_enabled()


if triton is not None:

    @triton.jit
    def _geometry(dx, dy, xf, yf, H, W, BORDER: tl.constexpr):
        xs = xf - dx
        ys = yf - dy
        if BORDER:
            mx = ((xs > 0) & (xs < W - 1)).to(xs.dtype)
            my = ((ys > 0) & (ys < H - 1)).to(ys.dtype)
            xs = tl.minimum(tl.maximum(xs, 0.0), W - 1.0)
            ys = tl.minimum(tl.maximum(ys, 0.0), H - 1.0)
        else:
            mx = xs * 0 + 1
            my = ys * 0 + 1
        x0f = tl.floor(xs)
        y0f = tl.floor(ys)
        u = xs - x0f
        v = ys - y0f
        x0 = x0f.to(tl.int32)
        y0 = y0f.to(tl.int32)
        return x0, y0, u, v, mx, my

    @triton.jit
    def _corners(x0, y0, u, v, mask, H, W):
        """Flat indices, in-image load masks and bilinear weights of the four corners (00, 01, 10, 11)."""
        x1 = x0 + 1
        y1 = y0 + 1
        vx0 = (x0 >= 0) & (x0 < W)
        vx1 = (x1 >= 0) & (x1 < W)
        vy0 = (y0 >= 0) & (y0 < H)
        vy1 = (y1 >= 0) & (y1 < H)
        i00 = y0 * W + x0
        i10 = i00 + W
        return (i00, i00 + 1, i10, i10 + 1,
                mask & vy0 & vx0, mask & vy0 & vx1, mask & vy1 & vx0, mask & vy1 & vx1,
                (1 - u) * (1 - v), u * (1 - v), (1 - u) * v, u * v)

    @triton.jit
    def _load_disp(d_ptr, dau_ptr, dp_ptr, la_ptr, lp_ptr, dbase, lbase, offs, mask, HW,
                   ACC: tl.constexpr, MIX: tl.constexpr):
        if MIX:
            ax = tl.load(dau_ptr + dbase + offs, mask=mask, other=0.0).to(ACC)
            ay = tl.load(dau_ptr + dbase + HW + offs, mask=mask, other=0.0).to(ACC)
            px = tl.load(dp_ptr + dbase + offs, mask=mask, other=0.0).to(ACC)
            py = tl.load(dp_ptr + dbase + HW + offs, mask=mask, other=0.0).to(ACC)
            la = tl.load(la_ptr + lbase + offs, mask=mask, other=0.0).to(ACC)
            lp = tl.load(lp_ptr + lbase + offs, mask=mask, other=0.0).to(ACC)
            a = 1.0 / (1.0 + tl.exp(lp - la))  # softmax over two logits, AU weight
            dx = a * ax + (1.0 - a) * px
            dy = a * ay + (1.0 - a) * py
        else:
            dx = tl.load(d_ptr + dbase + offs, mask=mask, other=0.0).to(ACC)
            dy = tl.load(d_ptr + dbase + HW + offs, mask=mask, other=0.0).to(ACC)
            a = dx * 0
            ax = a
            ay = a
            px = a
            py = a
        return dx, dy, a, ax, ay, px, py

    @triton.jit
    def _warp_fwd_kernel(src_ptr, d_ptr, dau_ptr, dp_ptr, la_ptr, lp_ptr, out_ptr, att_ptr,
                         C, H, W, ACC: tl.constexpr, BORDER: tl.constexpr, MIX: tl.constexpr,
                         BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        n = tl.program_id(1).to(tl.int64)
        HW = H * W
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < HW
        yi = offs // W
        xi = offs - yi * W
        dbase = n * 2 * HW
        lbase = n * HW
        dx, dy, a, ax, ay, px, py = _load_disp(d_ptr, dau_ptr, dp_ptr, la_ptr, lp_ptr, dbase, lbase,
                                               offs, mask, HW, ACC, MIX)
        if MIX:
            tl.store(att_ptr + lbase + offs, a.to(att_ptr.dtype.element_ty), mask=mask)
        x0, y0, u, v, mx, my = _geometry(dx, dy, xi.to(ACC), yi.to(ACC), H, W, BORDER)
        i00, i01, i10, i11, m00, m01, m10, m11, w00, w01, w10, w11 = _corners(x0, y0, u, v, mask, H, W)
        for c in range(C):
            cb = (n * C + c) * HW
            s00 = tl.load(src_ptr + cb + i00, mask=m00, other=0.0).to(ACC)
            s01 = tl.load(src_ptr + cb + i01, mask=m01, other=0.0).to(ACC)
            s10 = tl.load(src_ptr + cb + i10, mask=m10, other=0.0).to(ACC)
            s11 = tl.load(src_ptr + cb + i11, mask=m11, other=0.0).to(ACC)
            o = w00 * s00 + w01 * s01 + w10 * s10 + w11 * s11
            tl.store(out_ptr + cb + offs, o.to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _warp_bwd_kernel(src_ptr, d_ptr, dau_ptr, dp_ptr, la_ptr, lp_ptr, gout_ptr,
                         gsrc_ptr, gd_ptr, gdau_ptr, gdp_ptr, gla_ptr, glp_ptr,
                         C, H, W, ACC: tl.constexpr, BORDER: tl.constexpr, MIX: tl.constexpr,
                         NEED_SRC: tl.constexpr, NEED_DISP: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        n = tl.program_id(1).to(tl.int64)
        HW = H * W
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < HW
        yi = offs // W
        xi = offs - yi * W
        dbase = n * 2 * HW
        lbase = n * HW
        dx, dy, a, ax, ay, px, py = _load_disp(d_ptr, dau_ptr, dp_ptr, la_ptr, lp_ptr, dbase, lbase,
                                               offs, mask, HW, ACC, MIX)
        x0, y0, u, v, mx, my = _geometry(dx, dy, xi.to(ACC), yi.to(ACC), H, W, BORDER)
        i00, i01, i10, i11, m00, m01, m10, m11, w00, w01, w10, w11 = _corners(x0, y0, u, v, mask, H, W)
        gxh = u * 0
        gyh = u * 0
        for c in range(C):
            cb = (n * C + c) * HW
            g = tl.load(gout_ptr + cb + offs, mask=mask, other=0.0).to(ACC)
            if NEED_DISP:
                s00 = tl.load(src_ptr + cb + i00, mask=m00, other=0.0).to(ACC)
                s01 = tl.load(src_ptr + cb + i01, mask=m01, other=0.0).to(ACC)
                s10 = tl.load(src_ptr + cb + i10, mask=m10, other=0.0).to(ACC)
                s11 = tl.load(src_ptr + cb + i11, mask=m11, other=0.0).to(ACC)
                gxh += g * ((s01 - s00) * (1 - v) + (s11 - s10) * v)
                gyh += g * ((s10 - s00) * (1 - u) + (s11 - s01) * u)
            if NEED_SRC:
                tl.atomic_add(gsrc_ptr + cb + i00, g * w00, mask=m00)
                tl.atomic_add(gsrc_ptr + cb + i01, g * w01, mask=m01)
                tl.atomic_add(gsrc_ptr + cb + i10, g * w10, mask=m10)
                tl.atomic_add(gsrc_ptr + cb + i11, g * w11, mask=m11)
        if NEED_DISP:
            # x̂ = x - dx  =>  dL/ddx = -dL/dx̂ (0 where the border clamp is active)
            gdx = -gxh * mx
            gdy = -gyh * my
            if MIX:
                gl = a * (1 - a) * (gdx * (ax - px) + gdy * (ay - py))
                tl.store(gdau_ptr + dbase + offs, (a * gdx).to(gdau_ptr.dtype.element_ty), mask=mask)
                tl.store(gdau_ptr + dbase + HW + offs, (a * gdy).to(gdau_ptr.dtype.element_ty), mask=mask)
                tl.store(gdp_ptr + dbase + offs, ((1 - a) * gdx).to(gdp_ptr.dtype.element_ty), mask=mask)
                tl.store(gdp_ptr + dbase + HW + offs, ((1 - a) * gdy).to(gdp_ptr.dtype.element_ty), mask=mask)
                tl.store(gla_ptr + lbase + offs, gl.to(gla_ptr.dtype.element_ty), mask=mask)
                tl.store(glp_ptr + lbase + offs, (-gl).to(glp_ptr.dtype.element_ty), mask=mask)
            else:
                tl.store(gd_ptr + dbase + offs, gdx.to(gd_ptr.dtype.element_ty), mask=mask)
                tl.store(gd_ptr + dbase + HW + offs, gdy.to(gd_ptr.dtype.element_ty), mask=mask)


def _require() -> None:
    if triton is None:
        raise RuntimeError(f"warp_triton: Triton is not importable ({_TRITON_ERROR})")
    if not interpreter_enabled() and not torch.cuda.is_available():
        raise RuntimeError("warp_triton: needs a CUDA device, or TRITON_INTERPRET=1 for the CPU interpreter")


def _acc(*tensors: Tensor):
    return tl.float64 if any(t.dtype == torch.float64 for t in tensors) else tl.float32


def _acc_torch(*tensors: Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _launch_grid(N: int, HW: int):
    return (triton.cdiv(HW, BLOCK), N)


class TritonWarpFunction(torch.autograd.Function):
    """Triton version of :class:`au_lib.ops.warp.WarpFunction` (no double backward)."""

    @staticmethod
    def forward(ctx, source: Tensor, displacement: Tensor, padding_mode: str = "zeros") -> Tensor:
        _require()
        src = source.contiguous()
        d = displacement.contiguous()
        N, C, H, W = src.shape
        out = torch.empty_like(src, memory_format=torch.contiguous_format)
        acc = _acc(src, d)
        _warp_fwd_kernel[_launch_grid(N, H * W)](src, d, d, d, d, d, out, out, C, H, W, ACC=acc,
                                                  BORDER=padding_mode == "border", MIX=False, BLOCK=BLOCK)
        ctx.save_for_backward(src, d)
        ctx.padding_mode = padding_mode
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        src, d = ctx.saved_tensors
        need_src, need_d = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        N, C, H, W = src.shape
        g = grad_out.contiguous()
        gsrc = torch.zeros(src.shape, dtype=_acc_torch(src, d), device=src.device) if need_src else src
        gd = torch.empty_like(d) if need_d else d
        _warp_bwd_kernel[_launch_grid(N, H * W)](src, d, d, d, d, d, g, gsrc, gd, gd, gd, gd, gd,
                                                  C, H, W, ACC=_acc(src, d),
                                                  BORDER=ctx.padding_mode == "border", MIX=False,
                                                  NEED_SRC=need_src, NEED_DISP=need_d, BLOCK=BLOCK)
        return (gsrc.to(src.dtype) if need_src else None), (gd if need_d else None), None


class TritonWarpMixedFunction(torch.autograd.Function):
    """Fused ``warp(source, a d_au + (1 - a) d_pose)`` with ``a = softmax(l_au, l_pose)_0``."""

    @staticmethod
    def forward(ctx, source, d_au, d_pose, logit_au, logit_pose, padding_mode="zeros"):
        _require()
        src = source.contiguous()
        dau, dp = d_au.contiguous(), d_pose.contiguous()
        la, lp = logit_au.contiguous(), logit_pose.contiguous()
        N, C, H, W = src.shape
        out = torch.empty_like(src, memory_format=torch.contiguous_format)
        att = torch.empty_like(la)
        acc = _acc(src, dau, dp, la, lp)
        _warp_fwd_kernel[_launch_grid(N, H * W)](src, dau, dau, dp, la, lp, out, att, C, H, W, ACC=acc,
                                                  BORDER=padding_mode == "border", MIX=True, BLOCK=BLOCK)
        ctx.save_for_backward(src, dau, dp, la, lp)
        ctx.padding_mode = padding_mode
        ctx.mark_non_differentiable(att)
        return out, att

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, _grad_att):
        src, dau, dp, la, lp = ctx.saved_tensors
        need_src = ctx.needs_input_grad[0]
        need_d = any(ctx.needs_input_grad[1:5])
        N, C, H, W = src.shape
        g = grad_out.contiguous()
        gsrc = torch.zeros(src.shape, dtype=_acc_torch(src, dau), device=src.device) if need_src else src
        gdau, gdp = torch.empty_like(dau), torch.empty_like(dp)
        gla, glp = torch.empty_like(la), torch.empty_like(lp)
        _warp_bwd_kernel[_launch_grid(N, H * W)](src, dau, dau, dp, la, lp, g, gsrc, gdau, gdau, gdp,
                                                  gla, glp, C, H, W, ACC=_acc(src, dau, dp, la, lp),
                                                  BORDER=ctx.padding_mode == "border", MIX=True,
                                                  NEED_SRC=need_src, NEED_DISP=need_d, BLOCK=BLOCK)
        grads = [gdau, gdp, gla, glp] if need_d else [None] * 4
        grads = [gr if ctx.needs_input_grad[i + 1] else None for i, gr in enumerate(grads)]
        return (gsrc.to(src.dtype) if need_src else None), *grads, None


def warp_triton(source: Tensor, displacement: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Triton warp (inputs already checked by :func:`au_lib.ops.warp.warp`). N x C x H x W out."""
    return TritonWarpFunction.apply(source, displacement, padding_mode)


def warp_mixed_triton(source: Tensor, d_au: Tensor, d_pose: Tensor, logit_au: Tensor, logit_pose: Tensor,
                      padding_mode: str = "zeros"):
    """Fused Triton ``warp_mixed``: returns ``(output, attention N x 2 x H x W)``."""
    out, a = TritonWarpMixedFunction.apply(source, d_au, d_pose, logit_au, logit_pose, padding_mode)
    return out, torch.cat([a, 1 - a], dim=1)

"""Bilinear displacement warp with a hand-written backward (TCAE's operator T).

Convention (the whole library uses it): displacements are in **pixels**, shape ``N x 2 x H x W``,
channel 0 = ``dx`` (along the width), channel 1 = ``dy`` (along the height), and

    output(x, y) = S(x - dx(x, y), y - dy(x, y))

sampled bilinearly from the source ``S`` (pixel centres at integer coordinates, i.e. the
``align_corners=True`` geometry of :func:`torch.nn.functional.grid_sample`).

Forward, with ``x̂ = x - dx``, ``x0 = floor(x̂)``, ``x1 = x0 + 1``, ``u = x̂ - x0`` (same in y, ``v``)::

    I = (1-u)(1-v) S[y0,x0] + u(1-v) S[y0,x1] + (1-u) v S[y1,x0] + u v S[y1,x1]

Backward (the corrected form of TCAE's supplementary, Section 1)::

    dI/dx̂ = (1-v) (S[y0,x1] - S[y0,x0]) + v (S[y1,x1] - S[y1,x0])
    dL/ddx = - sum_c dL/dI_c * dI_c/dx̂          (x̂ = x - dx, so dx̂/ddx = -1)
    dL/dS[m,n] = sum over output pixels of dL/dI * (its bilinear weight on [m,n])

Corners are chosen with ``floor``: at an integer ``x̂`` (where the operator has a kink) this returns
the **right-sided** derivative ``S[x̂+1] - S[x̂]``, the same one-sided convention as
``grid_sample``. Out-of-range corners read as 0 (``padding_mode="zeros"``), or the sample position
is clamped into the image (``"border"``; the coordinate gradient is then 0 where the clamp is active,
as in ``grid_sample``).

Public API: :func:`warp`, :class:`WarpFunction`, :func:`displacement_to_grid`,
:func:`grid_to_displacement`, :func:`official_flow_to_displacement`,
:func:`displacement_to_official_flow`, :func:`mix_displacements`, :func:`warp_mixed`.

On CUDA tensors the Triton kernels of :mod:`au_lib.ops.warp_triton` are used automatically, on CPU
tensors the fused C kernel of :mod:`au_lib.ops.warp_cpu` (built on first use); set
``AU_WARP_BACKEND=torch`` or pass ``backend="torch"`` to force the PyTorch path.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PADDING_MODES",
    "WarpFunction",
    "warp",
    "warp_reference",
    "displacement_to_grid",
    "grid_to_displacement",
    "official_flow_to_displacement",
    "displacement_to_official_flow",
    "mix_displacements",
    "warp_mixed",
]

PADDING_MODES = ("zeros", "border")
BACKENDS = ("auto", "torch", "cpu", "triton")


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def _check_inputs(source: Tensor, displacement: Tensor, padding_mode: str) -> None:
    if not isinstance(source, Tensor) or not isinstance(displacement, Tensor):
        raise TypeError("warp: source and displacement must be torch.Tensors, got "
                        f"{type(source).__name__} and {type(displacement).__name__}")
    if source.ndim != 4:
        raise ValueError(f"warp: source must be N x C x H x W, got shape {tuple(source.shape)}")
    if displacement.ndim != 4 or displacement.shape[1] != 2:
        raise ValueError("warp: displacement must be N x 2 x H x W (pixels; channel 0 = dx, 1 = dy), "
                         f"got shape {tuple(displacement.shape)}")
    if not source.is_floating_point():
        raise TypeError(f"warp: source must be a floating-point tensor, got dtype {source.dtype}")
    if not displacement.is_floating_point():
        raise TypeError(f"warp: displacement must be a floating-point tensor, got dtype {displacement.dtype}")
    if source.shape[0] != displacement.shape[0]:
        raise ValueError(f"warp: batch sizes differ: source has N={source.shape[0]}, "
                         f"displacement has N={displacement.shape[0]}")
    if source.shape[2:] != displacement.shape[2:]:
        raise ValueError(f"warp: spatial sizes differ: source is {tuple(source.shape[2:])}, "
                         f"displacement is {tuple(displacement.shape[2:])} (H x W must match)")
    if source.device != displacement.device:
        raise ValueError(f"warp: source is on {source.device}, displacement on {displacement.device}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"warp: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half/bfloat16 are computed in float32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


# --------------------------------------------------------------------------------------------------
# the PyTorch implementation: one flat gather for the 4 corners, one scatter_add for the backward
# --------------------------------------------------------------------------------------------------
def _sample_geometry(displacement: Tensor, padding_mode: str, dtype: torch.dtype):
    """Corner indices, bilinear weights and masks for every output pixel.

    Returns ``idx`` (N, 4*HW) long flat indices of the corners (00, 01, 10, 11 = (y0,x0), (y0,x1),
    (y1,x0), (y1,x1)), ``u``, ``v`` (N, HW) fractional parts, ``valid`` (N, 4, HW) corner-in-image
    masks (dtype), and ``gx``, ``gy`` (N, HW) multipliers of the coordinate gradient (1, or 0 where
    the border clamp is active).
    """
    N, _, H, W = displacement.shape
    d = displacement.to(dtype)
    xs = torch.arange(W, device=d.device, dtype=dtype).view(1, 1, W) - d[:, 0]
    ys = torch.arange(H, device=d.device, dtype=dtype).view(1, H, 1) - d[:, 1]
    xs = xs.reshape(N, H * W)
    ys = ys.reshape(N, H * W)
    if padding_mode == "border":
        gx = ((xs > 0) & (xs < W - 1)).to(dtype)
        gy = ((ys > 0) & (ys < H - 1)).to(dtype)
        xs = xs.clamp(0, W - 1)
        ys = ys.clamp(0, H - 1)
    else:
        gx = gy = None
    x0f = torch.floor(xs)
    y0f = torch.floor(ys)
    u = xs - x0f
    v = ys - y0f
    x0 = x0f.long()
    y0 = y0f.long()
    x1 = x0 + 1
    y1 = y0 + 1
    vx0 = (x0 >= 0) & (x0 < W)
    vx1 = (x1 >= 0) & (x1 < W)
    vy0 = (y0 >= 0) & (y0 < H)
    vy1 = (y1 >= 0) & (y1 < H)
    x0c, x1c = x0.clamp(0, W - 1), x1.clamp(0, W - 1)
    y0c, y1c = y0.clamp(0, H - 1) * W, y1.clamp(0, H - 1) * W
    idx = torch.cat([y0c + x0c, y0c + x1c, y1c + x0c, y1c + x1c], dim=1)
    valid = torch.stack([vy0 & vx0, vy0 & vx1, vy1 & vx0, vy1 & vx1], dim=1).to(dtype)
    return idx, u, v, valid, gx, gy


def _gather_corners(src_flat: Tensor, idx: Tensor, valid: Tensor) -> Tensor:
    """(N, C, HW) source, (N, 4HW) indices -> (N, C, 4, HW) corner values, 0 outside the image."""
    N, C, HW = src_flat.shape
    vals = torch.gather(src_flat, 2, idx.unsqueeze(1).expand(N, C, idx.shape[1]))
    return vals.view(N, C, 4, HW) * valid.unsqueeze(1)


def _warp_backward(source: Tensor, displacement: Tensor, grad_out: Tensor, padding_mode: str,
                   need_source: bool, need_disp: bool):
    """Hand-written gradients ``(dL/dsource, dL/ddisplacement)`` (None where not needed).

    Written with differentiable torch ops, so ``create_graph=True`` (double backward) works.
    """
    N, C, H, W = source.shape
    HW = H * W
    dtype = _compute_dtype(source, displacement)
    idx, u, v, valid, gx, gy = _sample_geometry(displacement, padding_mode, dtype)
    g = grad_out.to(dtype).reshape(N, C, HW)
    u1, v1 = 1 - u, 1 - v
    grad_src = grad_disp = None
    if need_source:
        w = torch.stack([v1 * u1, v1 * u, v * u1, v * u], dim=1) * valid  # (N, 4, HW)
        contrib = (g.unsqueeze(2) * w.unsqueeze(1)).reshape(N, C, 4 * HW)
        grad_src = torch.zeros(N, C, HW, dtype=dtype, device=g.device)
        grad_src = grad_src.scatter_add(2, idx.unsqueeze(1).expand(N, C, 4 * HW), contrib)
        grad_src = grad_src.view(N, C, H, W).to(source.dtype)
    if need_disp:
        vals = _gather_corners(source.to(dtype).reshape(N, C, HW), idx, valid)
        s00, s01, s10, s11 = vals.unbind(2)
        # dI/dx̂: horizontal differences of the two neighbouring columns, interpolated in y
        dIx = ((s01 - s00) * v1.unsqueeze(1) + (s11 - s10) * v.unsqueeze(1))
        dIy = ((s10 - s00) * u1.unsqueeze(1) + (s11 - s01) * u.unsqueeze(1))
        gxh = (g * dIx).sum(1)
        gyh = (g * dIy).sum(1)
        if gx is not None:
            gxh = gxh * gx
            gyh = gyh * gy
        # x̂ = x - dx  =>  dL/ddx = -dL/dx̂
        grad_disp = -torch.stack([gxh, gyh], dim=1).view(N, 2, H, W)
        grad_disp = grad_disp.to(displacement.dtype)
    return grad_src, grad_disp


_PAD = 2  # source padding used by the fast path (see _fast_forward)


def _fast_forward(source: Tensor, displacement: Tensor, padding_mode: str, need_disp_grad: bool):
    """Forward of the fast (non-differentiable) path; also returns what the backward needs.

    The source is padded by 2 pixels (zeros, or replicated edges for ``"border"``) and the sample
    positions clamped to [-2, W] (zeros: a position clamped there reads only padding, exactly as the
    unclamped one reads only out-of-image corners) or to [0, W-1] (border). Then all four corners
    are in range, no masks are needed, and each corner is one ``gather`` with a flat index.

    Returns ``out`` (N, C, H, W) and a tuple for the backward: flat corner index ``i00`` (N, 1, HW)
    into the padded image, ``u``, ``v`` (N, 1, HW), the clamp masks (border) and the two image
    derivatives ``dI/dx̂``, ``dI/dŷ`` (N, C, HW) when ``need_disp_grad``.
    """
    N, C, H, W = source.shape
    HW = H * W
    dtype = _compute_dtype(source, displacement)
    Hp, Wp = H + 2 * _PAD, W + 2 * _PAD
    d = displacement.to(dtype)
    xs = (torch.arange(W, device=d.device, dtype=dtype).view(1, 1, W) - d[:, 0]).reshape(N, 1, HW)
    ys = (torch.arange(H, device=d.device, dtype=dtype).view(1, H, 1) - d[:, 1]).reshape(N, 1, HW)
    if padding_mode == "border":
        mx = ((xs > 0) & (xs < W - 1)).to(dtype)
        my = ((ys > 0) & (ys < H - 1)).to(dtype)
        xs = xs.clamp(0, W - 1)
        ys = ys.clamp(0, H - 1)
        src_p = F.pad(source.to(dtype), (_PAD,) * 4, mode="replicate")
    else:
        mx = my = None
        xs = xs.clamp(-_PAD, W)
        ys = ys.clamp(-_PAD, H)
        src_p = F.pad(source.to(dtype), (_PAD,) * 4)
    x0 = torch.floor(xs)
    y0 = torch.floor(ys)
    u = xs - x0
    v = ys - y0
    # a NaN displacement gives a NaN output (through u, v); its corner index must still be in range
    x0 = x0.nan_to_num_(nan=-_PAD)
    y0 = y0.nan_to_num_(nan=-_PAD)
    i00 = ((y0 + _PAD) * Wp + (x0 + _PAD)).long()  # exact: Hp * Wp << 2**24
    src_p = src_p.reshape(N, C, Hp * Wp)
    size = (N, C, HW)
    s00 = torch.gather(src_p, 2, i00.expand(size))
    s01 = torch.gather(src_p, 2, (i00 + 1).expand(size))
    s10 = torch.gather(src_p, 2, (i00 + Wp).expand(size))
    s11 = torch.gather(src_p, 2, (i00 + (Wp + 1)).expand(size))
    # in place where possible: at 64 x 3 x 256 x 256 every extra temporary costs a page-faulted 50 MB
    ex0 = s01.sub_(s00)           # S[y0,x1] - S[y0,x0]
    ex1 = s11.sub_(s10)           # S[y1,x1] - S[y1,x0]
    top = s00.addcmul_(u, ex0)    # row y0 interpolated in x
    bottom = s10.addcmul_(u, ex1)  # row y1 interpolated in x
    d_dy = bottom.sub_(top)       # dI/dŷ = bottom row - top row
    out = top.addcmul_(v, d_dy).view(N, C, H, W)
    saved = None
    if need_disp_grad:
        d_dx = ex0.lerp_(ex1, v)  # dI/dx̂ = (1-v) ex0 + v ex1
        saved = (d_dx, d_dy)
    return out, (i00, u, v, mx, my, saved)


def _fast_backward(shape, dtype, geom, grad_out: Tensor, padding_mode: str, need_source: bool,
                   need_disp: bool):
    """Backward of the fast path from the tensors saved by :func:`_fast_forward`."""
    N, C, H, W = shape
    HW = H * W
    Hp, Wp = H + 2 * _PAD, W + 2 * _PAD
    i00, u, v, mx, my, saved = geom
    g = grad_out.reshape(N, C, HW).to(dtype)
    grad_src = grad_disp = None
    if need_disp:
        d_dx, d_dy = saved
        gxh = (g * d_dx).sum(1)
        gyh = (g * d_dy).sum(1)
        if mx is not None:
            gxh = gxh * mx[:, 0]
            gyh = gyh * my[:, 0]
        grad_disp = torch.stack([gxh, gyh], dim=1).neg_().view(N, 2, H, W)  # x̂ = x - dx
    if need_source:
        acc = torch.zeros(N, C, Hp * Wp, dtype=dtype, device=g.device)
        gv = g * v
        g1v = g - gv
        size = (N, C, HW)
        # bilinear weights: (1-u)(1-v), u(1-v), (1-u)v, uv
        t = g1v * u
        acc.scatter_add_(2, i00.expand(size), g1v.sub_(t))
        acc.scatter_add_(2, (i00 + 1).expand(size), t)
        t = torch.mul(gv, u, out=t)
        acc.scatter_add_(2, (i00 + Wp).expand(size), gv.sub_(t))
        acc.scatter_add_(2, (i00 + (Wp + 1)).expand(size), t)
        # the padding only ever receives zero weight (clamped positions), so cropping is exact
        grad_src = acc.view(N, C, Hp, Wp)[:, :, _PAD:_PAD + H, _PAD:_PAD + W]
    return grad_src, grad_disp


class WarpFunction(torch.autograd.Function):
    """``output = S(x - dx, y - dy)`` with the hand-written backward.

    ``WarpFunction.apply(source, displacement, padding_mode, backend)``; prefer :func:`warp`, which
    checks inputs. ``backend`` ``"auto"`` (default), ``"cpu"`` or ``"torch"`` picks the
    implementation of both passes: the fused CPU kernel of :mod:`au_lib.ops.warp_cpu` (on CPU
    tensors, when it builds), else the PyTorch fast path of :func:`_fast_forward` /
    :func:`_fast_backward` (the image derivatives ``dI/dx̂``, ``dI/dŷ`` are formed in the forward
    and saved, 2 x the output's size). Under ``create_graph=True`` the backward is recomputed with
    differentiable ops (:func:`_warp_backward`), so double backward works with either.
    """

    @staticmethod
    def forward(ctx, source: Tensor, displacement: Tensor, padding_mode: str = "zeros",
                backend: str = "auto") -> Tensor:
        dtype = _compute_dtype(source, displacement)
        ctx.use_kernel = _use_cpu_kernel(source, backend)
        ctx.save_for_backward(source, displacement)
        ctx.padding_mode = padding_mode
        ctx.dtype = dtype
        if ctx.use_kernel:
            from au_lib.ops import warp_cpu

            out = warp_cpu.warp_forward(source.to(dtype).contiguous(), displacement.to(dtype).contiguous(),
                                        padding_mode)
            return out.to(source.dtype)
        out, geom = _fast_forward(source, displacement, padding_mode, ctx.needs_input_grad[1])
        ctx.geom = geom
        return out.to(source.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        source, displacement = ctx.saved_tensors
        need_src, need_disp = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if torch.is_grad_enabled():  # create_graph=True: differentiable recomputation
            gs, gd = _warp_backward(source, displacement, grad_out, ctx.padding_mode, need_src, need_disp)
        elif ctx.use_kernel:
            from au_lib.ops import warp_cpu

            dt = ctx.dtype
            gs, gd = warp_cpu.warp_backward(source.to(dt).contiguous(), displacement.to(dt).contiguous(),
                                            grad_out, ctx.padding_mode, need_src, need_disp)
        else:
            gs, gd = _fast_backward(source.shape, ctx.dtype, ctx.geom, grad_out, ctx.padding_mode,
                                    need_src, need_disp)
        if gs is not None:
            gs = gs.to(source.dtype)
        if gd is not None:
            gd = gd.to(displacement.dtype)
        return gs, gd, None, None


def _backend_choice(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"warp: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = os.environ.get("AU_WARP_BACKEND", "auto") or "auto"
        if backend not in BACKENDS:
            raise ValueError(f"AU_WARP_BACKEND must be one of {BACKENDS}, got {backend!r}")
    return backend


def _use_cpu_kernel(source: Tensor, backend: str) -> bool:
    """Whether the fused CPU kernel runs this call (see :mod:`au_lib.ops.warp_cpu`)."""
    backend = _backend_choice(backend)
    if backend == "cpu" and source.device.type != "cpu":
        raise ValueError(f"warp: backend 'cpu' needs CPU tensors, got {source.device}")
    if backend in ("torch", "triton") or source.device.type != "cpu":
        return False
    from au_lib.ops import warp_cpu

    if backend == "cpu" and not warp_cpu.available():
        raise RuntimeError(f"warp: backend 'cpu' requested but the kernel could not be built: "
                           f"{warp_cpu.build_error()}")
    return warp_cpu.available()


def _use_triton(source: Tensor, backend: str) -> bool:
    backend = _backend_choice(backend)
    if backend in ("torch", "cpu"):
        return False
    if backend == "triton":
        return True
    if not source.is_cuda:
        return False
    from au_lib.ops import warp_triton

    return warp_triton.available()


def warp(source: Tensor, displacement: Tensor, padding_mode: str = "zeros", backend: str = "auto") -> Tensor:
    """Warp ``source`` (N x C x H x W) by a pixel ``displacement`` (N x 2 x H x W): ``S(x-dx, y-dy)``.

    Bilinear, any number of channels, ``padding_mode`` ``"zeros"`` or ``"border"``. Differentiable in
    both inputs (hand-written backward; one-sided, floor-based derivative at integer sample
    positions, like ``grid_sample``). Half/bfloat16 inputs are computed in float32 and returned in
    the source dtype. ``backend``: ``"auto"`` (Triton on CUDA, the fused CPU kernel on CPU, the
    PyTorch path where neither is available), ``"torch"``, ``"cpu"``, ``"triton"``; the environment
    variable ``AU_WARP_BACKEND`` sets what ``"auto"`` means. Returns N x C x H x W in ``source.dtype``.
    """
    _check_inputs(source, displacement, padding_mode)
    if _use_triton(source, backend):
        from au_lib.ops import warp_triton

        return warp_triton.warp_triton(source, displacement, padding_mode)
    return WarpFunction.apply(source, displacement, padding_mode, backend)


def warp_reference(source: Tensor, displacement: Tensor, padding_mode: str = "zeros") -> Tensor:
    """The same operator through ``F.grid_sample(align_corners=True)`` and autograd (for checks)."""
    _check_inputs(source, displacement, padding_mode)
    grid = displacement_to_grid(displacement.to(source.dtype))
    return torch.nn.functional.grid_sample(source, grid, mode="bilinear", padding_mode=padding_mode,
                                           align_corners=True)


# --------------------------------------------------------------------------------------------------
# conventions: pixel displacement <-> grid_sample grid <-> official TCAE "flow"
# --------------------------------------------------------------------------------------------------
def _check_field(name: str, t: Tensor) -> None:
    if t.ndim != 4 or t.shape[1] != 2:
        raise ValueError(f"{name} must be N x 2 x H x W, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be floating point, got dtype {t.dtype}")


def displacement_to_grid(displacement: Tensor, align_corners: bool = True) -> Tensor:
    """Pixel displacement (N x 2 x H x W) -> ``grid_sample`` grid (N x H x W x 2, normalised x, y).

    ``align_corners=True``: ``g = 2 (x - dx) / (W - 1) - 1``; ``False``: ``g = (2 (x - dx) + 1) / W - 1``.
    Pass the grid to ``grid_sample`` with the same ``align_corners``.
    """
    _check_field("displacement", displacement)
    N, _, H, W = displacement.shape
    dt, dev = displacement.dtype, displacement.device
    xs = torch.arange(W, dtype=dt, device=dev).view(1, 1, W) - displacement[:, 0]
    ys = torch.arange(H, dtype=dt, device=dev).view(1, H, 1) - displacement[:, 1]
    if align_corners:
        gx = xs * (2.0 / max(W - 1, 1)) - 1.0
        gy = ys * (2.0 / max(H - 1, 1)) - 1.0
    else:
        gx = (2.0 * xs + 1.0) / W - 1.0
        gy = (2.0 * ys + 1.0) / H - 1.0
    return torch.stack([gx, gy], dim=-1)


def grid_to_displacement(grid: Tensor, align_corners: bool = True) -> Tensor:
    """Inverse of :func:`displacement_to_grid`: grid (N x H x W x 2) -> pixel displacement (N x 2 x H x W)."""
    if grid.ndim != 4 or grid.shape[-1] != 2:
        raise ValueError(f"grid must be N x H x W x 2, got shape {tuple(grid.shape)}")
    if not grid.is_floating_point():
        raise TypeError(f"grid must be floating point, got dtype {grid.dtype}")
    N, H, W, _ = grid.shape
    dt, dev = grid.dtype, grid.device
    if align_corners:
        xs = (grid[..., 0] + 1.0) * (max(W - 1, 1) / 2.0)
        ys = (grid[..., 1] + 1.0) * (max(H - 1, 1) / 2.0)
    else:
        xs = ((grid[..., 0] + 1.0) * W - 1.0) / 2.0
        ys = ((grid[..., 1] + 1.0) * H - 1.0) / 2.0
    dx = torch.arange(W, dtype=dt, device=dev).view(1, 1, W) - xs
    dy = torch.arange(H, dtype=dt, device=dev).view(1, H, 1) - ys
    return torch.stack([dx, dy], dim=1)


def official_flow_to_displacement(flow: Tensor) -> Tensor:
    """Official TCAE code's flow (N x 2 x H x W, normalised) -> our pixel displacement (N x 2 x H x W).

    The released code (``mysee1989/TCAE``, PyTorch 0.4.1) samples ``grid_sample(S, identity + flow)``
    with ``identity = linspace(-1, 1)`` (``align_corners=True`` behaviour), i.e. ``x̂ = x + flow``
    in normalised units. With ``x̂ = x - dx`` in pixels: ``dx = -flow_x (W - 1) / 2``,
    ``dy = -flow_y (H - 1) / 2``. (The official code also clamps ``identity + flow`` to [-1, 1];
    that clamp is not part of this conversion.)
    """
    _check_field("flow", flow)
    H, W = flow.shape[2:]
    scale = flow.new_tensor([-(W - 1) / 2.0, -(H - 1) / 2.0]).view(1, 2, 1, 1)
    return flow * scale


def displacement_to_official_flow(displacement: Tensor) -> Tensor:
    """Inverse of :func:`official_flow_to_displacement`: ``flow = -d * 2 / (size - 1)``."""
    _check_field("displacement", displacement)
    H, W = displacement.shape[2:]
    scale = displacement.new_tensor([-2.0 / max(W - 1, 1), -2.0 / max(H - 1, 1)]).view(1, 2, 1, 1)
    return displacement * scale


# --------------------------------------------------------------------------------------------------
# TCAE's attention mix of the AU and pose displacements
# --------------------------------------------------------------------------------------------------
def _check_mix(d_au: Tensor, d_pose: Tensor, logit_au: Tensor, logit_pose: Tensor) -> None:
    _check_field("d_au", d_au)
    _check_field("d_pose", d_pose)
    if d_au.shape != d_pose.shape:
        raise ValueError(f"d_au {tuple(d_au.shape)} and d_pose {tuple(d_pose.shape)} must have the same shape")
    want = (d_au.shape[0], 1, *d_au.shape[2:])
    for name, t in (("logit_au", logit_au), ("logit_pose", logit_pose)):
        if tuple(t.shape) != want:
            raise ValueError(f"{name} must be N x 1 x H x W = {want}, got {tuple(t.shape)}")


def mix_displacements(d_au: Tensor, d_pose: Tensor, logit_au: Tensor, logit_pose: Tensor):
    """TCAE's per-pixel attention mix of two displacement fields.

    ``d_au``, ``d_pose``: N x 2 x H x W (pixels); ``logit_au``, ``logit_pose``: N x 1 x H x W.
    Returns ``(d, attention)`` with ``attention = softmax([logit_au, logit_pose], dim=1)``
    (N x 2 x H x W; channel 0 = AU weight, channel 1 = pose weight, summing to 1) and
    ``d = attention[:, :1] * d_au + attention[:, 1:] * d_pose`` (N x 2 x H x W, pixels).
    """
    _check_mix(d_au, d_pose, logit_au, logit_pose)
    attention = torch.softmax(torch.cat([logit_au, logit_pose], dim=1), dim=1)
    d = attention[:, :1] * d_au + attention[:, 1:] * d_pose
    return d, attention


def warp_mixed(source: Tensor, d_au: Tensor, d_pose: Tensor, logit_au: Tensor, logit_pose: Tensor,
               padding_mode: str = "zeros", backend: str = "auto"):
    """``warp(source, mix_displacements(...)[0])``, fused into one kernel on CUDA.

    Returns ``(output, attention)``: output N x C x H x W (source dtype), attention N x 2 x H x W as
    in :func:`mix_displacements`. Gradients flow to all five inputs.
    """
    _check_mix(d_au, d_pose, logit_au, logit_pose)
    _check_inputs(source, d_au, padding_mode)
    if _use_triton(source, backend):
        from au_lib.ops import warp_triton

        return warp_triton.warp_mixed_triton(source, d_au, d_pose, logit_au, logit_pose, padding_mode)
    d, attention = mix_displacements(d_au, d_pose, logit_au, logit_pose)
    return WarpFunction.apply(source, d, padding_mode, backend), attention

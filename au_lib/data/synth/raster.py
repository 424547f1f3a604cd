"""A vectorised z-buffer triangle rasteriser in torch (CPU or GPU), for batches of meshes.

Screen convention: vertex ``(x, y, z)`` with ``x`` along the image width and ``y`` down the height,
in pixels, pixel ``(row i, column j)`` has its centre at ``(x, y) = (j, i)``; larger ``z`` is closer to
the camera (orthographic projection). Triangles are drawn from both sides (no culling).

Method: all (frame, triangle) pairs at once; each enumerates the pixel centres of its bounding box
(``repeat_interleave``), evaluates its edge functions (-> barycentric coordinates) as affine functions
of the pixel position, and the nearest fragment per pixel wins via ``scatter_reduce(amax)`` on
depth, ties broken by the larger triangle index. Barycentrics are exact for the orthographic
projection, so interpolated attributes (and the ground-truth correspondences) are too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Fragments:
    """Per-pixel result of :func:`rasterize`.

    Attributes:
        tri: (B, H, W) int64 index of the visible triangle, -1 for background.
        bary: (B, H, W, 3) float barycentric coordinates of the pixel centre in that triangle (0 on background).
        zbuf: (B, H, W) float depth of the visible surface (``-inf`` on background).
    """

    tri: torch.Tensor
    bary: torch.Tensor
    zbuf: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(B, H, W) bool foreground mask."""
        return self.tri >= 0


def rasterize(verts: torch.Tensor, faces: torch.Tensor, height: int, width: int,
              backend: str | None = None) -> Fragments:
    """Rasterise ``verts`` (B, V, 3) screen-space vertices with ``faces`` (F, 3) into ``height x width``.

    ``backend``: ``"c"`` (the C kernel of :mod:`.raster_cpu`, float32 CPU tensors), ``"torch"``, or
    None: ``$AU_RASTER_BACKEND`` if set, else the C kernel where it applies and builds. Both give the
    same fragments.

    Every (frame, triangle) pair enumerates exactly the pixel centres of its bounding box
    (``repeat_interleave``), evaluates the triangle's edge functions as affine functions of the pixel
    position, and the nearest fragment per pixel wins (``scatter_reduce`` max on depth, ties to the
    larger triangle index).

    Returns:
        :class:`Fragments` with the nearest triangle, barycentrics and depth per pixel.
    """
    if verts.ndim != 3 or verts.shape[-1] != 3:
        raise ValueError(f"verts must be (B, V, 3), got {tuple(verts.shape)}")
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if _use_c(verts, backend):
        from au_lib.data.synth.raster_cpu import rasterize_c

        return Fragments(*rasterize_c(verts, faces, height, width))
    B, dev, dt = verts.shape[0], verts.device, verts.dtype
    F_ = faces.shape[0]
    tri = verts[:, faces].reshape(B * F_, 3, 3)  # (N, 3 vertices, xyz)
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]
    x0 = torch.ceil(x.min(-1).values).clamp(0, width)
    x1 = torch.floor(x.max(-1).values).clamp(-1, width - 1)
    y0 = torch.ceil(y.min(-1).values).clamp(0, height)
    y1 = torch.floor(y.max(-1).values).clamp(-1, height - 1)
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    w = (x1 - x0 + 1).clamp(min=0)
    h = (y1 - y0 + 1).clamp(min=0)
    ok = (w > 0) & (h > 0) & (area.abs() > 1e-9)
    n_pix = B * height * width
    zbuf = torch.full((n_pix,), float("-inf"), device=dev, dtype=dt)
    tri_id = torch.full((n_pix,), -1, device=dev, dtype=torch.int64)
    bary = torch.zeros((n_pix, 3), device=dev, dtype=dt)
    sel = ok.nonzero(as_tuple=True)[0]
    if sel.numel() == 0:
        return Fragments(tri_id.view(B, height, width), bary.view(B, height, width, 3), zbuf.view(B, height, width))
    x, y, z, area = x[sel], y[sel], z[sel], area[sel]
    inv = 1.0 / area
    # barycentric weight of vertex k = edge function of the opposite edge / area, affine in (px, py):
    # w0 = a0 px + b0 py + c0, w1 = a1 px + b1 py + c1; depth is affine too.
    a0 = (y[:, 1] - y[:, 2]) * inv
    b0 = (x[:, 2] - x[:, 1]) * inv
    c0 = (x[:, 1] * y[:, 2] - x[:, 2] * y[:, 1]) * inv
    a1 = (y[:, 2] - y[:, 0]) * inv
    b1 = (x[:, 0] - x[:, 2]) * inv
    c1 = (x[:, 2] * y[:, 0] - x[:, 0] * y[:, 2]) * inv
    coef = torch.stack([a0, b0, c0, a1, b1, c1, z[:, 0], z[:, 1], z[:, 2]], -1)  # (n, 9)
    wi = w[sel].long()
    counts = wi * h[sel].long()
    owner = torch.repeat_interleave(torch.arange(sel.numel(), device=dev), counts)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(owner.numel(), device=dev) - starts[owner]
    wo = wi[owner]
    px = x0[sel][owner] + (local % wo).to(dt)
    py = y0[sel][owner] + torch.div(local, wo, rounding_mode="floor").to(dt)
    c = coef[owner]
    w0 = c[:, 0] * px + c[:, 1] * py + c[:, 2]
    w1 = c[:, 3] * px + c[:, 4] * py + c[:, 5]
    w2 = 1.0 - w0 - w1
    eps = -1e-5
    inside = (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
    k = inside.nonzero(as_tuple=True)[0]
    if k.numel():
        w0, w1, w2, c = w0[k], w1[k], w2[k], c[k]
        depth = w0 * c[:, 6] + w1 * c[:, 7] + w2 * c[:, 8]
        g = sel[owner[k]]  # global (frame, face) index
        fid = g % F_
        pix = (torch.div(g, F_, rounding_mode="floor") * height + py[k].long()) * width + px[k].long()
        zbuf.scatter_reduce_(0, pix, depth, reduce="amax", include_self=True)
        win = depth >= zbuf[pix]
        pix, fid = pix[win], fid[win]
        bc = torch.stack([w0[win], w1[win], w2[win]], -1)
        tri_id.scatter_reduce_(0, pix, fid, reduce="amax", include_self=True)
        keep = fid == tri_id[pix]
        bary[pix[keep]] = bc[keep].clamp(0, 1)
    return Fragments(tri_id.view(B, height, width), bary.view(B, height, width, 3), zbuf.view(B, height, width))


def _use_c(verts: torch.Tensor, backend: str | None) -> bool:
    import os

    choice = backend if backend is not None else os.environ.get("AU_RASTER_BACKEND", "").strip().lower() or None
    if choice not in (None, "c", "torch"):
        raise ValueError(f"rasteriser backend {choice!r}: use 'c' or 'torch' (argument or $AU_RASTER_BACKEND)")
    if choice == "torch":
        return False
    fits = verts.device.type == "cpu" and verts.dtype == torch.float32
    if choice == "c" and not fits:
        raise ValueError("the C rasteriser takes float32 CPU vertices")
    if not fits:
        return False
    from au_lib.data.synth.raster_cpu import kernel

    if choice == "c" and not kernel.available():
        raise RuntimeError(f"rasteriser backend 'c' requested but not available: {kernel.error}")
    return kernel.available()


def interpolate(attr: torch.Tensor, faces: torch.Tensor, frags: Fragments, background: float = 0.0) -> torch.Tensor:
    """Interpolate per-vertex ``attr`` (B, V, C) to pixels -> (B, C, H, W); background pixels get ``background``.

    Uses the C kernel under the same rule as :func:`rasterize` (both paths give the same values)."""
    if _use_c(attr, None) and not attr.requires_grad:
        from au_lib.data.synth.raster_cpu import interpolate_c

        return interpolate_c(attr, faces, frags.tri, frags.bary, background)
    B, H, W = frags.tri.shape
    C = attr.shape[-1]
    V = attr.shape[1]
    out = torch.full((B * H * W, C), background, dtype=attr.dtype, device=attr.device)
    flat = frags.tri.reshape(-1)
    idx = (flat >= 0).nonzero(as_tuple=True)[0]
    b_idx = torch.div(idx, H * W, rounding_mode="floor")
    vid = faces[flat[idx]] + (b_idx * V)[:, None]  # (N, 3) rows of attr.reshape(B * V, C)
    table = attr.reshape(B * V, C)
    bc = frags.bary.reshape(-1, 3)[idx]
    vals = (table.index_select(0, vid[:, 0]) * bc[:, 0:1] + table.index_select(0, vid[:, 1]) * bc[:, 1:2]
            + table.index_select(0, vid[:, 2]) * bc[:, 2:3])
    out.index_copy_(0, idx, vals)
    return out.view(B, H, W, C).permute(0, 3, 1, 2)

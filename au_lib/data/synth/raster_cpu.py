"""SynthAU's rasteriser as a C kernel (``csrc/raster.c``), built on first use (see :mod:`au_lib.cext`).

The PyTorch rasteriser (:func:`.raster.rasterize`) enumerates every pixel of every triangle's box as
tensors; at the ``cpu`` size (64 px) that is a dozen gathers per fragment and most of a frame's
rendering time. The kernel does the same arithmetic in a loop per frame (frames split over torch's
OpenMP threads) and gives the same fragments; :func:`.raster.rasterize` uses it for float32 CPU
tensors when it builds, and the PyTorch path otherwise (``AU_RASTER_BACKEND=torch`` forces that).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from au_lib.cext import CKernel

ABI_VERSION = 2


def _declare(lib: ctypes.CDLL) -> None:
    lib.raster_abi_version.restype = ctypes.c_int
    if lib.raster_abi_version() != ABI_VERSION:
        raise RuntimeError(f"raster ABI version {lib.raster_abi_version()} != expected {ABI_VERSION}")
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.raster_f32.argtypes = [p, p, i64, i64, i64, i64, i64, p, p, p]
    lib.raster_f32.restype = None
    lib.interp_f32.argtypes = [p, p, p, p, i64, i64, i64, i64, i64, p]
    lib.interp_f32.restype = None


kernel = CKernel("synth_raster", ("raster.c",), Path(__file__).resolve().parent / "csrc", _declare,
                 "au_lib.data.synth: the C rasteriser", flags=("-ffp-contract=off",))


def rasterize_c(verts: torch.Tensor, faces: torch.Tensor, height: int, width: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tri (B, H, W) int64, bary (B, H, W, 3) float32, zbuf (B, H, W) float32) of float32 CPU ``verts``
    (B, V, 3) with int64 ``faces`` (F, 3); see :func:`.raster.rasterize` for the conventions."""
    if not kernel.available():
        raise RuntimeError(f"the C rasteriser is not available: {kernel.error}")
    v = verts.detach().to(torch.float32).contiguous()
    f = faces.to(torch.int64).contiguous()
    B, V, F = v.shape[0], v.shape[1], f.shape[0]
    tri = torch.full((B, height, width), -1, dtype=torch.int64)
    bary = torch.zeros((B, height, width, 3), dtype=torch.float32)
    zbuf = torch.full((B, height, width), float("-inf"), dtype=torch.float32)
    if B and F:
        kernel.lib.raster_f32(v.data_ptr(), f.data_ptr(), B, V, F, height, width, tri.data_ptr(), bary.data_ptr(),
                              zbuf.data_ptr())
    return tri, bary, zbuf


def interpolate_c(attr: torch.Tensor, faces: torch.Tensor, tri: torch.Tensor, bary: torch.Tensor,
                  background: float = 0.0) -> torch.Tensor:
    """Per-vertex float32 ``attr`` (B, V, C) interpolated to pixels -> (B, C, H, W); see :func:`.raster.interpolate`."""
    if not kernel.available():
        raise RuntimeError(f"the C rasteriser is not available: {kernel.error}")
    a = attr.detach().to(torch.float32).contiguous()
    f = faces.to(torch.int64).contiguous()
    t, w = tri.contiguous(), bary.to(torch.float32).contiguous()
    B, V, C = a.shape
    H, W = t.shape[1:]
    out = torch.full((B, C, H, W), float(background), dtype=torch.float32)
    if out.numel():
        kernel.lib.interp_f32(a.data_ptr(), f.data_ptr(), t.data_ptr(), w.data_ptr(), B, V, C, H, W, out.data_ptr())
    return out

"""The fused CPU kernel of the displacement warp: built on first use, called through ctypes.

Why: on CPU the PyTorch implementation of :mod:`au_lib.ops.warp` makes a dozen passes over
memory (gathers, lerps, scatters, one temporary each) and ran 1.6x to 3.5x slower than
``grid_sample``, which is one vectorised C++ loop. ``csrc/warp_cpu.c`` is the same operator and
the same hand-written backward as one loop per pass, written so that GCC vectorises it.

How it is built: :class:`au_lib.cext.CKernel` compiles ``csrc/warp_cpu.c`` on the first call with
the system C compiler (``-O3 -march=native``) into a cache folder, keyed by a hash of sources, flags,
compiler and CPU, written atomically. It takes about a second. Where no compiler works,
:func:`available` returns False once with a warning and :func:`au_lib.ops.warp.warp` uses the
PyTorch path. ``AU_WARP_BACKEND=torch`` skips the kernel altogether.

Threads: the kernel is built with ``-fopenmp`` and linked against ``libgomp.so.1``; the dynamic
loader hands it the libgomp that torch has already loaded (same soname), so the kernel runs in
torch's own OpenMP pool, follows ``torch.set_num_threads`` and does not compete with it. (A Python
thread pool was tried first: torch's OpenMP workers, still spinning after the previous op, took
the cores from it and the scatter did not scale.) Work is split by (item, row) for the forward and
the displacement gradient, and by item, or by (item, channel) when there are fewer items than
threads, for the source gradient, a scatter that one thread per plane keeps race-free. ctypes
releases the GIL for the call.

Public: :func:`available`, :func:`uses_openmp`, :func:`warp_forward`, :func:`warp_backward`,
:func:`library_path`, :func:`build_error`.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor

from au_lib.cext import CKernel

__all__ = ["available", "uses_openmp", "warp_forward", "warp_backward", "library_path", "build_error"]

CSRC = Path(__file__).resolve().parent / "csrc"
ABI_VERSION = 2


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.warp_cpu_abi_version.restype = ctypes.c_int
    if lib.warp_cpu_abi_version() != ABI_VERSION:
        raise RuntimeError(f"ABI version {lib.warp_cpu_abi_version()} != expected {ABI_VERSION}")
    lib.warp_cpu_openmp.restype = ctypes.c_int
    for suf in ("f32", "f64"):
        f = getattr(lib, f"warp_fwd_{suf}")
        f.argtypes = [p, p, p, i64, i64, i64, i64, i32]
        f.restype = None
        b = getattr(lib, f"warp_bwd_{suf}")
        b.argtypes = [p, p, p, p, p, i64, i64, i64, i64, i32]
        b.restype = None


_kernel = CKernel("warp_cpu", ("warp_cpu.c", "warp_cpu_impl.h"), CSRC, _declare,
                  "au_lib.ops.warp: the fused CPU kernel")


def available() -> bool:
    """True when the compiled kernel can be used (builds it on the first call; warns once if not)."""
    return _kernel.available()


def library_path() -> Path | None:
    """Path of the loaded shared library (None before a successful :func:`available`)."""
    return _kernel.path


def build_error() -> str | None:
    """Why the kernel could not be built (None if it was, or was not tried)."""
    return _kernel.error


def _reset_for_tests() -> None:
    _kernel.reset()


def _check(source: Tensor, displacement: Tensor) -> tuple[int, int, int, int, str]:
    if source.device.type != "cpu" or displacement.device.type != "cpu":
        raise ValueError("warp_cpu: tensors must be on the CPU")
    if source.dtype not in (torch.float32, torch.float64) or displacement.dtype != source.dtype:
        raise TypeError(f"warp_cpu: source and displacement must both be float32 or both float64, "
                        f"got {source.dtype} and {displacement.dtype}")
    if not (source.is_contiguous() and displacement.is_contiguous()):
        raise ValueError("warp_cpu: tensors must be contiguous (the caller makes them so)")
    N, C, H, W = source.shape
    if H * W >= 2**31:
        raise ValueError(f"warp_cpu: image of {H} x {W} pixels is too large for 32-bit indices")
    return N, C, H, W, "f32" if source.dtype == torch.float32 else "f64"


def uses_openmp() -> bool:
    """Whether the loaded kernel splits work over threads (built with OpenMP)."""
    return available() and bool(_kernel.lib.warp_cpu_openmp())


def warp_forward(source: Tensor, displacement: Tensor, padding_mode: str) -> Tensor:
    """``S(x - dx, y - dy)``: source N x C x H x W, displacement N x 2 x H x W (pixels), both
    contiguous, same dtype (float32 or float64). Returns a new N x C x H x W tensor."""
    if not available():
        raise RuntimeError(f"warp_cpu: kernel not available: {_kernel.error}")
    N, C, H, W, suf = _check(source, displacement)
    out = torch.empty_like(source)
    if out.numel():
        getattr(_kernel.lib, f"warp_fwd_{suf}")(source.data_ptr(), displacement.data_ptr(), out.data_ptr(),
                                         N, C, H, W, int(padding_mode == "border"))
    return out


def warp_backward(source: Tensor, displacement: Tensor, grad_out: Tensor, padding_mode: str,
                  need_source: bool, need_disp: bool) -> tuple[Tensor | None, Tensor | None]:
    """Hand-written gradients ``(dL/dsource, dL/ddisplacement)`` (None where not needed).

    Same shapes and dtype as the inputs; ``grad_out`` N x C x H x W is made contiguous here.
    """
    if not available():
        raise RuntimeError(f"warp_cpu: kernel not available: {_kernel.error}")
    N, C, H, W, suf = _check(source, displacement)
    g = grad_out.to(source.dtype).contiguous()
    gs = torch.zeros_like(source) if need_source else None
    gd = torch.empty_like(displacement) if need_disp else None
    if source.numel() and (need_source or need_disp):
        getattr(_kernel.lib, f"warp_bwd_{suf}")(source.data_ptr(), displacement.data_ptr(), g.data_ptr(),
                                         gs.data_ptr() if gs is not None else None,
                                         gd.data_ptr() if gd is not None else None,
                                         N, C, H, W, int(padding_mode == "border"))
    elif gd is not None:
        gd.zero_()
    return gs, gd

"""The fused CPU kernel of the displacement warp: built on first use, called through ctypes.

Why: on CPU the PyTorch implementation of :mod:`au_lib.ops.warp` makes a dozen passes over
memory (gathers, lerps, scatters, one temporary each) and ran 1.6x to 3.5x slower than
``grid_sample``, which is one vectorised C++ loop. ``csrc/warp_cpu.c`` is the same operator and
the same hand-written backward as one loop per pass, written so that GCC vectorises it.

How it is built: the first call compiles ``csrc/warp_cpu.c`` with the system C compiler (``$CC``,
else ``cc`` / ``gcc``; ``-O3 -march=native``) into a cache folder (``$AU_EXT_DIR``, else
``<cache>/ext``, :func:`au_lib.cache.cache_root`); the file name carries a hash of the
sources, flags, compiler version and CPU flags, so a changed source or machine builds anew, and
the build is written atomically (concurrent first calls are safe). It takes about a second. Where
no compiler works, :func:`available` returns False once with a warning and :func:`au_lib.ops.warp.warp`
uses the PyTorch path. ``AU_WARP_BACKEND=torch`` skips the kernel altogether.

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
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["available", "uses_openmp", "warp_forward", "warp_backward", "library_path", "build_error"]

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = ("warp_cpu.c", "warp_cpu_impl.h")
ABI_VERSION = 2
# -fno-trapping-math lets GCC vectorise floor(); no -ffast-math: NaN and IEEE rounding are kept.
FLAGS = ["-O3", "-std=gnu11", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd"]
# Tried in this order until one builds: OpenMP + native ISA, OpenMP, neither (single-threaded).
VARIANTS = (["-fopenmp", "-march=native"], ["-fopenmp"], [])

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_lib_path: Path | None = None
_error: str | None = None
_tried = False


def _cache_dir() -> Path:
    if os.environ.get("AU_EXT_DIR"):
        return Path(os.environ["AU_EXT_DIR"]).expanduser()
    from au_lib.cache import cache_dir

    return cache_dir("ext")


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc:
        return cc
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _build_key(cc: str, flags: list[str]) -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((CSRC / name).read_bytes())
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = "unknown"
    for part in (" ".join(flags), version, platform.machine(), _cpu_flags(), str(ABI_VERSION)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _compile(cc: str, flags: list[str], out: Path) -> None:
    """Compile into a temporary file beside ``out``, then rename (atomic on one file system)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.stem + ".", suffix=".so.tmp", dir=out.parent)
    os.close(fd)
    try:
        cmd = [cc, *flags, "-o", tmp, str(CSRC / "warp_cpu.c"), "-lm"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {r.returncode}):\n{r.stderr.strip()[:2000]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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


def _load() -> ctypes.CDLL:
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set $CC, or install gcc)")
    errors = []
    for extra in VARIANTS:
        flags = FLAGS + extra
        path = _cache_dir() / f"warp_cpu-{_build_key(cc, flags)}.so"
        try:
            if not path.exists():
                _compile(cc, flags, path)
            lib = ctypes.CDLL(str(path))
            _declare(lib)
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            errors.append(str(e))
            continue
        global _lib_path
        _lib_path = path
        return lib
    raise RuntimeError("\n".join(errors))


def available() -> bool:
    """True when the compiled kernel can be used (builds it on the first call; warns once if not)."""
    global _lib, _error, _tried
    if _tried:
        return _lib is not None
    with _lock:
        if not _tried:
            try:
                _lib = _load()
            except Exception as e:  # noqa: BLE001 -- any failure means: use the PyTorch path
                _error = f"{type(e).__name__}: {e}"
                warnings.warn("au_lib.ops.warp: the fused CPU kernel could not be built, using the "
                              f"(slower) PyTorch path. {_error}", RuntimeWarning, stacklevel=3)
            _tried = True
    return _lib is not None


def library_path() -> Path | None:
    """Path of the loaded shared library (None before a successful :func:`available`)."""
    return _lib_path


def build_error() -> str | None:
    """Why the kernel could not be built (None if it was, or was not tried)."""
    return _error


def _reset_for_tests() -> None:
    global _lib, _lib_path, _error, _tried
    _lib = _lib_path = _error = None
    _tried = False


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
    return available() and bool(_lib.warp_cpu_openmp())


def warp_forward(source: Tensor, displacement: Tensor, padding_mode: str) -> Tensor:
    """``S(x - dx, y - dy)``: source N x C x H x W, displacement N x 2 x H x W (pixels), both
    contiguous, same dtype (float32 or float64). Returns a new N x C x H x W tensor."""
    if not available():
        raise RuntimeError(f"warp_cpu: kernel not available: {_error}")
    N, C, H, W, suf = _check(source, displacement)
    out = torch.empty_like(source)
    if out.numel():
        getattr(_lib, f"warp_fwd_{suf}")(source.data_ptr(), displacement.data_ptr(), out.data_ptr(),
                                         N, C, H, W, int(padding_mode == "border"))
    return out


def warp_backward(source: Tensor, displacement: Tensor, grad_out: Tensor, padding_mode: str,
                  need_source: bool, need_disp: bool) -> tuple[Tensor | None, Tensor | None]:
    """Hand-written gradients ``(dL/dsource, dL/ddisplacement)`` (None where not needed).

    Same shapes and dtype as the inputs; ``grad_out`` N x C x H x W is made contiguous here.
    """
    if not available():
        raise RuntimeError(f"warp_cpu: kernel not available: {_error}")
    N, C, H, W, suf = _check(source, displacement)
    g = grad_out.to(source.dtype).contiguous()
    gs = torch.zeros_like(source) if need_source else None
    gd = torch.empty_like(displacement) if need_disp else None
    if source.numel() and (need_source or need_disp):
        getattr(_lib, f"warp_bwd_{suf}")(source.data_ptr(), displacement.data_ptr(), g.data_ptr(),
                                         gs.data_ptr() if gs is not None else None,
                                         gd.data_ptr() if gd is not None else None,
                                         N, C, H, W, int(padding_mode == "border"))
    elif gd is not None:
        gd.zero_()
    return gs, gd

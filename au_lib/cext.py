"""Small C kernels built on first use with the system compiler and loaded through ctypes.

Used by the fused CPU warp (:mod:`au_lib.ops.warp_cpu`) and SynthAU's rasteriser
(:mod:`au_lib.data.synth.raster_cpu`). A :class:`CKernel` compiles its sources with ``$CC`` (else
``cc`` / ``gcc`` / ``clang``) into a cache folder (``$AU_EXT_DIR``, else ``<cache>/ext`` of
:mod:`au_lib.cache`); the file name carries a hash of the sources, flags, compiler version and
CPU flags, so a changed source or machine builds anew, and the build is written atomically (a
temporary file renamed), so concurrent first calls are safe. Flag variants are tried in order (OpenMP
with the native ISA, OpenMP, neither). Where nothing builds, :meth:`CKernel.available` returns False
once, with a warning that says why, and the caller uses its PyTorch path.

Threads: kernels built with ``-fopenmp`` link ``libgomp.so.1``; the dynamic loader hands them the
libgomp that torch has already loaded (same soname), so they run in torch's own OpenMP pool and follow
``torch.set_num_threads``. ctypes releases the GIL for each call.
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
from typing import Callable

# -fno-trapping-math lets GCC vectorise floor(); no -ffast-math: NaN and IEEE rounding are kept.
# A kernel that must round exactly as PyTorch's op-by-op arithmetic adds -ffp-contract=off (no FMA).
BASE_FLAGS = ["-O3", "-std=gnu11", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd"]
VARIANTS = (["-fopenmp", "-march=native"], ["-fopenmp"], [])


def cache_dir() -> Path:
    """Folder of the built libraries: ``$AU_EXT_DIR``, else ``<cache>/ext`` (:func:`au_lib.cache.cache_root`)."""
    if os.environ.get("AU_EXT_DIR"):
        return Path(os.environ["AU_EXT_DIR"]).expanduser()
    from au_lib.cache import cache_dir as root_dir

    return root_dir("ext")


def compiler() -> str | None:
    """``$CC``, else the first of ``cc``, ``gcc``, ``clang`` on the PATH (None if none)."""
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


class CKernel:
    """A C library compiled on first use.

    Args:
        name: file-name stem of the built library.
        sources: files in ``folder``; the first is compiled, all are hashed into the build key.
        folder: where the sources are.
        declare: called with the loaded ``ctypes.CDLL`` to set argtypes and check its ABI version;
            raises ``RuntimeError`` if the library does not fit.
        what: how the warning names the kernel, e.g. ``"au_lib.ops.warp: the fused CPU kernel"``.
        flags: extra compiler flags for every variant.
    """

    def __init__(self, name: str, sources: tuple[str, ...], folder: Path, declare: Callable[[ctypes.CDLL], None],
                 what: str, flags: tuple[str, ...] = ()):
        self.name, self.sources, self.folder, self.declare, self.what = name, sources, Path(folder), declare, what
        self.flags = list(flags)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget the loaded library (tests use it to rebuild under other settings)."""
        self.lib: ctypes.CDLL | None = None
        self.path: Path | None = None
        self.error: str | None = None
        self._tried = False

    def _key(self, cc: str, flags: list[str]) -> str:
        h = hashlib.sha256()
        for name in self.sources:
            h.update((self.folder / name).read_bytes())
        try:
            version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            version = "unknown"
        for part in (" ".join(flags), version, platform.machine(), _cpu_flags()):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()[:16]

    def _compile(self, cc: str, flags: list[str], out: Path) -> None:
        """Compile into a temporary file beside ``out``, then rename (atomic on one file system)."""
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=out.stem + ".", suffix=".so.tmp", dir=out.parent)
        os.close(fd)
        try:
            cmd = [cc, *flags, "-o", tmp, str(self.folder / self.sources[0]), "-lm"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {r.returncode}):\n{r.stderr.strip()[:2000]}")
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _load(self) -> ctypes.CDLL:
        cc = compiler()
        if cc is None:
            raise RuntimeError("no C compiler found (set $CC, or install gcc)")
        errors = []
        for extra in VARIANTS:
            flags = BASE_FLAGS + self.flags + extra
            path = cache_dir() / f"{self.name}-{self._key(cc, flags)}.so"
            try:
                if not path.exists():
                    self._compile(cc, flags, path)
                lib = ctypes.CDLL(str(path))
                self.declare(lib)
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                errors.append(str(e))
                continue
            self.path = path
            return lib
        raise RuntimeError("\n".join(errors))

    def available(self) -> bool:
        """True when the library can be used (builds it on the first call; warns once if not)."""
        if self._tried:
            return self.lib is not None
        with self._lock:
            if not self._tried:
                try:
                    self.lib = self._load()
                except Exception as e:  # noqa: BLE001 -- any failure means: use the PyTorch path
                    self.error = f"{type(e).__name__}: {e}"
                    warnings.warn(f"{self.what} could not be built, using the (slower) PyTorch path. {self.error}",
                                  RuntimeWarning, stacklevel=3)
                self._tried = True
        return self.lib is not None

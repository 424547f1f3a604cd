"""The on-disk cache of generated SynthAU data: sharded compressed arrays, checksummed, atomic.

Layout: ``<root>/<key>/<view>/manifest.json`` and one shard per subject, ``<subject>.npz``. ``key``
hashes the generator version, the seed and every parameter that changes the data, so a change of any
of them generates into a new folder and an unchanged configuration is reused. Shards are written to
a temporary file and renamed (atomic); the manifest, rewritten after every shard (so an interrupted
run resumes), records each shard's sha256 and size. On open every shard is checked against the
manifest; a missing, truncated or corrupt shard is regenerated, never read as data.

Shards are zip files written with fixed timestamps (deterministic bytes), holding ``.npy`` arrays:
``rgb`` (N, 3, H, W) uint8; ``depth``, ``thermal`` (N, H, W) uint16 (value * 65535); ``au`` (N, 20)
float32 FACS intensity over ``PYFEAT_MESH_AUS``; ``pose`` (N, 6) float32; ``sequence``, ``frame`` (N,) int32.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from au_lib.provenance import atomic_write_bytes

ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class CorruptShardError(RuntimeError):
    """A cache shard does not match its manifest entry (missing, truncated or altered)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def config_hash(payload: dict) -> str:
    """12 hex digits of the sha256 of ``payload`` as canonical JSON."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)


def write_shard(path: Path, arrays: dict[str, np.ndarray]) -> tuple[str, int]:
    """Write ``arrays`` as a deterministic compressed ``.npz`` atomically; return (sha256, bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(name + ".npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            zf.writestr(info, arr.getvalue(), compresslevel=6)
    data = buf.getvalue()
    _atomic_write(path, data)
    return hashlib.sha256(data).hexdigest(), len(data)


def read_shard(path: Path, sha256: str | None = None, size: int | None = None) -> dict[str, np.ndarray]:
    """Read a shard, checking size and checksum first.

    Raises:
        CorruptShardError: naming the file, if it is missing, has the wrong size or checksum, or
        cannot be decoded.
    """
    if not path.is_file():
        raise CorruptShardError(f"cache shard {path} is missing")
    if size is not None and path.stat().st_size != size:
        raise CorruptShardError(f"cache shard {path} has {path.stat().st_size} bytes, manifest says {size} "
                                f"(truncated or altered)")
    if sha256 is not None and sha256_file(path) != sha256:
        raise CorruptShardError(f"cache shard {path} fails its sha256 check (corrupt)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001
        raise CorruptShardError(f"cache shard {path} cannot be decoded: {exc}") from exc


def write_json(path: Path, obj: dict) -> None:
    _atomic_write(path, (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def remove_stale(root: Path, generator: str) -> list[Path]:
    """Delete the view folders under ``root`` that an older (or other) generator version wrote.

    A folder counts as a SynthAU view folder when it holds a ``manifest.json`` with a ``key``; others
    are left alone. Returns the removed folders.
    """
    import shutil

    removed = []
    if not Path(root).is_dir():
        return removed
    for folder in sorted(Path(root).iterdir()):
        man = read_json(folder / "manifest.json") if folder.is_dir() else None
        key = (man or {}).get("key")
        if isinstance(key, dict) and key.get("generator") != generator:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed

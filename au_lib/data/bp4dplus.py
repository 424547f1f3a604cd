"""BP4D+ (MMSE; Zhang et al., 2016): RGB + depth + thermal, paired by frame, aligned once on RGB.

Documented layout under ``root`` (BP4D+ user guide; rPPG-Toolbox's loader docstring)::

    root/2D+3D/F001.zip                      holds F001/T1/0001.jpg ... (and the 3D models); an
                                             extracted root/2D+3D/F001/T1/*.jpg works too
    root/AUCoding/AU_OCC/F001_T1.csv         header 0 + 34 AU numbers; rows frame, 1/0/9
    root/AUCoding/AU_INT/AU06/F001_T1_AU06.csv
    root/Thermal/F001/T1.mv                  thermal video (proprietary container; see below)

Only tasks **T1, T6, T7, T8** are AU-coded; the loader prepares those.

**How the modalities are paired and aligned.** The face is detected and aligned once, on the RGB
frame; the same similarity transform (RGB pixels -> crop) is applied to every other modality after
mapping it into RGB pixels, so the crops of all modalities overlap pixel for pixel:

- *Time*: modalities are paired by frame number (``frame + frame_offset`` for thermal).
- *Depth*: :class:`ObjDepthReader` reads a per-frame textured 3D model (Wavefront ``.obj`` with ``v``
  and ``vt`` lines) and splats each vertex's height into the RGB frame at its **texture coordinate**
  (the texture *is* the RGB frame, so the mapping is exact by construction, no calibration needed);
  :class:`DepthImageReader` reads depth maps already rendered in RGB pixels (16-bit PNG in mm, or
  ``.npy``). VRML (``.wrl``) models must be converted to OBJ first, or read with your own reader.
- *Thermal*: the ``.mv`` container has no open decoder; export frames (``.npy`` in degrees Celsius or
  16-bit PNG with a ``scale``/``offset``) to ``root/Thermal/F001/T1/<frame>.npy``. Thermal and RGB
  cameras differ, so spatial registration needs a 3x3 homography per subject (thermal pixels -> RGB
  pixels) from a calibration file ``{"F001": [[...],[...],[...]], "*": ...}``; without one the
  identity is used and ``prepare.json`` records ``"thermal_registration": "identity (unverified)"``.

Readers are pluggable: any object with ``read(frame)``, ``to_rgb(subject)``, ``normalise(crop)`` and
``describe()`` works (see :class:`ModalityReader` and ``scan(readers=...)``). Tested on fixtures
only; no BP4D+ copy was available while writing this module.

Normalisation (recorded in ``prepare.json``): depth ``0.5 + (h - median_h) / (2 * depth_range_mm)``
with ``h`` the height toward the camera in mm and the median over the crop, clipped to [0, 1],
0 = no data; thermal ``(T - t_min) / (t_max - t_min)`` with T in degrees C (20-40 by default).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from au_lib.facs import BP4D_AUS, BP4D_INTENSITY_AUS, BP4DPLUS_AUS

from .bp4d import check_root, find_dir
from .bp4d import frames_issues, label_files
from .folds import Fold, folds_from_parts, split_subjects
from .labels import check_limit, read_bp4d_intensity, read_occurrence_csv
from .prepare import SequenceJob
from .sources import ImageFolderSource, ZipImageSource

AUS: tuple[int, ...] = BP4D_AUS  # evaluated on the BP4D 12 for detection
ALL_AUS: tuple[int, ...] = BP4DPLUS_AUS  # the 34 AU_OCC columns
INTENSITY_AUS: tuple[int, ...] = BP4D_INTENSITY_AUS
CODED_TASKS: tuple[str, ...] = ("T1", "T6", "T7", "T8")
NAME = "bp4dplus"
ENV_ROOT = "AU_BP4DPLUS_ROOT"


class ModalityReader(Protocol):
    """What :func:`au_lib.data.prepare.process_sequence` needs from a depth/thermal reader."""

    def read(self, frame: int) -> np.ndarray | None: ...  # H x W float32 in the reader's pixels
    def to_rgb(self, subject: str) -> np.ndarray: ...  # 3x3: reader pixels -> RGB pixels
    def normalise(self, crop: np.ndarray) -> np.ndarray: ...  # -> [0, 1], NaN = no data
    def describe(self) -> str: ...  # the normalisation, recorded in prepare.json


def load_map(path: Path, what: str) -> np.ndarray:
    """A single-channel H x W float32 map from ``.npy`` or a grey image; ValueError naming the file
    when it is empty, truncated, not numeric or not 2-D (a wrong export must fail its frame, not the run)."""
    from PIL import Image

    try:
        if path.suffix == ".npy":
            raw = np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as im:
                raw = np.asarray(im)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: unreadable {what} ({type(exc).__name__}: {exc})") from None
    if raw.ndim == 3 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    if raw.ndim != 2 or raw.size == 0 or raw.dtype.kind not in "uif":
        raise ValueError(f"{path}: {what} must be a non-empty H x W numeric array, got shape "
                         f"{raw.shape} dtype {raw.dtype}")
    return raw.astype(np.float32)


@dataclass
class DepthNormaliser:
    """Depth -> [0, 1]: ``0.5 + (h - median(h)) / (2 * range_mm)``, h = height toward the camera (mm)."""

    range_mm: float = 100.0

    def normalise(self, crop: np.ndarray) -> np.ndarray:
        out = np.full(crop.shape, np.nan, np.float32)
        ok = np.isfinite(crop)
        if ok.any():
            med = float(np.median(crop[ok]))
            out[ok] = np.clip(0.5 + (crop[ok] - med) / (2 * self.range_mm), 0.0, 1.0)
        return out

    def describe(self) -> str:
        return f"0.5 + (h - median_h)/(2*{self.range_mm:g} mm), h = height toward camera, clipped; 0 = no data"


def parse_obj(text: str, name: str = "model.obj") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (V, 3), texture coords (T, 2) and per-vertex texture index (V,) from OBJ text.

    The per-vertex texture index comes from the faces' ``v/vt`` pairs (-1 if a vertex has none).
    """
    v, vt, pairs = [], [], []
    for line_no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "v":
                v.append([float(x) for x in parts[1:4]])
            elif parts[0] == "vt":
                vt.append([float(x) for x in parts[1:3]])
            elif parts[0] == "f":
                for p in parts[1:]:
                    ids = p.split("/")
                    if len(ids) >= 2 and ids[1]:
                        pairs.append((int(ids[0]) - 1, int(ids[1]) - 1))
        except (ValueError, IndexError):
            raise ValueError(f"{name}: line {line_no}: malformed OBJ line {line.strip()!r}") from None
    if not v:
        raise ValueError(f"{name}: no vertices")
    verts = np.asarray(v, np.float64)
    tex = np.asarray(vt, np.float64).reshape(-1, 2)
    if not (np.isfinite(verts).all() and np.isfinite(tex).all()):
        raise ValueError(f"{name}: non-finite vertex or texture coordinate")
    vt_of = np.full(len(verts), -1, np.int64)
    for vi, ti in pairs:
        if not (0 <= vi < len(verts) and 0 <= ti < len(tex)):
            raise ValueError(f"{name}: face refers to vertex {vi + 1} / texture coordinate {ti + 1}, but the "
                             f"model has {len(verts)} vertices and {len(tex)} texture coordinates")
        vt_of[vi] = ti
    if not pairs and len(tex) == len(verts):
        vt_of = np.arange(len(verts))
    return verts, tex, vt_of


def splat_depth(verts: np.ndarray, tex: np.ndarray, vt_of: np.ndarray, shape: tuple[int, int],
                front: str = "max") -> np.ndarray:
    """Height map (H, W) float32 in RGB pixels from a textured model: each vertex's height at its
    texture coordinate, interpolated linearly between vertices (Delaunay, inside their convex hull).

    ``u, v`` in [0, 1] map to pixel ``(u * W - 0.5, (1 - v) * H - 0.5)``; where several vertices fall
    in one pixel the front-most wins (``front="max"``: larger z is nearer the camera). Pixels outside
    the model are NaN.
    """
    from scipy.interpolate import griddata

    h, w = shape
    if h <= 0 or w <= 0:
        raise ValueError(f"RGB frame shape must be positive, got {shape}")
    ok = vt_of >= 0
    uv = tex[vt_of[ok]]
    z = verts[ok, 2] if front == "max" else -verts[ok, 2]
    x = np.round(uv[:, 0] * w - 0.5).astype(int)
    y = np.round((1 - uv[:, 1]) * h - 0.5).astype(int)
    keep = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    x, y, z = x[keep], y[keep], z[keep]
    buf = np.full(h * w, -np.inf)
    np.maximum.at(buf, y * w + x, z)  # z-buffer: front-most vertex per pixel
    hit = np.flatnonzero(np.isfinite(buf))
    if len(hit) < 3:
        return np.full((h, w), np.nan, np.float32)
    py, px = np.divmod(hit, w)
    gy, gx = np.mgrid[0:h, 0:w]
    dense = griddata(np.c_[px, py], buf[hit], (gx, gy), method="linear")
    return dense.astype(np.float32)


@dataclass
class ObjDepthReader(DepthNormaliser):
    """Depth from per-frame textured OBJ models (folder or zip member ``<prefix><frame:04d>.obj``)."""

    folder: str = ""
    archive: str | None = None
    prefix: str = ""
    shape: tuple[int, int] = (0, 0)  # RGB frame (H, W), set by the scan
    front: str = "max"

    def read(self, frame: int) -> np.ndarray | None:
        name = f"{self.prefix}{frame:04d}.obj"
        where = f"{self.archive}:{name}" if self.archive else str(Path(self.folder) / name)
        try:
            if self.archive:
                with zipfile.ZipFile(self.archive) as zf:
                    if name not in zf.namelist():
                        return None
                    data = zf.read(name)
            else:
                p = Path(self.folder) / name
                if not p.is_file():
                    return None
                data = p.read_bytes()
            text = data.decode("utf-8")
        except (zipfile.BadZipFile, EOFError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where}: unreadable OBJ model ({type(exc).__name__}: {exc})") from None
        verts, tex, vt_of = parse_obj(text, where)
        return splat_depth(verts, tex, vt_of, self.shape, self.front)

    def to_rgb(self, subject: str) -> np.ndarray:
        return np.eye(3)


@dataclass
class DepthImageReader(DepthNormaliser):
    """Depth maps already in RGB pixels: ``<folder>/<frame:04d>.png`` (uint16 mm, 0 = hole) or ``.npy``."""

    folder: str = ""

    def read(self, frame: int) -> np.ndarray | None:
        for p in (Path(self.folder) / f"{frame:04d}.npy", Path(self.folder) / f"{frame:04d}.png"):
            if p.is_file():
                d = load_map(p, "depth map")
                d[d <= 0] = np.nan
                return -d  # distance -> height toward the camera
        return None

    def to_rgb(self, subject: str) -> np.ndarray:
        return np.eye(3)


@dataclass
class ThermalReader:
    """Exported thermal frames ``<folder>/<frame + offset:04d>.npy`` (deg C) or ``.png`` (raw*scale+offset)."""

    folder: str = ""
    frame_offset: int = 0
    scale: float = 1.0
    offset: float = 0.0
    t_min: float = 20.0
    t_max: float = 40.0
    homographies: dict = field(default_factory=dict)

    def read(self, frame: int) -> np.ndarray | None:
        k = frame + self.frame_offset
        for p in (Path(self.folder) / f"{k:04d}.npy", Path(self.folder) / f"{k:04d}.png"):
            if p.is_file():
                t = load_map(p, "thermal frame")
                return t if p.suffix == ".npy" else t * self.scale + self.offset
        return None

    def to_rgb(self, subject: str) -> np.ndarray:
        m = self.homographies.get(subject, self.homographies.get("*"))
        return np.eye(3) if m is None else np.asarray(m, np.float64)

    def normalise(self, crop: np.ndarray) -> np.ndarray:
        return np.clip((crop - self.t_min) / (self.t_max - self.t_min), 0.0, 1.0)

    def describe(self) -> str:
        return f"(T - {self.t_min:g} C)/({self.t_max:g} - {self.t_min:g} C), clipped; 0 = no data"


def load_calibration(path: str | os.PathLike | None) -> dict:
    """Thermal -> RGB homographies ``{subject or "*": 3x3}`` from a JSON file (empty dict if None)."""
    if path is None:
        return {}
    data = json.loads(Path(path).read_text())
    out = {}
    for k, m in data.items():
        arr = np.asarray(m, np.float64)
        if arr.shape != (3, 3):
            raise ValueError(f"{path}: homography for {k!r} must be 3x3, got shape {arr.shape}")
        out[k] = arr.tolist()
    return out


def rgb_source(root: Path, subject: str, task: str):
    """RGB frames of ``subject``/``task``: an extracted folder or the subject's zip archive."""
    base = find_dir(root, ["2D+3D", "2D"], "2D+3D")
    folder = base / subject / task
    if folder.is_dir():
        return ImageFolderSource.scan(folder), ("folder", str(folder))
    archive = base / f"{subject}.zip"
    if archive.is_file():
        prefix = f"{subject}/{task}/"
        return ZipImageSource.scan(archive, prefix), ("zip", str(archive), prefix)
    raise FileNotFoundError(f"BP4D+ frames for {subject}/{task} not found: expected {folder} or {archive}")


def _frame_shape(source) -> tuple[int, int]:
    for _, img in source.iter_frames(sorted(source.available())[:1]):
        if not isinstance(img, Exception):
            return img.shape[:2]
    return (0, 0)


def scan(root: str | os.PathLike | None = None, *, subjects: Sequence[str] | None = None,
         tasks: Sequence[str] = CODED_TASKS, aus: Sequence[int] = ALL_AUS,
         intensity_aus: Sequence[int] = INTENSITY_AUS, modalities: Sequence[str] = ("rgb",),
         depth: str = "obj", thermal_calibration: str | None = None, thermal_offset: int = 0,
         limit: int | None = None, readers: dict | None = None) -> list[SequenceJob]:
    """One :class:`SequenceJob` per coded (subject, task); ``modalities`` adds depth/thermal readers.

    ``depth``: ``obj`` (per-frame textured models next to the frames) or ``images``
    (``root/Depth/<subject>/<task>/<frame>.png|npy``, already in RGB pixels).
    ``readers``: ``{"depth" | "thermal": factory(root, subject, task) -> ModalityReader}`` replaces
    the built-in reader of that modality (for copies laid out differently).
    """
    limit = check_limit(limit)
    root = check_root(root, ENV_ROOT, NAME)
    bad = [t for t in tasks if t not in CODED_TASKS]
    if bad:
        raise ValueError(f"BP4D+ tasks {bad} are not AU-coded; coded tasks: {', '.join(CODED_TASKS)}")
    unknown_mod = [m for m in modalities if m not in ("rgb", "depth", "thermal")]
    if unknown_mod:
        raise ValueError(f"unknown modalities {unknown_mod}; choose from rgb, depth, thermal")
    occ_dir = find_dir(root, ["AUCoding/AU_OCC", "AU_OCC"], "AU_OCC label")
    int_dir = next((root / c for c in ("AUCoding/AU_INT", "AU_INT") if (root / c).is_dir()), None)
    homographies = load_calibration(thermal_calibration)
    jobs = []
    for path in label_files(occ_dir):
        subject, _, task = path.stem.partition("_")
        if task not in tasks or (subjects is not None and subject not in subjects):
            continue
        occ = read_occurrence_csv(path, aus)
        frames = occ.frames[:limit] if limit else occ.frames
        inten = read_bp4d_intensity(int_dir, subject, task, intensity_aus, frames).values if int_dir else \
            np.full((len(frames), len(intensity_aus)), -1.0, np.float32)
        source, where = rgb_source(root, subject, task)
        mods = {}
        custom = {m: f(root, subject, task) for m, f in (readers or {}).items() if m in modalities}
        if "depth" in modalities and "depth" not in custom:
            if depth == "obj":
                shape = _frame_shape(source)
                if where[0] == "zip":
                    mods["depth"] = ObjDepthReader(archive=where[1], prefix=where[2], shape=shape)
                else:
                    mods["depth"] = ObjDepthReader(folder=where[1], shape=shape)
            elif depth == "images":
                mods["depth"] = DepthImageReader(folder=str(root / "Depth" / subject / task))
            else:
                raise ValueError(f"depth reader must be 'obj' or 'images', got {depth!r}")
        if "thermal" in modalities and "thermal" not in custom:
            mods["thermal"] = ThermalReader(folder=str(root / "Thermal" / subject / task),
                                            frame_offset=thermal_offset, homographies=homographies)
        mods.update(custom)
        issues = [] if limit else frames_issues(subject, task, frames, source.available())
        jobs.append(SequenceJob(subject, task, [int(f) for f in frames], occ.values[: len(frames)], inten,
                                source, mods, issues))
    if not jobs:
        raise FileNotFoundError(f"{occ_dir}: no label files for coded tasks {list(tasks)} "
                                f"and subjects {subjects}")
    return jobs


def normalisation_record(jobs: Sequence[SequenceJob], thermal_calibration: str | None) -> dict:
    """What prepare.json records about the extra modalities."""
    rec = {}
    for j in jobs:
        for name, r in j.modalities.items():
            rec[name] = r.describe()
    if any("thermal" in j.modalities for j in jobs):
        rec["thermal_registration"] = (f"homography from {thermal_calibration}" if thermal_calibration
                                       else "identity (unverified)")
    return rec


def folds(*, root=None, profile=None, subjects: Sequence[str] | None = None, seed: int = 0, **kw) -> list[Fold]:
    """Three subject-exclusive folds. BP4D+ has no community-standard split: the subjects found in
    the prepared index (or ``subjects``) are partitioned deterministically with
    :func:`au_lib.data.folds.split_subjects` (``seed``)."""
    if subjects is None:
        from .prepared import resolve_prepared

        import pandas as pd

        folder = resolve_prepared(NAME, kw.get("prepared"), root)
        subjects = sorted(pd.read_csv(folder / "index.csv", usecols=["subject"], dtype=str)["subject"].unique())
    return folds_from_parts(split_subjects(subjects, 3, seed))


def open_dataset(*, root=None, subjects=None, split=None, modalities=("rgb",), image_size=None,
                 profile=None, prepared=None, fold: int | None = None, aus=None, **kw):
    """Prepared BP4D+ crops (rgb and, if prepared, depth/thermal) as a Dataset of sample dicts.

    ``au`` covers :data:`AUS` (the BP4D 12) unless ``aus`` is given (any of the 34 prepared).
    Defaults: ``$AU_BP4DPLUS_ROOT``, ``$AU_BP4DPLUS_PREPARED``.
    """
    from .prepared import open_prepared

    return open_prepared(NAME, root=root, prepared=prepared, subjects=subjects, split=split, fold=fold,
                         folds_fn=lambda: folds(root=root, prepared=prepared), modalities=modalities,
                         image_size=image_size, profile=profile, aus=aus or AUS, **kw)

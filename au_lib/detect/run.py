"""Run a saved detector on an image, a folder of images or a video: one table row per frame.

Pipeline per frame (streamed, :mod:`au_lib.data.media`): dlib's HOG face detector and 68-point
landmarks (:class:`au_lib.data.align.FaceAligner`), the detector file's own alignment rule
(:meth:`au_lib.detect.file.Detector.crop_matrix`: for SynthAU-trained detectors the eye-line-levelled,
eye-to-mouth-centred crop the training faces were rendered with), then the network on batches of
``batch`` crops. Only the current batch of crops is held (``batch`` x S x S x 3 bytes) besides the
output table, so memory does not grow with the length of a video.

Columns of the table (and of ``au-lib detect``'s CSV; names after OpenFace's ``AUxx_c``):

- ``frame``: 0-based index of the decoded frame (for a folder: the image's position in natural name order);
- ``timestamp``: seconds from the start of the video stream, from the container's presentation
  timestamps (NaN for images);
- ``file``: the image's file name (empty for videos);
- ``face``: 1 if a face was found, else 0 (then every following column is NaN);
- ``confidence``: the face detector's score (dlib HOG; > 0 is a detection, larger is surer);
- ``x``, ``y``, ``w``, ``h``: the face box in source pixels (left, top, width, height);
- ``roll``: in-plane rotation of the eye line in degrees, which the alignment removes;
- ``AUxx_p``: the detector's probability that AU xx is present, in [0, 1];
- ``AUxx_c``: the decision, 1 if ``AUxx_p`` >= the AU's threshold (chosen on validation data when the
  detector was trained), else 0.

A frame without a face gets a row with ``face=0`` and NaN in the other columns: never a silent gap.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from au_lib.data.align import FaceAligner, eye_centres, warp_to_crop
from au_lib.data.media import Frame, open_media

from .file import Detector, load_detector

if TYPE_CHECKING:
    import pandas as pd

CLIP_FRAMES: dict[str, int | None] = {"smoke": 48, "cpu": None, "paper": None}
"""Frames of a clip that the book's demonstration reads per profile (None: all)."""

META_COLUMNS = ("frame", "timestamp", "file", "face", "confidence", "x", "y", "w", "h", "roll")


def au_columns(aus: Iterable[int]) -> list[str]:
    """``AUxx_p`` for every AU, then ``AUxx_c`` (two-digit AU numbers, as OpenFace)."""
    aus = list(aus)
    return [f"AU{a:02d}_p" for a in aus] + [f"AU{a:02d}_c" for a in aus]


def columns(aus: Iterable[int]) -> list[str]:
    """All columns of a detection table, in order."""
    return list(META_COLUMNS) + au_columns(aus)


@dataclass
class FaceCrop:
    """One frame's face: the aligned crop (S, S, 3) uint8, box (x, y, w, h), score, roll (degrees)."""

    crop: np.ndarray
    box: tuple[int, int, int, int]
    score: float
    roll: float


def face_crop(image: np.ndarray, detector: Detector, aligner: FaceAligner) -> FaceCrop | None:
    """Detect the best face of ``image`` (H, W, 3) uint8 and align it by ``detector``'s rule; None if no face."""
    found = aligner.detect(image)
    if not found:
        return None
    (left, top, right, bottom), score = found[0]
    lm = aligner.landmarks(image, (left, top, right, bottom))
    crop = warp_to_crop(image, detector.crop_matrix(lm), detector.image_size)
    (lx, ly), (rx, ry) = eye_centres(lm)
    return FaceCrop(crop, (int(left), int(top), int(right - left), int(bottom - top)), float(score),
                    float(np.degrees(np.arctan2(ry - ly, rx - lx))))


@dataclass
class DetectionRun:
    """What :func:`detect_run` returns: the table, the media's description, and a few kept crops
    (``crops``: frame -> (S, S, 3) uint8, for a contact sheet)."""

    table: "pd.DataFrame"
    source: str
    kind: str
    fps: float
    crops: dict[int, np.ndarray] = field(default_factory=dict)


def _rows(frames: list[Frame], faces: list[FaceCrop | None], detector: Detector) -> list[list]:
    n_au = len(detector.aus)
    idx = [i for i, f in enumerate(faces) if f is not None]
    probs = detector.probabilities(np.stack([faces[i].crop for i in idx])) if idx else np.zeros((0, n_au))
    dec = detector.decisions(probs)
    rows, k = [], 0
    nan_au = [math.nan] * (2 * n_au)
    for fr, fc in zip(frames, faces):
        if fc is None:
            rows.append([fr.index, fr.timestamp, fr.name, 0] + [math.nan] * 6 + nan_au)
            continue
        rows.append([fr.index, fr.timestamp, fr.name, 1, fc.score, *fc.box, fc.roll,
                     *probs[k].tolist(), *dec[k].astype(float).tolist()])
        k += 1
    return rows


def iter_detections(frames: Iterable[Frame], detector: Detector, *, batch: int = 32,
                    aligner: FaceAligner | None = None) -> Iterator[tuple[list, FaceCrop | None]]:
    """Yield ``(row, face)`` per frame in order (row: the values of :func:`columns`), running the
    network on batches of ``batch`` frames (only their crops are kept; each image is dropped once cropped)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    aligner = aligner or FaceAligner(detector.image_size)
    buf_f: list[Frame] = []
    buf_c: list[FaceCrop | None] = []
    for fr in frames:
        buf_f.append(Frame(fr.index, fr.timestamp, np.empty(0, np.uint8), fr.name))  # the image is dropped
        buf_c.append(face_crop(fr.image, detector, aligner))
        if len(buf_c) >= batch:
            yield from zip(_rows(buf_f, buf_c, detector), buf_c)
            buf_f, buf_c = [], []
    if buf_f:
        yield from zip(_rows(buf_f, buf_c, detector), buf_c)


def detect_run(path: str | os.PathLike, detector: Detector | str | os.PathLike, *, batch: int = 32,
               device: str | None = None, progress: bool = True, keep_crops: int = 0,
               aligner: FaceAligner | None = None, max_frames: int | None = None) -> DetectionRun:
    """Detect AUs in every frame of ``path`` (image, folder of images, video); see the module docstring.

    ``detector``: a :class:`~au_lib.detect.file.Detector` or the path of a detector file.
    ``keep_crops``: keep about this many aligned crops, evenly spaced over the frames (for a sheet).
    ``max_frames``: stop after this many frames (None: all).
    """
    import itertools

    import pandas as pd
    from tqdm.auto import tqdm

    media = open_media(path)  # errors name the path before the detector is loaded
    det = detector if isinstance(detector, Detector) else load_detector(detector)
    if device is not None:
        from au_lib.provenance import choose_device

        det.to(choose_device(device))
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    total = min(media.frame_count_hint, max_frames) if max_frames else media.frame_count_hint
    every = max(1, total // keep_crops) if keep_crops else 0
    kept: dict[int, np.ndarray] = {}
    rows = []
    bar = tqdm(total=total or None, desc=f"detect {media.path.name}", unit="frame",
               disable=not progress or bool(os.environ.get("CI")))
    with bar:
        for row, face in iter_detections(itertools.islice(media, max_frames), det, batch=batch, aligner=aligner):
            rows.append(row)
            if every and face is not None and row[0] % every == 0 and len(kept) < 2 * keep_crops:
                kept[int(row[0])] = face.crop
            bar.update(1)
    table = pd.DataFrame(rows, columns=columns(det.aus))
    table = table.astype({"frame": "int64", "face": "int64"})
    return DetectionRun(table, str(media.path), media.kind, media.fps, kept)


def detect(path: str | os.PathLike, detector: Detector | str | os.PathLike, *, batch: int = 32,
           device: str | None = None, progress: bool = True,
           max_frames: int | None = None) -> "pd.DataFrame":
    """AU probabilities and decisions per frame of an image, a folder of images or a video.

    Returns a pandas DataFrame, one row per decoded frame, with the columns of the module docstring
    (``frame, timestamp, file, face, confidence, x, y, w, h, roll, AUxx_p..., AUxx_c...``).

    Raises:
        FileNotFoundError: ``path`` or the detector file does not exist (named).
        au_lib.data.media.MediaError: ``path`` is not a readable image, image folder or video (named).
        au_lib.detect.file.DetectorFileError: the detector file is corrupt or not a detector (named).
    """
    return detect_run(path, detector, batch=batch, device=device, progress=progress, max_frames=max_frames).table


def write_table(table: "pd.DataFrame", path: str | os.PathLike) -> Path:
    """Write a detection table as CSV atomically (NaN written as ``NaN``, 6 decimals)."""
    from au_lib.provenance import atomic_write_bytes

    text = table.to_csv(index=False, na_rep="NaN", float_format="%.6g")
    return atomic_write_bytes(path, text.encode())


def aligned_frames(path: str | os.PathLike, frames: Iterable[int] | None, size: int, align: str = "eye-mouth",
                   aligner: FaceAligner | None = None) -> dict[int, np.ndarray | None]:
    """Aligned face crops (size, size, 3) uint8 of the wanted ``frames`` of ``path`` (None: every frame),
    streamed; a frame without a face maps to None, a wanted frame past the end is absent.

    ``align``: ``"eye-mouth"`` (SynthAU's rule, :func:`au_lib.detect.file.synthau_preprocess`) or
    ``"template"`` (the similarity fit to the OpenFace template used for the Pexels frames,
    :meth:`au_lib.data.align.FaceAligner.align_with_landmarks`).
    """
    from au_lib.data.align import eye_mouth_crop_matrix

    from .file import synthau_preprocess

    if align not in ("eye-mouth", "template"):
        raise ValueError(f"align must be 'eye-mouth' or 'template', got {align!r}")
    wanted = None if frames is None else {int(f) for f in frames}
    aligner = aligner or FaceAligner(int(size))
    rule = synthau_preprocess(size) if align == "eye-mouth" else None
    out: dict[int, np.ndarray | None] = {}
    for fr in open_media(path):
        if wanted is not None and fr.index not in wanted:
            if fr.index > max(wanted):
                break
            continue
        found = aligner.detect(fr.image)
        if not found:
            out[fr.index] = None
            continue
        lm = aligner.landmarks(fr.image, found[0][0])
        if rule is not None:
            mat = eye_mouth_crop_matrix(lm, size, crop_side=rule["crop_side"], eye_to_centre=rule["eye_to_centre"])
            out[fr.index] = warp_to_crop(fr.image, mat, size)
        else:
            out[fr.index] = aligner.align_with_landmarks(fr.image, lm).crop
    return out


__all__ = ["CLIP_FRAMES", "DetectionRun", "FaceCrop", "META_COLUMNS", "aligned_frames", "au_columns", "columns", "detect", "detect_run",
           "face_crop", "iter_detections", "write_table"]

"""DISFA (Mavadati et al., 2013): stereo videos + per-AU intensity files -> aligned crops.

Expected layout under ``root`` (as distributed)::

    root/Videos_LeftCamera/LeftVideoSN001_comp.avi
    root/Videos_RightCamera/RightVideoSN001_comp.avi
    root/ActionUnit_Labels/SN001/SN001_au1.txt ... SN001_au26.txt   lines 'frame,intensity' (1-based, 0-5)

Videos may also sit anywhere below ``root`` (found by file name). **Frame numbering**: label frame k
(1-based) is the video frame with 0-based index k - 1, the index read from the frame's timestamp
(PyAV, sequential decoding; gaps from damaged or dropped packets are reported, see
:class:`~au_lib.data.sources.VideoSource`).
Occurrence over :data:`AUS` (the 8 detection AUs) is ``intensity >= threshold`` (2 by convention,
ME-GraphAU/FMAE/py-feat); the 12 annotated intensities are kept as ``au_intensity``.
The camera is a parameter: ``left`` by default (as ME-GraphAU); FMAE and LibreFace use ``right``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from au_lib.facs import DISFA_ANNOTATED_AUS, DISFA_AUS

from .bp4d import check_root
from .folds import Fold, standard_folds
from .labels import check_limit, check_threshold, presence_from_intensity, read_disfa_labels
from .prepare import SequenceJob
from .sources import VideoSource

AUS: tuple[int, ...] = DISFA_AUS
INTENSITY_AUS: tuple[int, ...] = DISFA_ANNOTATED_AUS
NAME = "disfa"
ENV_ROOT = "AU_DISFA_ROOT"
CAMERAS = ("left", "right")
DEFAULT_THRESHOLD = 2


def video_path(root: Path, subject: str, camera: str = "left") -> Path:
    """``<root>/Videos_LeftCamera/LeftVideo<subject>_comp.avi`` (or found anywhere below ``root``)."""
    if camera not in CAMERAS:
        raise ValueError(f"camera must be 'left' or 'right', got {camera!r}")
    cap = camera.capitalize()
    name = f"{cap}Video{subject}_comp.avi"
    direct = root / f"Videos_{cap}Camera" / name
    if direct.is_file():
        return direct
    hits = sorted(root.rglob(name))
    if not hits:
        raise FileNotFoundError(f"DISFA {camera} video for {subject} not found: expected {direct}")
    return hits[0]


def scan(root: str | os.PathLike | None = None, *, subjects: Sequence[str] | None = None, camera: str = "left",
         threshold: float = DEFAULT_THRESHOLD, limit: int | None = None) -> list[SequenceJob]:
    """One :class:`SequenceJob` per subject (one video each)."""
    limit, threshold = check_limit(limit), check_threshold(threshold)
    if camera not in CAMERAS:
        raise ValueError(f"camera must be 'left' or 'right', got {camera!r}")
    root = check_root(root, ENV_ROOT, NAME)
    label_dir = root / "ActionUnit_Labels"
    if not label_dir.is_dir():
        raise FileNotFoundError(f"{root}: no ActionUnit_Labels folder")
    found = sorted(p.name for p in label_dir.iterdir() if p.is_dir() and p.name.startswith("SN"))
    if not found:
        raise FileNotFoundError(f"{label_dir}: no SNxxx subject folders")
    if subjects is not None:
        unknown = sorted(set(subjects) - set(found))
        if unknown:
            raise FileNotFoundError(f"{label_dir}: no labels for subjects {unknown}")
        found = [s for s in found if s in set(subjects)]
    jobs = []
    for s in found:
        table = read_disfa_labels(label_dir, s, INTENSITY_AUS)
        n = limit or len(table.frames)
        inten = table.values[:n]
        au = presence_from_intensity(table.select(AUS).values[:n], threshold)
        jobs.append(SequenceJob(s, camera, [int(f) for f in table.frames[:n]], au, inten,
                                VideoSource(str(video_path(root, s, camera)), count_all=limit is None)))
    return jobs


def folds(*, root=None, profile=None, **kw) -> list[Fold]:
    """The standard DISFA 3 folds (fold k tests on part 4-k)."""
    return standard_folds("disfa")


def open_dataset(*, root=None, subjects=None, split=None, modalities=("rgb",), image_size=None,
                 profile=None, prepared=None, fold: int | None = None, **kw):
    """Prepared DISFA crops as a Dataset of sample dicts. ``au`` holds occurrence over :data:`AUS`
    (from the threshold used at preparation, recorded in ``prepare.json``), ``au_intensity`` 0-5 over
    :data:`INTENSITY_AUS`. ``sequence`` is the camera. Defaults: ``$AU_DISFA_ROOT``, ``$AU_DISFA_PREPARED``."""
    from .prepared import open_prepared

    return open_prepared(NAME, root=root, prepared=prepared, subjects=subjects, split=split, fold=fold,
                         folds_fn=folds, modalities=modalities, image_size=image_size, profile=profile, **kw)


"""BP4D-Spontaneous (Zhang et al., 2014): scan the distributed layout, prepare aligned crops, load them.

Expected layout under ``root`` (as distributed; see the book appendix "Using your own licensed data")::

    root/F001/T1/0712.jpg ...                   frames, named by 1-based frame number (zero-padded or not)
    root/AUCoding/AU_OCC/F001_T1.csv            header: 0,1,2,4,...; rows: frame, 1/0/9 per AU
    root/AUCoding/AU_INT/AU06/F001_T1_AU06.csv  frame,intensity (0-5, 9 unknown); AUs 6, 10, 12, 14, 17

``AU_OCC``/``AU_INT`` may also sit directly under ``root``; frames may sit under ``root/img`` or
``root/Sequences``. Only labelled (coded) frames are prepared; 9 ("not coded") becomes -1 per AU.
Folds: the standard subject-exclusive 3 folds of :mod:`au_lib.data.folds`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from au_lib.facs import BP4D_AUS, BP4D_INTENSITY_AUS

from .folds import Fold, standard_folds
from .labels import LabelFormatError, check_limit, read_bp4d_intensity, read_occurrence_csv
from .prepare import Issue, SequenceJob
from .sources import ImageFolderSource

AUS: tuple[int, ...] = BP4D_AUS
INTENSITY_AUS: tuple[int, ...] = BP4D_INTENSITY_AUS
NAME = "bp4d"
ENV_ROOT = "AU_BP4D_ROOT"


def find_dir(root: Path, candidates: Sequence[str], what: str) -> Path:
    """The first existing ``root/<candidate>``; FileNotFoundError listing what was tried."""
    for c in candidates:
        p = root / c
        if p.is_dir():
            return p
    raise FileNotFoundError(f"{root}: no {what} folder (looked for {', '.join(candidates)})")


def check_root(root: str | os.PathLike | None, env: str, name: str) -> Path:
    r = root or os.environ.get(env)
    if not r:
        raise FileNotFoundError(f"{name}: no dataset root given; pass --root or set ${env}")
    p = Path(r)
    if not p.is_dir():
        raise FileNotFoundError(f"{name}: dataset root {p} is not a folder")
    return p


def label_files(occ_dir: Path) -> list[Path]:
    """The ``<subject>_<task>.csv`` files of an ``AU_OCC`` folder, sorted.

    A ``.csv`` named otherwise (``F001-T1.csv``, ``F001_T1_v2.csv``) is an error naming it, not a
    sequence silently left out.
    """
    files = sorted(p for p in occ_dir.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    odd = [p.name for p in files if not re.fullmatch(r"[^_\s]+_[^_\s]+", p.stem)]
    if odd:
        raise LabelFormatError(f"{occ_dir}: label file(s) {odd} are not named <subject>_<task>.csv "
                               f"(e.g. F001_T1.csv); rename or move them")
    return files


def frames_issues(subject: str, seq: str, labelled: Sequence[int], available: set[int]) -> list[Issue]:
    """Frames with images but no labels (informational; not prepared)."""
    extra = sorted(available - set(int(f) for f in labelled))
    return [Issue(subject, seq, f, "frame_without_label", "image present but the frame is not in the label file")
            for f in extra]


def scan(root: str | os.PathLike | None = None, *, subjects: Sequence[str] | None = None,
         tasks: Sequence[str] | None = None, aus: Sequence[int] = AUS,
         intensity_aus: Sequence[int] = INTENSITY_AUS, limit: int | None = None) -> list[SequenceJob]:
    """One :class:`SequenceJob` per ``AU_OCC`` file (subject x task) of a BP4D tree.

    Args:
        subjects, tasks: restrict to these (default: every label file).
        limit: keep the first ``limit`` labelled frames per sequence (to try the pipeline quickly).
    """
    limit = check_limit(limit)
    root = check_root(root, ENV_ROOT, NAME)
    occ_dir = find_dir(root, ["AUCoding/AU_OCC", "AU_OCC"], "AU_OCC label")
    int_dir = None
    for c in ("AUCoding/AU_INT", "AU_INT"):
        if (root / c).is_dir():
            int_dir = root / c
    frame_root = root
    for c in ("img", "Sequences", "images"):
        if (root / c).is_dir():
            frame_root = root / c
    jobs = []
    files = label_files(occ_dir)
    if not files:
        raise FileNotFoundError(f"{occ_dir}: no <subject>_<task>.csv label files")
    for path in files:
        subject, _, task = path.stem.partition("_")
        if subjects is not None and subject not in subjects:
            continue
        if tasks is not None and task not in tasks:
            continue
        occ = read_occurrence_csv(path, aus)
        frames = occ.frames[:limit] if limit else occ.frames
        values = occ.values[: len(frames)]
        if int_dir is not None and intensity_aus:
            inten = read_bp4d_intensity(int_dir, subject, task, intensity_aus, frames).values
        else:
            inten = np.full((len(frames), len(intensity_aus)), -1.0, np.float32)
        source = ImageFolderSource.scan(frame_root / subject / task)
        issues = [] if limit else frames_issues(subject, task, frames, source.available())
        jobs.append(SequenceJob(subject, task, [int(f) for f in frames], values, inten, source, issues=issues))
    if not jobs:
        raise FileNotFoundError(f"{occ_dir}: no label files match subjects={subjects} tasks={tasks}")
    return jobs


def folds(*, root=None, profile=None, **kw) -> list[Fold]:
    """The standard BP4D 3 folds (fold k tests on part 4-k; ME-GraphAU numbering)."""
    return standard_folds("bp4d")


def open_dataset(*, root=None, subjects=None, split=None, modalities=("rgb",), image_size=None,
                 profile=None, prepared=None, fold: int | None = None, **kw):
    """Prepared BP4D crops as a Dataset of sample dicts (see :mod:`au_lib.data.prepared`).

    ``root`` defaults to ``$AU_BP4D_ROOT``; ``prepared`` to ``$AU_BP4D_PREPARED``. ``split``
    ("train"/"test") selects the subjects of ``fold`` (1-3).
    """
    from .prepared import open_prepared

    return open_prepared(NAME, root=root, prepared=prepared, subjects=subjects, split=split, fold=fold,
                         folds_fn=folds, modalities=modalities, image_size=image_size, profile=profile, **kw)

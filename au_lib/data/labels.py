"""Readers for the AU label files of BP4D, BP4D+ and DISFA, exactly as distributed.

Every reader returns a :class:`LabelTable`: 1-based ``frames`` (N,) int64 and ``values`` (N, A)
float32 over an ordered AU tuple, with ``-1`` where a label is unknown. Malformed files raise
:class:`LabelFormatError` naming the file, the line and the problem.

Formats:

- **BP4D / BP4D+ occurrence** ``AUCoding/AU_OCC/F001_T1.csv``: a header row of AU numbers whose first
  column (``0``) is the frame number, then one row per coded frame with 1 (present), 0 (absent) or
  9 (not coded). 9 becomes -1 (masked per AU); any other value is an error.
- **BP4D / BP4D+ intensity** ``AUCoding/AU_INT/AU06/F001_T1_AU06.csv``: ``frame,intensity`` rows, no
  header, intensity 0-5, 9 = not coded (-1).
- **DISFA** ``ActionUnit_Labels/SN001/SN001_au1.txt``: ``frame,intensity`` rows (1-based frame,
  intensity 0-5), one file per AU. Presence is ``intensity >= threshold`` (2 by convention).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

UNKNOWN_CODE = 9


class LabelFormatError(ValueError):
    """A label file does not follow its dataset's format (the message names file, line and problem)."""


@dataclass
class LabelTable:
    """Labels of one sequence: ``frames`` (N,) 1-based int64, ``values`` (N, A) float32 (-1 unknown)."""

    frames: np.ndarray
    values: np.ndarray
    aus: tuple[int, ...]
    source: str = ""

    def __len__(self) -> int:
        return len(self.frames)

    def as_dict(self) -> dict[int, np.ndarray]:
        """Frame number -> label vector (A,)."""
        return {int(f): v for f, v in zip(self.frames, self.values)}

    def select(self, aus: Sequence[int]) -> "LabelTable":
        """The columns for ``aus`` (in that order); AUs the file lacks raise a KeyError."""
        missing = [a for a in aus if a not in self.aus]
        if missing:
            raise KeyError(f"{self.source}: no column for AU {missing}; the file has AUs {list(self.aus)}")
        cols = [self.aus.index(a) for a in aus]
        return LabelTable(self.frames, self.values[:, cols], tuple(aus), self.source)


def _int(text: str, path: Path, line: int, what: str) -> int:
    t = text.strip()
    try:
        f = float(t)
    except ValueError:
        raise LabelFormatError(f"{path}: line {line}: {what} {t!r} is not an integer") from None
    if not np.isfinite(f) or f != int(f):
        raise LabelFormatError(f"{path}: line {line}: {what} {t!r} is not an integer")
    return int(f)


def read_text(path: Path, what: str = "label file") -> str:
    """The text of a label file as UTF-8 (a leading BOM is dropped); a :class:`LabelFormatError`
    naming the file and the first bad byte if it is not UTF-8 (e.g. saved as UTF-16 or Latin-1)."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelFormatError(f"{path}: {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                               f"{exc.start}); save it as UTF-8 or plain ASCII CSV") from None


def _header_au(text: str, path: Path, col: int) -> int:
    t = text.strip()
    if not re.fullmatch(r"\d+(\.0*)?", t):
        raise LabelFormatError(f"{path}: line 1: header must be AU numbers (whole numbers) with the frame "
                               f"column 0 first; column {col + 1} is {text!r}")
    return int(float(t))


def _check_frames(frames: list[int], path: Path) -> None:
    arr = np.asarray(frames)
    if len(arr) and arr.min() < 1:
        raise LabelFormatError(f"{path}: frame numbers are 1-based, found {int(arr.min())}")
    if len(set(frames)) != len(frames):
        dup = sorted({f for f in frames if frames.count(f) > 1})[:5]
        raise LabelFormatError(f"{path}: duplicate frame numbers {dup}")


def read_occurrence_csv(path: str | Path, aus: Sequence[int] | None = None) -> LabelTable:
    """Read a BP4D/BP4D+ ``AU_OCC`` file; columns are found by their header AU numbers.

    Args:
        path: the CSV file.
        aus: AUs to return, in this order (all columns of the file if None).
    Returns:
        :class:`LabelTable` with values 1/0/-1 (9 = not coded -> -1).
    Raises:
        FileNotFoundError, LabelFormatError (bad header, missing AU column, ragged row, value not in
        {0, 1, 9}, non-integer or duplicate frame).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"occurrence label file not found: {path}")
    text = read_text(path, "occurrence label file")
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    if not rows:
        raise LabelFormatError(f"{path}: empty file (expected a header row of AU numbers)")
    header = rows[0]
    file_aus = [_header_au(h, path, j) for j, h in enumerate(header)]
    if file_aus[0] != 0:
        raise LabelFormatError(f"{path}: line 1: first header column must be 0 (the frame number), got {header[0]!r}")
    file_aus = file_aus[1:]
    dup = sorted({a for a in file_aus if file_aus.count(a) > 1})
    if dup:
        raise LabelFormatError(f"{path}: line 1: AU {dup} appear(s) in more than one header column; "
                               f"which one holds the labels is ambiguous")
    want = tuple(file_aus) if aus is None else tuple(int(a) for a in aus)
    missing = [a for a in want if a not in file_aus]
    if missing:
        raise LabelFormatError(f"{path}: missing column for AU {missing}; the header has AUs {file_aus}")
    cols = [1 + file_aus.index(a) for a in want]
    frames: list[int] = []
    values = np.empty((len(rows) - 1, len(want)), dtype=np.float32)
    for i, row in enumerate(rows[1:]):
        line = i + 2
        if len(row) != len(header):
            raise LabelFormatError(f"{path}: line {line}: {len(row)} columns, the header has {len(header)}")
        frames.append(_int(row[0], path, line, "frame"))
        for j, c in enumerate(cols):
            v = _int(row[c], path, line, f"AU{want[j]} value")
            if v not in (0, 1, UNKNOWN_CODE):
                raise LabelFormatError(f"{path}: line {line}: AU{want[j]} value {v} not in {{0, 1, 9}}")
            values[i, j] = -1.0 if v == UNKNOWN_CODE else float(v)
    _check_frames(frames, path)
    return LabelTable(np.asarray(frames, dtype=np.int64), values, want, str(path))


def read_frame_value_file(path: str | Path, *, max_value: int = 5, unknown: int | None = UNKNOWN_CODE,
                          sep: str = ",") -> tuple[np.ndarray, np.ndarray]:
    """Read ``frame<sep>intensity`` lines (no header) -> (frames int64 (N,), intensity float32 (N,)).

    Intensities must be integers 0..``max_value``; ``unknown`` (9 for BP4D) becomes -1.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"intensity label file not found: {path}")
    frames: list[int] = []
    vals: list[float] = []
    for line_no, raw in enumerate(read_text(path, "intensity label file").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [p for p in (line.split(sep) if sep else line.split()) if p.strip() != ""]
        if len(parts) != 2:
            raise LabelFormatError(f"{path}: line {line_no}: expected 'frame{sep}intensity', got {line!r}")
        frames.append(_int(parts[0], path, line_no, "frame"))
        v = _int(parts[1], path, line_no, "intensity")
        if unknown is not None and v == unknown:
            vals.append(-1.0)
        elif 0 <= v <= max_value:
            vals.append(float(v))
        else:
            raise LabelFormatError(f"{path}: line {line_no}: intensity {v} outside 0..{max_value}")
    if not frames:
        raise LabelFormatError(f"{path}: no label lines")
    _check_frames(frames, path)
    return np.asarray(frames, dtype=np.int64), np.asarray(vals, dtype=np.float32)


def merge_columns(columns: dict[int, tuple[np.ndarray, np.ndarray]], aus: Sequence[int], source: str = "",
                  frames: np.ndarray | None = None) -> LabelTable:
    """Merge per-AU ``(frames, values)`` columns into one table over ``frames`` (default: the union).

    Frames an AU's file does not cover get -1 for that AU.
    """
    if frames is None:
        allf = set()
        for f, _ in columns.values():
            allf.update(int(x) for x in f)
        frames = np.asarray(sorted(allf), dtype=np.int64)
    pos = {int(f): i for i, f in enumerate(frames)}
    out = np.full((len(frames), len(aus)), -1.0, dtype=np.float32)
    for j, a in enumerate(aus):
        if a not in columns:
            continue
        f, v = columns[a]
        for fi, vi in zip(f, v):
            i = pos.get(int(fi))
            if i is not None:
                out[i, j] = vi
    return LabelTable(np.asarray(frames, dtype=np.int64), out, tuple(aus), source)


def intensity_folders(int_dir: str | Path) -> dict[int, Path]:
    """AU number -> its folder under ``AU_INT``: ``AU06`` and ``AU6`` both name AU 6.

    Raises :class:`LabelFormatError` if two folders name the same AU (``AU6`` and ``AU06``) or a
    folder looks like an AU folder but is not one (``AU6b``, ``AU_6``).
    """
    int_dir = Path(int_dir)
    out: dict[int, Path] = {}
    for d in sorted(p for p in int_dir.iterdir() if p.is_dir()):
        m = re.fullmatch(r"AU0*(\d+)", d.name, flags=re.IGNORECASE)
        if m is None:
            if d.name.upper().startswith("AU"):
                raise LabelFormatError(f"{d}: not an AU intensity folder name (expected AU<number>, e.g. AU06)")
            continue
        a = int(m.group(1))
        if a in out:
            raise LabelFormatError(f"{int_dir}: two folders for AU {a}: {out[a].name} and {d.name}")
        out[a] = d
    return out


def read_bp4d_intensity(int_dir: str | Path, subject: str, task: str, aus: Sequence[int],
                        frames: np.ndarray | None = None) -> LabelTable:
    """Read ``<int_dir>/AU06/<subject>_<task>_AU06.csv`` etc.; absent files leave -1 (unknown).

    Folder and file names may pad the AU number or not (``AU6``/``AU06``, ``..._AU6.csv``); two
    files for one AU are an error naming both.
    """
    int_dir = Path(int_dir)
    folders = intensity_folders(int_dir)
    cols = {}
    for a in aus:
        d = folders.get(a)
        if d is None:
            continue
        hits = [p for p in (d / f"{subject}_{task}_AU{a:02d}.csv", d / f"{subject}_{task}_AU{a}.csv") if p.is_file()]
        hits = list(dict.fromkeys(hits))
        if len(hits) > 1:
            raise LabelFormatError(f"{d}: two intensity files for {subject} {task} AU {a}: "
                                   f"{hits[0].name} and {hits[1].name}")
        if hits:
            cols[a] = read_frame_value_file(hits[0], max_value=5, unknown=UNKNOWN_CODE)
    return merge_columns(cols, aus, str(int_dir), frames)


def read_disfa_labels(label_dir: str | Path, subject: str, aus: Sequence[int]) -> LabelTable:
    """Read DISFA intensities ``<label_dir>/<subject>/<subject>_au<N>.txt`` for ``aus`` -> 0..5 table.

    Every requested AU file must exist and all must list the same frames (a mismatch is an error).
    """
    base = Path(label_dir) / subject
    cols = {}
    ref: tuple[np.ndarray, Path] | None = None
    for a in aus:
        p = base / f"{subject}_au{a}.txt"
        if not p.is_file():
            raise FileNotFoundError(f"DISFA label file missing: {p}")
        f, v = read_frame_value_file(p, max_value=5, unknown=None)
        if ref is None:
            ref = (f, p)
        elif len(f) != len(ref[0]) or not np.array_equal(np.sort(f), np.sort(ref[0])):
            raise LabelFormatError(f"{p}: frames differ from {ref[1].name} ({len(f)} vs {len(ref[0])} lines)")
        cols[a] = (f, v)
    return merge_columns(cols, aus, str(base))


def check_threshold(threshold: float) -> float:
    """A presence threshold must be a number in (0, 5] (FACS intensities are 0-5); else ValueError."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number in (0, 5], got {threshold!r}") from None
    if not (np.isfinite(t) and 0 < t <= 5):
        raise ValueError(f"threshold must be a number in (0, 5] (AU present at intensity >= threshold), got {threshold!r}")
    return t


def check_limit(limit: int | None) -> int | None:
    """``--limit``: None (all frames) or a positive number of frames; else ValueError."""
    if limit is None:
        return None
    if isinstance(limit, bool) or int(limit) != limit or limit < 1:
        raise ValueError(f"limit must be a positive number of frames per sequence, got {limit!r}")
    return int(limit)


def presence_from_intensity(intensity: np.ndarray, threshold: float = 2.0) -> np.ndarray:
    """Occurrence 1/0 from FACS intensity (present at ``>= threshold``); unknown (-1) stays -1."""
    threshold = check_threshold(threshold)
    x = np.asarray(intensity, dtype=np.float32)
    return np.where(x < 0, -1.0, (x >= threshold).astype(np.float32)).astype(np.float32)

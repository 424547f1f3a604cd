"""Read prepared (aligned) BP4D / BP4D+ / DISFA crops as a ``Dataset`` of the shared sample dict.

:class:`PreparedDataset` reads ``<prepared>/index.csv`` and ``prepare.json`` written by
:mod:`au_lib.data.prepare` and yields::

    rgb          float32 (3, S, S) in [0, 1]   (S = image_size, resized with antialiasing if needed)
    depth        float32 (1, S, S) in [0, 1]   (if requested; normalisation in ``.normalisation``)
    thermal      float32 (1, S, S) in [0, 1]
    au           float32 (A,) 1/0/-1 over the dataset's AU tuple (-1 unknown)
    au_intensity float32 (B,) 0-5 / -1 over ``intensity_aus``
    subject, sequence (str), frame (int, the 1-based label frame); no ``pose`` (not known)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from au_lib.cache import cache_root  # noqa: F401  (re-exported: the package's one cache folder)
from au_lib.profiles import pick


@dataclass(frozen=True)
class RealDataConfig:
    """Per-profile settings for reading prepared real data."""

    image_size: int        # side of the returned images
    frame_stride: int      # keep every k-th aligned frame of each sequence
    max_subjects: int | None  # keep at most this many subjects per split (None: all)


REAL_PROFILES: dict[str, RealDataConfig] = {
    "smoke": RealDataConfig(image_size=64, frame_stride=50, max_subjects=3),
    "cpu": RealDataConfig(image_size=112, frame_stride=5, max_subjects=None),
    "paper": RealDataConfig(image_size=224, frame_stride=1, max_subjects=None),
}


def resolve_prepared(dataset: str, prepared: str | os.PathLike | None, root: str | os.PathLike | None) -> Path:
    """Find the prepared folder of ``dataset``; a clear error saying how to prepare it if absent.

    Order: ``prepared``; ``$AU_<NAME>_PREPARED``; ``root`` if it holds an ``index.csv``;
    ``<root>/prepared``; ``<cache>/prepared/<dataset>``. ``root`` defaults to ``$AU_<NAME>_ROOT``.
    """
    env = dataset.upper()
    root = root or os.environ.get(f"AU_{env}_ROOT")
    candidates: list[Path] = []
    if prepared:
        candidates.append(Path(prepared))
    elif os.environ.get(f"AU_{env}_PREPARED"):
        candidates.append(Path(os.environ[f"AU_{env}_PREPARED"]))
    else:
        if root:
            candidates += [Path(root), Path(root) / "prepared"]
        candidates.append(cache_root() / "prepared" / dataset)
    for c in candidates:
        if (c / "index.csv").is_file() and (c / "prepare.json").is_file():
            return c
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"no prepared {dataset} data found (looked in: {looked}). Prepare it once from your licensed copy:\n"
        f"  python -m au_lib data prepare {dataset} --root /path/to/{dataset} --out /path/to/prepared\n"
        f"then pass prepared=... or set $AU_{env}_PREPARED (see the book appendix 'Using your own licensed data').")


class PreparedDataset:
    """Aligned crops of one prepared dataset (a ``torch.utils.data.Dataset``).

    Args:
        folder: the prepared folder (``index.csv`` + ``prepare.json``).
        subjects: keep these subjects only (None: all).
        modalities: any of ``rgb``, ``depth``, ``thermal`` (the last two only if prepared).
        image_size: output side (None: the profile's; the crop size if the profile's is larger).
        frame_stride: keep every k-th row of each sequence.
        max_subjects: keep the first (sorted) this many of the subjects present (None: all).
    """

    def __init__(self, folder: str | Path, *, subjects: Sequence[str] | None = None,
                 modalities: Sequence[str] = ("rgb",), image_size: int | None = None, frame_stride: int = 1,
                 aus: Sequence[int] | None = None, max_subjects: int | None = None) -> None:
        import pandas as pd

        self.folder = Path(folder)
        meta_path, index_path = self.folder / "prepare.json", self.folder / "index.csv"
        try:
            meta_bytes, index_bytes = meta_path.read_bytes(), index_path.read_bytes()
            self.meta = json.loads(meta_bytes.decode("utf-8"))
            if not isinstance(self.meta, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{self.folder}: not a prepared folder ({exc.filename} is missing); "
                                    f"run 'python -m au_lib data prepare' into it") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{meta_path}: unreadable ({exc}); rerun 'python -m au_lib data prepare' "
                             f"into {self.folder} to rewrite it") from None
        if not self.meta.get("complete", False):
            raise RuntimeError(f"{self.folder}: preparation did not finish; rerun the same "
                               f"'python -m au_lib data prepare' command to resume it")
        try:
            df = pd.read_csv(io.BytesIO(index_bytes), dtype={"subject": str, "sequence": str})
            need = ["subject", "sequence", "frame", "path", *[f"au_{a}" for a in self.meta["aus"]]]
            lacking = [c for c in need if c not in df.columns]
            if lacking:
                raise ValueError(f"columns {lacking} missing")
        except (ValueError, KeyError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ValueError(f"{index_path}: not a valid index ({exc}); rerun 'python -m au_lib data prepare' "
                             f"into {self.folder} to rewrite it") from None
        # what the rows hold, by content: prepare.json (settings, counts) and index.csv (rows, labels)
        self.content_key = hashlib.sha256(meta_bytes + b"\0" + index_bytes).hexdigest()[:16]
        self.file_aus = tuple(int(a) for a in self.meta["aus"])
        self.aus = tuple(aus) if aus is not None else self.file_aus
        missing = [a for a in self.aus if a not in self.file_aus]
        if missing:
            raise KeyError(f"{self.folder}: AUs {missing} were not prepared; prepared AUs: {list(self.file_aus)}")
        self.intensity_aus = tuple(int(a) for a in self.meta["intensity_aus"])
        for m in modalities:
            if m != "rgb" and f"{m}_path" not in df.columns:
                raise KeyError(f"{self.folder}: modality {m!r} was not prepared (columns: {list(df.columns)})")
            if m not in ("rgb", "depth", "thermal"):
                raise ValueError(f"unknown modality {m!r}; choose from rgb, depth, thermal")
        for m in modalities:
            if m != "rgb":  # rows whose frame had no data for this modality (listed in report.txt)
                df = df[df[f"{m}_path"].notna()]
        if subjects is not None:
            subjects = [str(s) for s in subjects]
            df = df[df["subject"].isin(subjects)]
        if max_subjects is not None:
            df = df[df["subject"].isin(sorted(df["subject"].unique())[:max_subjects])]
        if frame_stride > 1:
            df = df[df.groupby(["subject", "sequence"], sort=False).cumcount() % frame_stride == 0]
        self.df = df.reset_index(drop=True)
        self.modalities = tuple(modalities)
        self.crop_size = int(self.meta["aligner"]["size"])
        self.image_size = int(image_size or self.crop_size)
        self.normalisation = self.meta.get("options", {}).get("normalisation", {})
        self._au = self.df[[f"au_{a}" for a in self.aus]].to_numpy(np.float32)
        self._int = self.df[[f"int_{a}" for a in self.intensity_aus]].to_numpy(np.float32) \
            if self.intensity_aus else np.zeros((len(self.df), 0), np.float32)

    def __len__(self) -> int:
        return len(self.df)

    @property
    def fingerprint(self) -> str:
        """A key for caches built from this dataset: the prepared folder's content (not its name or
        row count) plus what this view selects (subjects, stride, modalities, AUs, image size).

        Re-preparing with changed labels changes it even when the number of frames stays the same.
        """
        view = json.dumps({"content": self.content_key, "rows": self.df[["subject", "sequence", "frame"]]
                           .astype(str).agg("/".join, axis=1).tolist(), "modalities": list(self.modalities),
                           "aus": list(self.aus), "image_size": self.image_size}, sort_keys=True)
        return f"{self.folder.name}:{hashlib.sha256(view.encode()).hexdigest()[:16]}"

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(sorted(self.df["subject"].unique()))

    def labels(self) -> np.ndarray:
        """All ``au`` rows (N, A) without loading images (for class weights and statistics)."""
        return self._au.copy()

    def _load(self, rel: str, grey: bool):
        import torch
        from PIL import Image

        path = self.folder / rel
        try:
            with Image.open(path) as im:
                arr = np.asarray(im if grey else im.convert("RGB"))
        except OSError as exc:
            raise OSError(f"{path}: cannot read prepared crop ({exc}); rerun prepare to repair it") from None
        if grey:
            x = torch.from_numpy(arr.astype(np.float32) / 65535.0)[None]
        else:
            x = torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
        if x.shape[-1] != self.image_size:
            import torch.nn.functional as F

            x = F.interpolate(x[None], size=(self.image_size, self.image_size), mode="bilinear",
                              antialias=True, align_corners=False)[0].clamp(0, 1)
        return x

    def __getitem__(self, i: int) -> dict:
        import torch

        row = self.df.iloc[int(i)]
        out = {"subject": str(row["subject"]), "sequence": str(row["sequence"]), "frame": int(row["frame"]),
               "au": torch.from_numpy(self._au[i].copy()), "au_intensity": torch.from_numpy(self._int[i].copy())}
        for m in self.modalities:
            out[m] = self._load(row["path"], grey=False) if m == "rgb" else self._load(row[f"{m}_path"], grey=True)
        return out


def open_prepared(dataset: str, *, root=None, prepared=None, subjects=None, split=None, fold: int | None = None,
                  folds_fn=None, modalities=("rgb",), image_size=None, profile=None, frame_stride=None,
                  aus=None) -> PreparedDataset:
    """The registry ``open_dataset`` shared by bp4d, bp4dplus and disfa.

    ``split`` is ``"train"`` or ``"test"`` of fold ``fold`` (1-3, default 1) from ``folds_fn()``;
    ``subjects`` (if given) further restricts it. Sizes and subsampling come from the profile row
    of :data:`REAL_PROFILES` unless given.
    """
    cfg = pick(REAL_PROFILES, profile)
    folder = resolve_prepared(dataset, prepared, root)
    subs = list(subjects) if subjects is not None else None
    if split is not None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
        folds = folds_fn()
        k = fold or 1
        if not 1 <= k <= len(folds):
            raise ValueError(f"fold must be in 1..{len(folds)}, got {fold}")
        chosen = list(getattr(folds[k - 1], split))
        subs = chosen if subs is None else [s for s in chosen if s in set(subs)]
    size = image_size or cfg.image_size
    return PreparedDataset(folder, subjects=subs, modalities=modalities, image_size=size,
                           frame_stride=frame_stride or cfg.frame_stride, aus=aus,
                           max_subjects=cfg.max_subjects if split is not None else None)

"""AU detection metrics: per-AU binary F1 with unknown labels masked, and class weights.

Conventions (the consensus of JAA-Net, ME-GraphAU and FMAE; see the metrics chapter):

- ``labels`` is an ``(N, A)`` array over N frames and A AUs with values 1 (present), 0 (absent) or an
  *unknown* code: ``-1`` (this project's) or ``9`` (BP4D's "not coded"). Unknown entries are removed
  per AU before counting; they are never counted as negatives.
- A prediction is positive when its score is ``>= threshold`` (0.5 on probabilities by default).
- F1 is computed per AU over all known frames of the test set pooled together, then averaged over
  AUs (macro). When an AU has known labels but no positive in truth or prediction, its F1 is 0
  (scikit-learn's ``zero_division=0``). When an AU has *no known label at all*, its F1 is undefined:
  it is reported as NaN in ``per_au`` and left out of ``mean``, and ``undefined`` lists it, so no NaN
  reaches an average silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

UNKNOWN_CODES: tuple[int, ...] = (-1, 9)


def _as_array(x, name: str) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().float().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (N, A) or (N,), got shape {arr.shape}")
    return arr


def known_mask(labels) -> np.ndarray:
    """Boolean ``(N, A)`` mask of labels that are known (0 or 1).

    Raises:
        ValueError: if a label is neither 0, 1 nor an unknown code (-1, 9).
    """
    lab = _as_array(labels, "labels")
    valid = np.isin(lab, (0, 1) + UNKNOWN_CODES)
    if not valid.all():
        bad = np.unique(lab[~valid])[:5]
        raise ValueError(f"labels must be 0, 1 or an unknown code {UNKNOWN_CODES}; found {bad.tolist()}")
    return np.isin(lab, (0, 1))


@dataclass
class F1Result:
    """Per-AU and mean F1 (in [0, 1]) with the counts behind them."""

    aus: tuple[int, ...]
    per_au: np.ndarray  # (A,) F1 per AU; NaN where undefined
    mean: float  # mean over defined AUs
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    n_known: np.ndarray  # known frames per AU
    undefined: list[int] = field(default_factory=list)  # AUs with no known label

    def as_dict(self) -> dict:
        """JSON-friendly dict (F1 in [0, 1]; NaN written as None)."""
        return {
            "aus": list(self.aus),
            "per_au": [None if np.isnan(v) else float(v) for v in self.per_au],
            "mean": float(self.mean),
            "tp": self.tp.tolist(), "fp": self.fp.tolist(), "fn": self.fn.tolist(),
            "n_known": self.n_known.tolist(),
            "undefined": list(self.undefined),
        }


def f1_per_au(labels, scores, threshold: float | Sequence[float] = 0.5,
              aus: Sequence[int] | None = None) -> F1Result:
    """Per-AU binary F1 with unknown labels masked, pooled over all frames.

    Args:
        labels: ``(N, A)`` with 1/0 and unknown codes (-1 or 9).
        scores: ``(N, A)`` probabilities (or any score compared with ``threshold``), or 0/1 predictions.
        threshold: one threshold, or one per AU (length A). Positive iff ``score >= threshold``.
        aus: the FACS numbers of the A columns (for reporting); defaults to ``0..A-1``.

    Returns:
        An :class:`F1Result`; ``mean`` averages the AUs whose F1 is defined.
    """
    lab = _as_array(labels, "labels")
    sc = _as_array(scores, "scores")
    if lab.shape != sc.shape:
        raise ValueError(f"labels {lab.shape} and scores {sc.shape} must have the same shape")
    if np.isnan(sc).any():
        raise ValueError("scores contain NaN")
    known = known_mask(lab)
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (lab.shape[1],))
    pred = sc >= thr[None, :]
    pos = lab == 1
    tp = (pred & pos & known).sum(0)
    fp = (pred & ~pos & known).sum(0)
    fn = (~pred & pos & known).sum(0)
    n_known = known.sum(0)
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    f1 = np.where(n_known > 0, f1, np.nan)
    aus_t = tuple(aus) if aus is not None else tuple(range(lab.shape[1]))
    if len(aus_t) != lab.shape[1]:
        raise ValueError(f"{len(aus_t)} AU ids given for {lab.shape[1]} label columns")
    defined = ~np.isnan(f1)
    undefined = [aus_t[i] for i in np.flatnonzero(~defined)]
    mean = float(f1[defined].mean()) if defined.any() else float("nan")
    return F1Result(aus_t, f1, mean, tp, fp, fn, n_known, undefined)


def occurrence_rates(labels) -> np.ndarray:
    """Fraction of *known* frames in which each AU is present, ``(A,)``; NaN where none is known."""
    lab = _as_array(labels, "labels")
    known = known_mask(lab)
    n = known.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, ((lab == 1) & known).sum(0) / np.maximum(n, 1), np.nan)


def class_weights(labels, aus: Sequence[int] | None = None) -> np.ndarray:
    """JAA-Net / ME-GraphAU AU weights ``w_i = (1/r_i) / sum_j(1/r_j) * n_AU`` (mean 1).

    ``r_i`` is the occurrence rate of AU i among the known training frames. Compute it on the
    training split only.

    Raises:
        ValueError: naming the AU, if an AU never occurs (or has no known label) in ``labels``.
    """
    r = occurrence_rates(labels)
    bad = np.flatnonzero(~(r > 0))
    if bad.size:
        names = [f"AU{aus[i]}" if aus is not None else f"column {i}" for i in bad]
        raise ValueError(f"cannot weight {', '.join(names)}: it never occurs among the known training labels")
    inv = 1.0 / r
    return inv / inv.sum() * len(r)


def pos_weights(labels) -> np.ndarray:
    """JAA-Net's ``(N_known - pos) / pos`` per AU, usable as BCE ``pos_weight``."""
    lab = _as_array(labels, "labels")
    known = known_mask(lab)
    pos = ((lab == 1) & known).sum(0)
    if (pos == 0).any():
        raise ValueError(f"columns {np.flatnonzero(pos == 0).tolist()} have no positive label")
    return (known.sum(0) - pos) / pos


def choose_thresholds(labels, scores, grid: Sequence[float] | None = None) -> np.ndarray:
    """Per-AU thresholds that maximise F1 on a *validation* split (ties: the one closest to 0.5).

    Use it on validation frames carved from the training subjects, never on the test fold.
    """
    lab = _as_array(labels, "labels")
    sc = _as_array(scores, "scores")
    grid_arr = np.asarray(grid if grid is not None else np.round(np.arange(0.05, 0.96, 0.05), 2))
    order = np.argsort(np.abs(grid_arr - 0.5), kind="stable")  # prefer thresholds near 0.5 on ties
    best = np.full(lab.shape[1], 0.5)
    best_f1 = np.full(lab.shape[1], -1.0)
    for t in grid_arr[order]:
        f1 = np.nan_to_num(f1_per_au(lab, sc, float(t)).per_au, nan=-1.0)
        better = f1 > best_f1 + 1e-12
        best[better] = t
        best_f1[better] = f1[better]
    return best

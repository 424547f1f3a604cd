"""Figures of a detection table (:mod:`au_lib.detect.run`): the AU timeline and a contact sheet."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def _aus_of(table) -> list[int]:
    return [int(c[2:-2]) for c in table.columns if c.startswith("AU") and c.endswith("_p")]


def plot_timeline(table, aus: Sequence[int] | None = None, thresholds: Mapping[int, float] | None = None,
                  title: str = "", cell_height: float = 0.55):
    """One strip per AU: its probability over time (seconds, else frame index), the decision threshold
    dashed, the frames where it is decided present shaded, frames without a face hatched grey.

    ``table``: a detection table; ``thresholds``: AU -> threshold (e.g. ``dict(zip(det.aus, det.thresholds))``).
    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    aus = list(aus) if aus is not None else _aus_of(table)
    if not aus:
        raise ValueError("plot_timeline: the table has no AUxx_p columns")
    t = table["timestamp"].to_numpy(dtype=float)
    use_time = np.isfinite(t).all() and len(t) > 1
    x = t if use_time else table["frame"].to_numpy(dtype=float)
    noface = table["face"].to_numpy() == 0
    fig, axes = plt.subplots(len(aus), 1, figsize=(10, cell_height * len(aus) + 0.8), sharex=True, squeeze=False)
    step = float(np.median(np.diff(x))) if len(x) > 1 else 1.0
    for ax, a in zip(axes[:, 0], aus):
        p = table[f"AU{a:02d}_p"].to_numpy(dtype=float)
        c = table[f"AU{a:02d}_c"].to_numpy(dtype=float) == 1
        ax.fill_between(x, 0, 1, where=c, color="tab:orange", alpha=0.25, lw=0, step="mid")
        ax.fill_between(x, 0, 1, where=noface, color="0.7", alpha=0.6, lw=0, step="mid", hatch="///")
        ax.plot(x, p, color="tab:blue", lw=0.9)
        if thresholds is not None and a in thresholds:
            ax.axhline(thresholds[a], color="k", lw=0.6, ls="--")
        ax.set_ylim(0, 1)
        ax.set_xlim(x[0] - step / 2, x[-1] + step / 2)
        ax.set_yticks([])
        ax.set_ylabel(f"AU{a}", rotation=0, ha="right", va="center", fontsize=8)
        for s in ("top", "right"):
            ax.spines[s].set_visible(False)
    axes[-1, 0].set_xlabel("time (s)" if use_time else "frame")
    if title:
        axes[0, 0].set_title(title, fontsize=9)
    fig.subplots_adjust(hspace=0.08, left=0.07, right=0.99, top=1 - 0.35 / fig.get_figheight(),
                        bottom=0.5 / fig.get_figheight())
    return fig


def contact_sheet(run, n: int = 8, cols: int = 4, cell: float = 1.6, top: int = 3):
    """Aligned crops kept by :func:`au_lib.detect.run.detect_run` (``keep_crops``), ``n`` evenly spaced,
    each titled with its frame, time and the ``top`` most probable AUs among those decided present.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    frames = sorted(run.crops)
    if not frames:
        raise ValueError(f"{run.source}: no aligned crops were kept (no face found, or keep_crops=0)")
    pick = [frames[i] for i in np.unique(np.round(np.linspace(0, len(frames) - 1, min(n, len(frames)))).astype(int))]
    table = run.table.set_index("frame")
    aus = _aus_of(run.table)
    rows = int(np.ceil(len(pick) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, (cell + 0.35) * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, f in zip(axes.ravel(), pick):
        row = table.loc[f]
        on = sorted(((row[f"AU{a:02d}_p"], a) for a in aus if row[f"AU{a:02d}_c"] == 1), reverse=True)[:top]
        ts = row["timestamp"]
        when = f"{ts:.1f}s" if np.isfinite(ts) else (row["file"] or f"#{f}")
        ax.imshow(run.crops[f])
        ax.set_title(f"{f} · {when}\n" + (" ".join(f"AU{a}" for _, a in on) or "none"), fontsize=7)
    fig.tight_layout()
    return fig


__all__ = ["contact_sheet", "plot_timeline"]

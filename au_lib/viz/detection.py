"""Plots for AU detection results: per-AU F1 bars, learning curves, honest vs test-tuned, error frames."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def plot_per_au(table, ax=None, title: str | None = None, anchors=None):
    """Grouped bars of per-AU F1 (%) for each row of ``table`` (a DataFrame from ``results_table``).

    ``anchors``: an optional DataFrame of published rows (``anchors_table``), drawn as hollow markers
    and labelled as reported on the real dataset.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.6))
    cols = [c for c in table.columns if c.startswith("AU")]
    n = len(table)
    width = 0.8 / max(1, n)
    xs = np.arange(len(cols))
    for k, (name, row) in enumerate(table.iterrows()):
        ax.bar(xs + (k - (n - 1) / 2) * width, row[cols].to_numpy(float), width,
               label=f"{name} (avg {row['Avg']:.1f})")
    if anchors is not None:
        for name, row in anchors.iterrows():
            vals = np.array([row.get(c, np.nan) for c in cols], dtype=float)
            if np.isfinite(vals).any():
                ax.plot(xs, vals, "o", mfc="none", ms=6, label=f"{name}: reported, real data")
    ax.set_xticks(xs, cols, rotation=0)
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, 100)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, ncol=2, loc="upper left", frameon=False)
    return ax


def plot_learning_curves(result: dict, ax=None, title: str | None = None):
    """Validation mean F1 per epoch for every (seed, fold) run, with the chosen epoch marked, and the
    test-fold F1 (fixed threshold) dashed for reference (never used for selection)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    for k, run in enumerate(result["metrics"]["runs"]):
        hist = run["history"]
        ep = [h["epoch"] for h in hist]
        color = f"C{k % 10}"
        ax.plot(ep, [100 * h["val_f1"] for h in hist], "-", color=color,
                label=f"fold {run['fold']} (seed {run['seed']}) validation")
        if "test_f1_fixed" in hist[0]:
            ax.plot(ep, [100 * h["test_f1_fixed"] for h in hist], "--", color=color, alpha=0.6)
        best = run["best_epoch"]
        ax.plot([best], [100 * hist[best - 1]["val_f1"]], "o", color=color)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean F1 (%)")
    ax.set_title(title or "validation (solid, selects the epoch) and test (dashed, reported only)")
    ax.legend(fontsize=7, frameon=False)
    return ax


def plot_honest_vs_tuned(results: dict[str, dict], ax=None):
    """For each method: mean F1 with validation-chosen epoch/thresholds vs both chosen on the test fold."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.0))
    names = list(results)
    honest = [100 * results[n]["metrics"]["honest"]["mean"] for n in names]
    fixed = [100 * results[n]["metrics"]["fixed_threshold"]["mean"] for n in names]
    tuned = [100 * results[n]["metrics"].get("test_tuned", {"mean": np.nan})["mean"] for n in names]
    xs = np.arange(len(names))
    ax.bar(xs - 0.27, fixed, 0.27, label="threshold 0.5, epoch on validation")
    ax.bar(xs, honest, 0.27, label="threshold + epoch on validation (honest)")
    ax.bar(xs + 0.27, tuned, 0.27, label="threshold + epoch on TEST fold (leaky)", hatch="//", alpha=0.7)
    ax.set_xticks(xs, names, rotation=15, fontsize=8)
    ax.set_ylabel("mean F1 (%)")
    ax.legend(fontsize=7, frameon=False)
    return ax


def plot_difficulty(df, ax=None, x: str = "evidence"):
    """Scatter of per-AU F1 against a difficulty property (a column of ``au_difficulty``)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3.2))
    ax.scatter(df[x], df["f1"])
    for name, row in df.iterrows():
        ax.annotate(name, (row[x], row["f1"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(x)
    ax.set_ylabel("F1 (%)")
    return ax


def show_examples(table, rows: Sequence[int], axes, title: str = "") -> None:
    """Draw the RGB frames ``rows`` of a FrameTable into ``axes`` with subject/frame and labels."""
    from au_lib.viz.common import image_grid

    images = [table.x[r, :3] for r in rows]
    titles = []
    for r in rows:
        on = [f"{a}" for a, v in zip(table.aus, table.au[r].tolist()) if v == 1]
        titles.append(f"{table.subject[r]} #{int(table.frame[r]) if table.frame is not None else r}\n"
                      f"AUs: {','.join(on) or '-'}")
    image_grid(axes, images, titles)
    if not rows:
        first = np.atleast_1d(axes).flat[0]
        first.text(0.0, 0.5, "none in this run", transform=first.transAxes, fontsize=9)
    if title:
        np.atleast_1d(axes).flat[0].figure.suptitle(title, fontsize=9)

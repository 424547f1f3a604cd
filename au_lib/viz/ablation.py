"""Figures of the MCM ablations (supplementary Fig. 1a/1b re-drawn from our result files).

Each function takes rows from :func:`au_lib.experiments.ablations.select` (loaded result files with
their point labels) and draws on a matplotlib ``Axes``; F1 is shown in percent, error bars are the
standard error of each point's mean over its runs (folds x partitions or seeds,
:func:`au_lib.experiments.ablations.curve_se`); ``baseline`` (F1 %) draws the "every AU present" line.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from au_lib.experiments.ablations import curve, curve_se

COLORS = {"fusion": "tab:red", "rgb": "tab:blue", "nomix": "tab:gray"}


def _ax(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5, 3.6))
    return ax


def _baseline(ax, baseline: float | None) -> None:
    if baseline is not None:
        ax.axhline(baseline, color="0.4", ls="-.", lw=1, label=f"every AU present ({baseline:.1f})")


def plot_epochs(rows: Sequence[dict], ax=None, *, paper_axis: bool = True, color: str = COLORS["rgb"],
                label: str = "RGB (ours)", baseline: float | None = None):
    """Fig. 1a: mean F1 over AUs against pre-training epochs (bottom: the paper's 0..100 scale, i.e.
    the same fraction of the schedule; top: our epochs). Returns the Axes."""
    ax = _ax(ax)
    c = curve_se(rows, "paper_epoch" if paper_axis else "epoch")
    ax.errorbar(c["x"], c["mean"], yerr=c["se"], marker="o", capsize=3, color=color, label=label)
    _baseline(ax, baseline)
    best = int(np.argmax(c["mean"]))
    ax.scatter([c["x"][best]], [c["mean"][best]], s=160, facecolors="none", edgecolors="k", zorder=5,
               label="our best")
    ax.set_xlabel("pre-training epochs (paper scale: 100 = end of the run)" if paper_axis else "pre-training epoch")
    ax.set_ylabel("mean F1 over AUs (%)")
    ax.set_title("(a) F1 vs pre-training epochs, mask 50%", pad=24 if paper_axis else 6)
    if paper_axis:
        ours = curve(rows, "epoch")["x"]
        top = ax.secondary_xaxis("top")
        top.set_xticks(c["x"])
        top.set_xticklabels([f"{int(e)}" for e in ours])
        top.set_xlabel("our epoch", fontsize=8)
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_mask_ratio(series: dict[str, Sequence[dict]], ax=None, *, paper_optimum: float = 0.5,
                    baseline: float | None = None):
    """Fig. 1b: mean F1 against the pre-training mask ratio, one line per series (e.g. ``{"fusion": rows,
    "rgb": rows, "nomix": rows}``); the paper's optimum as a dashed line. Returns the Axes."""
    ax = _ax(ax)
    names = {"fusion": "fusion (MCM)", "rgb": "RGB (MCM)", "nomix": "RGB, MAE without channel mixing"}
    live = [k for k, rows in series.items() if rows]
    for i, key in enumerate(live):
        c = curve_se(series[key], "mask_ratio")
        style = "--" if key == "nomix" else "-"
        dodge = 0.006 * (i - (len(live) - 1) / 2)  # keep overlapping error bars apart
        ax.errorbar(c["x"] + dodge, c["mean"], yerr=c["se"], marker="o", capsize=3, ls=style,
                    color=COLORS.get(key), label=names.get(key, key))
        best = int(np.argmax(c["mean"]))
        ax.scatter([c["x"][best] + dodge], [c["mean"][best]], s=160, facecolors="none",
                   edgecolors=COLORS.get(key, "k"), zorder=5)
    ax.axvline(paper_optimum, color="k", ls=":", lw=1, label=f"paper's optimum ({paper_optimum:.0%})")
    _baseline(ax, baseline)
    ax.set_xlabel("mask ratio in pre-training")
    ax.set_ylabel("mean F1 over AUs (%)")
    ax.set_title("(b) F1 vs mask ratio, end of pre-training")
    ax.legend(fontsize=8)
    return ax


def plot_recon_vs_f1(rows: Sequence[dict], ax=None, *, modality: str = "rgb"):
    """Held-out reconstruction error (same task for every checkpoint: mask 50%, uniform subsets)
    against mean F1; colour = mask ratio used in pre-training, marker = sweep. Returns the Axes."""
    import matplotlib.pyplot as plt

    ax = _ax(ax)
    markers = {"epochs": "o", "mask-ratio": "s", "nomix": "^"}
    cmap = plt.get_cmap("viridis")
    for sweep, mk in markers.items():
        sel = [r for r in rows if r["labels"]["sweep"] == sweep]
        if not sel:
            continue
        x = [r["metrics"]["recon_heldout"][modality] for r in sel]
        y = [100 * r["metrics"]["mean"] for r in sel]
        cols = [cmap(r["labels"]["mask_ratio"]) for r in sel]
        ax.scatter(x, y, c=cols, marker=mk, s=45, edgecolors="k", linewidths=0.5)
        ax.scatter([], [], marker=mk, color="0.6", edgecolors="k", linewidths=0.5, label=sweep)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    plt.colorbar(sm, ax=ax, label="pre-training mask ratio")
    ax.set_xlabel(f"held-out {modality} reconstruction MSE (mask 50%)")
    ax.set_ylabel("mean F1 over AUs (%)")
    ax.set_title("reconstruction objective vs AU detection")
    ax.legend(fontsize=8, title="sweep", title_fontsize=8)
    return ax


def per_au_heatmap(rows: Sequence[dict], x: str, ax=None, *, title: str = ""):
    """Per-AU F1 (%) of each point of a sweep (rows: AUs, columns: the ``x`` label). Returns the Axes."""
    ax = _ax(ax)
    rows = sorted(rows, key=lambda r: r["labels"][x])
    aus = rows[0]["metrics"]["aus"]
    mat = np.array([[np.nan if v is None else 100 * v for v in r["metrics"]["per_au"]] for r in rows]).T
    im = ax.imshow(mat, aspect="auto", cmap="magma", vmin=0, vmax=100)
    ax.set_yticks(range(len(aus)))
    ax.set_yticklabels([f"AU{a}" for a in aus], fontsize=7)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['labels'][x]:g}" for r in rows], fontsize=7)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_title(title, fontsize=9)
    import matplotlib.pyplot as plt

    plt.colorbar(im, ax=ax, label="F1 (%)")
    return ax

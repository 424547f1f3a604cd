"""Figures for the MCM chapter: the method from real tensors, reconstruction grids, error maps."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from au_lib.ops.masking import CHANNELS, SUBSETS, mask_image, subset_name
from au_lib.viz.common import to_numpy_image

MODALITY_LABELS = {"rgb": "RGB", "depth": "depth", "thermal": "thermal"}


def _show(ax, img: Tensor, cmap: str | None = None, title: str | None = None) -> None:
    arr = to_numpy_image(img.detach().float().cpu())
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    ax.imshow(arr, cmap=cmap if arr.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title, fontsize=8)


def plot_method(x5: Tensor, x3: Tensor, mask: Tensor, subset_idx: int, patch_size: int):
    """One sample: the five channels R,G,B,D,T, the channel-mixing image (its 3 kept channels shown as
    an RGB false-colour image) and the spatially masked mix. ``x5`` (5,H,W), ``x3`` (3,H,W), ``mask`` (N,)."""
    fig, axes = plt.subplots(1, 7, figsize=(12, 2.2))
    cmaps = ["Reds_r", "Greens_r", "Blues_r", "viridis", "inferno"]
    kept = set(SUBSETS[subset_idx])
    for c in range(5):
        _show(axes[c], x5[c:c + 1], cmaps[c], f"{CHANNELS[c]}" + (" (kept)" if c in kept else " (dropped)"))
        if c not in kept:
            axes[c].imshow(np.zeros((2, 2)), extent=(0, x5.shape[-1], x5.shape[-2], 0), alpha=0.55,
                           cmap="gray", vmin=0, vmax=1)
    _show(axes[5], x3, title=f"mix {subset_name(subset_idx)}")
    _show(axes[6], mask_image(x3[None], mask[None], patch_size, fill=0.5)[0],
          title=f"masked ({int(mask.sum())}/{mask.numel()} patches)")
    fig.tight_layout()
    return fig


def plot_reconstruction_grid(rows: Sequence[dict], patch_size: int, truth: bool = True, title: str | None = None):
    """Supplementary Fig. 2/3 layout. Each row dict holds ``rgb`` (3,H,W) original, ``x3`` (3,H,W) mix,
    ``mask`` (N,), ``rec`` {rgb, depth, thermal} predictions, optional ``depth``/``thermal`` ground
    truth and a ``label``. Columns: original RGB, masked mix, reconstructed RGB, D, T (+ true D, T)."""
    has_truth = truth and all(r.get("depth") is not None for r in rows)
    cols = ["original RGB", "masked mix", "rec. RGB", "rec. depth", "rec. thermal"]
    if has_truth:
        cols += ["true depth", "true thermal"]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.45 * len(cols), 1.5 * len(rows)), squeeze=False)
    for i, r in enumerate(rows):
        imgs = [(r["rgb"], None), (mask_image(r["x3"][None], r["mask"][None], patch_size)[0], None),
                (r["rec"]["rgb"], None), (r["rec"]["depth"], "viridis"), (r["rec"]["thermal"], "inferno")]
        if has_truth:
            imgs += [(r["depth"], "viridis"), (r["thermal"], "inferno")]
        for j, (img, cmap) in enumerate(imgs):
            _show(axes[i, j], img, cmap, cols[j] if i == 0 else None)
        axes[i, 0].set_ylabel(r.get("label", ""), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_history(history: Sequence[dict], title: str = "MCM pre-training"):
    """Per-modality training loss (masked patches + dropped channels) by epoch."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ep = [r["epoch"] for r in history]
    for m in ("rgb", "depth", "thermal"):
        ax.plot(ep, [r[f"loss_{m}"] for r in history], marker="o", ms=3, label=MODALITY_LABELS[m])
    ax.set_xlabel("epoch")
    ax.set_ylabel("pixel MSE on hidden parts")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_error_vs_ratio(ratios: Sequence[float], err: Tensor, baseline: Tensor | None = None,
                        paper_ratio: float = 0.5):
    """Pixel MSE per modality (columns of ``err`` (R,3)) against mask ratio; dashed: mean-image baseline."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for k, m in enumerate(("rgb", "depth", "thermal")):
        line, = ax.plot(ratios, err[:, k].numpy(), marker="o", label=MODALITY_LABELS[m])
        if baseline is not None:
            ax.axhline(float(baseline[k]), ls="--", lw=0.8, color=line.get_color())
    ax.axvline(paper_ratio, color="gray", lw=0.6, ls=":")
    ax.set_xlabel("mask ratio r")
    ax.set_ylabel("pixel MSE on hidden parts")
    ax.set_title("reconstruction error vs mask ratio (avg over 10 subsets)", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_subset_heatmap(err: Tensor, title: str = "pixel MSE by kept channels (mask 0.5)",
                        highlight: Sequence[tuple[int, int]] = ()):
    """Heatmap of ``err`` (10 subsets, 3 modalities); boxes around ``highlight`` (row, col) cells."""
    fig, ax = plt.subplots(figsize=(4.2, 4.6))
    arr = err.numpy()
    im = ax.imshow(arr, cmap="magma_r", aspect="auto")
    ax.set_xticks(range(3), ["RGB", "depth", "thermal"])
    ax.set_yticks(range(len(SUBSETS)), [subset_name(i) for i in range(len(SUBSETS))])
    ax.set_ylabel("kept channels")
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            ax.text(j, i, f"{arr[i, j]:.4f}", ha="center", va="center", fontsize=7,
                    color="white" if arr[i, j] > np.nanmean(arr) else "black")
    for (i, j) in highlight:
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="cyan", lw=2))
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_ablation(errors: dict[str, Tensor], title: str = "mean pixel MSE over the 10 subsets (mask 0.5)"):
    """Grouped bars: per modality, the mean error of each variant (``{name: (10, 3) error table}``)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    names = list(errors)
    w = 0.8 / len(names)
    for k, name in enumerate(names):
        vals = errors[name].nanmean(0).numpy()
        ax.bar(np.arange(3) + (k - (len(names) - 1) / 2) * w, vals, w, label=name)
    ax.set_xticks(range(3), ["RGB", "depth", "thermal"])
    ax.set_ylabel("pixel MSE on hidden parts")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig

"""Figures for the data chapter: galleries, AU rest/apex pairs, modalities, label statistics, pose, flow."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from au_lib.facs import FACS
from au_lib.viz.common import draw_arrows, flow_rgb, to_numpy_image


def show_gallery(images: Sequence[torch.Tensor], titles: Sequence[str] | None = None, cols: int = 8,
                 size: float = 1.4, cmap: str | None = None):
    """Grid of (C, H, W) images; returns the figure."""
    import matplotlib.pyplot as plt

    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            arr = to_numpy_image(images[i])
            ax.imshow(arr, cmap=cmap if arr.ndim == 2 else None, vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    fig.tight_layout()
    return fig


def show_rest_apex(aus: Sequence[int], rest: torch.Tensor, apex: Sequence[torch.Tensor], cols: int = 4):
    """For each AU: the face at rest, at apex, and the absolute difference (amplified x4)."""
    import matplotlib.pyplot as plt

    rows = int(np.ceil(len(aus) / cols))
    fig, axes = plt.subplots(rows, cols * 3, figsize=(cols * 3 * 1.15, rows * 1.35), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (au, img) in enumerate(zip(aus, apex)):
        r, c = divmod(k, cols)
        diff = ((img - rest).abs().mean(0, keepdim=True) * 4).clamp(0, 1)
        for j, (im, t) in enumerate(((rest, "rest"), (img, f"AU{au} E"), (diff, "|diff| x4"))):
            a = axes[r, 3 * c + j]
            arr = to_numpy_image(im)
            a.imshow(arr, cmap="magma" if arr.ndim == 2 else None, vmin=0, vmax=1)
            a.set_title(t if j else f"AU{au} {FACS[au].name}"[:22], fontsize=6)
    fig.tight_layout()
    return fig


def show_modalities(sample: dict, thermal_range: tuple[float, float] = (20.0, 40.0)):
    """RGB, depth and thermal (in degrees Celsius) of one sample dict, side by side."""
    import matplotlib.pyplot as plt

    lo, hi = thermal_range
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    axes[0].imshow(to_numpy_image(sample["rgb"]))
    axes[0].set_title("RGB")
    im = axes[1].imshow(sample["depth"][0].numpy(), cmap="gray_r", vmin=0.3, vmax=1)
    axes[1].set_title("depth (normalised, dark = far)")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    t = sample["thermal"][0].numpy() * (hi - lo) + lo
    im = axes[2].imshow(t, cmap="inferno", vmin=max(lo, 22.0), vmax=min(hi, 37.5))
    axes[2].set_title("thermal (degrees C)")
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    for a in axes:
        a.axis("off")
    fig.tight_layout()
    return fig


def show_occurrence(rates: np.ndarray, aus: Sequence[int], label: str = "SynthAU", ax=None):
    """Bar chart of AU occurrence rates (fraction of frames)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 2.8))
    ax.bar([f"AU{a}" for a in aus], rates, color="tab:blue", label=label)
    ax.set_ylabel("fraction of frames")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    return ax


def show_cooccurrence(labels: np.ndarray, aus: Sequence[int], ax=None):
    """Heatmap of P(AU j present | AU i present) from (N, A) 0/1 labels (rows i, columns j)."""
    import matplotlib.pyplot as plt

    y = np.asarray(labels, dtype=np.float64)
    co = y.T @ y
    cond = co / np.maximum(np.diag(co)[:, None], 1)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 4.4))
    im = ax.imshow(cond, cmap="viridis", vmin=0, vmax=1)
    names = [str(a) for a in aus]
    ax.set_xticks(range(len(aus)), names, fontsize=7)
    ax.set_yticks(range(len(aus)), names, fontsize=7)
    ax.set_xlabel("AU j")
    ax.set_ylabel("AU i")
    ax.set_title("P(AU j | AU i)", fontsize=9)
    plt.colorbar(im, ax=ax, fraction=0.046)
    return ax


def show_pose(pose: np.ndarray, intensity: np.ndarray | None = None, aus: Sequence[int] = (), ax=None):
    """Yaw, pitch, roll (degrees) over frames, optionally with AU intensities below."""
    import matplotlib.pyplot as plt

    n = 2 if intensity is not None else 1
    fig, axes = plt.subplots(n, 1, figsize=(7, 2.3 * n), sharex=True, squeeze=False)
    for k, name in enumerate(("yaw", "pitch", "roll")):
        axes[0, 0].plot(pose[:, k], label=name)
    axes[0, 0].set_ylabel("degrees")
    axes[0, 0].legend(fontsize=7, ncol=3)
    if intensity is not None:
        for k, a in enumerate(aus):
            if intensity[:, k].max() > 0:
                axes[1, 0].plot(intensity[:, k], label=f"AU{a}")
        axes[1, 0].set_ylabel("FACS intensity")
        axes[1, 0].set_ylim(-0.2, 5.2)
        axes[1, 0].legend(fontsize=6, ncol=6)
    axes[-1, 0].set_xlabel("frame")
    fig.tight_layout()
    return fig


def show_displacement(pair: dict, which: str = "au", step: int = 6):
    """Source, changed image, ground-truth displacement as colour (flow_to_image) and as arrows, visibility."""
    import matplotlib.pyplot as plt

    img = pair["au_changed" if which == "au" else "pose_changed" if which == "pose" else "target"]
    disp, vis = pair[f"disp_{which}"], pair[f"vis_{which}"]
    fig, axes = plt.subplots(1, 5, figsize=(13, 2.9))
    axes[0].imshow(to_numpy_image(pair["source"]))
    axes[0].set_title("source")
    axes[1].imshow(to_numpy_image(img))
    axes[1].set_title({"au": "AU-changed", "pose": "pose-changed", "target": "target"}[which])
    axes[2].imshow(to_numpy_image(flow_rgb(disp)))
    axes[2].set_title(f"displacement (max {float(disp.norm(dim=0).max()):.1f} px)")
    axes[3].imshow(to_numpy_image(img))
    draw_arrows(axes[3], disp, step=step, color="yellow", min_norm=0.3)
    axes[3].set_title("arrows (source -> output)")
    axes[4].imshow(vis[0].numpy(), cmap="gray", vmin=0, vmax=1)
    axes[4].set_title("visible in source")
    for a in axes:
        a.axis("off")
    fig.tight_layout()
    return fig


def show_rates_vs_reference(rates: np.ndarray, reference: dict[int, float], aus: Sequence[int],
                            label: str = "SynthAU BP4D-like", ref_label: str = "BP4D (from its class weights)",
                            ax=None):
    """Per-AU occurrence rates of a view beside a reference table (bars side by side)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 2.8))
    x = np.arange(len(aus))
    ax.bar(x - 0.2, rates, 0.4, label=label, color="tab:blue")
    ax.bar(x + 0.2, [reference[a] for a in aus], 0.4, label=ref_label, color="tab:gray")
    ax.set_xticks(x, [f"AU{a}" for a in aus], fontsize=8)
    ax.set_ylabel("occurrence rate")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, frameon=False)
    return ax


def show_learnability(results: dict[str, dict]):
    """Per-AU test F1 (in %) of the learnability bar for each view: a ResNet from scratch, the same on
    its training frames, a logistic probe on 32x32 grey pixels, and "every AU present".

    ``results``: view name -> the dict of :func:`au_lib.experiments.learnability.run_learnability`."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 3.3), squeeze=False)
    for ax, (view, r) in zip(axes[0], results.items()):
        aus = r["aus"]
        x = np.arange(len(aus) + 1)
        net = r["settings"].get("arch", "resnet18")
        series = [(f"{net}, test", r["cnn"]["test"], "tab:blue"), (f"{net}, train", r["cnn"]["train"], "tab:cyan"),
                  ("pixel probe, test", r["probe"]["test"], "tab:orange"), ("all present", r["all_present"], "tab:gray")]
        for k, (name, s, colour) in enumerate(series):
            vals = 100 * np.array([np.nan if v is None else v for v in s["per_au"]] + [s["mean"]], dtype=float)
            ax.bar(x + (k - 1.5) * 0.2, vals, 0.2, label=name, color=colour)
        ax.set_xticks(x, [f"AU{a}" for a in aus] + ["mean"], fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_ylabel("F1 (%)")
        ax.set_title(f"{view}-like view, held-out subjects", fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, frameon=False, ncol=4, loc="lower center")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig

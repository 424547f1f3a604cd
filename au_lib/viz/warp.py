"""Plots for the warp chapter: a warp at a glance, the kink at integer positions, field recovery."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from au_lib.viz.common import draw_arrows, flow_rgb, to_numpy_image


def plot_warp(source: torch.Tensor, displacement: torch.Tensor, warped: torch.Tensor, step: int = 8,
              titles=("source S", "displacement (colour)", "displacement (arrows)", "warped S(x-dx, y-dy)")):
    """Four panels: ``source`` (CxHxW), the ``2xHxW`` pixel displacement as colour and as arrows, ``warped``."""
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
    axes[0].imshow(to_numpy_image(source))
    axes[1].imshow(to_numpy_image(flow_rgb(displacement)))
    axes[2].imshow(to_numpy_image(source), alpha=0.5)
    draw_arrows(axes[2], displacement, step=step)
    axes[3].imshow(to_numpy_image(warped))
    for ax, t in zip(axes, titles):
        ax.set_title(t, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_kink(sl, ax=None):
    """The warped value and its derivative along ``dx`` across an integer sample position.

    ``sl``: a :class:`au_lib.experiments.warp_fit.KinkSlice`. Left: value with the two one-sided tangents
    and the tangent the supplementary's rule implies. Right: the derivative from the hand-written
    backward, with the one-sided limits and the supplementary's value at the kink.
    """
    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
    else:
        fig = ax[0].figure
    k = sl.dx_kink
    v0 = float(np.interp(k, sl.dx, sl.value))
    span = np.linspace(-0.6, 0.6, 2)
    ax[0].plot(sl.dx, sl.value, color="k", lw=2, label="output(x, y) as dx varies")
    ax[0].plot(k + span, v0 + sl.left * span, "--", color="tab:blue", label=f"left slope {sl.left:+.3f}")
    ax[0].plot(k + span, v0 + sl.right * span, "--", color="tab:orange", label=f"right slope {sl.right:+.3f}")
    ax[0].plot(k + span, v0 + sl.supplementary * span, ":", color="tab:red", lw=2,
               label=f"supplementary rule {sl.supplementary:+.3f}")
    ax[0].axvline(k, color="grey", lw=0.8)
    ax[0].set_xlabel("dx (pixels)")
    ax[0].set_ylabel("warped intensity")
    ax[0].legend(fontsize=7)
    ax[1].plot(sl.dx, sl.grad, color="k", lw=2, label="hand-written backward")
    ax[1].axhline(sl.left, color="tab:blue", ls="--", lw=1, label="left derivative")
    ax[1].axhline(sl.right, color="tab:orange", ls="--", lw=1, label="right derivative")
    ax[1].plot([k], [sl.ours], "o", color="k", label=f"ours at the kink {sl.ours:+.3f}")
    ax[1].plot([k], [sl.supplementary], "s", color="tab:red", label="supplementary at the kink")
    ax[1].axvline(k, color="grey", lw=0.8)
    ax[1].set_xlabel("dx (pixels)")
    ax[1].set_ylabel("d output / d dx")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_recovery(source: torch.Tensor, target: torch.Tensor, truth: torch.Tensor, estimate: torch.Tensor,
                  warped: torch.Tensor, step: int = 8, title: str = ""):
    """Two rows: source / target / recovered warp, and the true vs recovered field (colour + arrows).

    Both fields are coloured on the same scale (the true field's largest norm)."""
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.6))
    axes[0, 0].imshow(to_numpy_image(source))
    axes[0, 0].set_title("source", fontsize=9)
    axes[0, 1].imshow(to_numpy_image(target))
    axes[0, 1].set_title("target = warp(source, true d)", fontsize=9)
    axes[0, 2].imshow(to_numpy_image(warped))
    axes[0, 2].set_title("warp(source, recovered d)", fontsize=9)
    scale = float(truth.norm(dim=0).max().clamp_min(1e-6))
    both = torch.cat([truth, estimate], dim=2)
    both = torch.cat([both, torch.zeros(2, both.shape[1], 1)], dim=2)
    both[:, 0, -1] = scale  # pin the colour scale: the same maximum norm for both panels
    rgb = flow_rgb(both)[:, :, :-1]
    W = truth.shape[2]
    axes[1, 0].imshow(to_numpy_image(rgb[:, :, :W]))
    axes[1, 0].set_title("true d (colour)", fontsize=9)
    axes[1, 1].imshow(to_numpy_image(rgb[:, :, W:]))
    axes[1, 1].set_title("recovered d (colour, same scale)", fontsize=9)
    axes[1, 2].imshow(to_numpy_image(source), alpha=0.4)
    draw_arrows(axes[1, 2], truth, step=step, color="tab:green", scale=2.0)
    draw_arrows(axes[1, 2], estimate, step=step, color="tab:red", scale=2.0)
    axes[1, 2].set_title("arrows x2: true (green) under recovered (red)", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_loss(losses, ax=None, label=None):
    """Photometric loss per optimisation step (log scale)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3))
    ax.semilogy(losses, label=label)
    ax.set_xlabel("Adam step")
    ax.set_ylabel("mean squared error")
    if label:
        ax.legend(fontsize=8)
    return ax.figure

"""Shared plotting helpers: image grids from tensors and displacement fields drawn as colour and arrows."""

from __future__ import annotations

import numpy as np
import torch


def to_numpy_image(img: torch.Tensor) -> np.ndarray:
    """``CxHxW`` tensor in [0, 1] (C = 1 or 3) -> ``HxWx3`` or ``HxW`` numpy array for ``imshow``."""
    img = img.detach().float().cpu().clamp(0, 1)
    if img.ndim != 3:
        raise ValueError(f"expected CxHxW, got {tuple(img.shape)}")
    if img.shape[0] == 1:
        return img[0].numpy()
    return img.permute(1, 2, 0).numpy()


def flow_rgb(displacement: torch.Tensor) -> torch.Tensor:
    """Colour-wheel image (3xHxW in [0, 1]) of a ``2xHxW`` displacement in pixels.

    Uses ``torchvision.utils.flow_to_image``, which scales by the field's own largest norm.
    """
    from torchvision.utils import flow_to_image

    flow = displacement.detach().float().cpu()
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"expected a 2xHxW displacement, got {tuple(flow.shape)}")
    return flow_to_image(flow).float() / 255.0


def draw_arrows(ax, displacement: torch.Tensor, step: int = 8, scale: float = 1.0, color: str = "k",
                min_norm: float = 0.05) -> None:
    """Sparse arrows of a ``2xHxW`` pixel displacement on a matplotlib axis (image coordinates).

    Arrows point from where the content came from to where it went: ``output(x, y) = source(x-dx,
    y-dy)`` means content moved by ``(+dx, +dy)``.
    """
    d = displacement.detach().float().cpu().numpy()
    H, W = d.shape[1:]
    ys, xs = np.mgrid[step // 2:H:step, step // 2:W:step]
    u, v = d[0][ys, xs], d[1][ys, xs]
    keep = np.hypot(u, v) >= min_norm
    ax.quiver(xs[keep] - u[keep], ys[keep] - v[keep], u[keep], v[keep], angles="xy", scale_units="xy",
              scale=1.0 / scale, color=color, width=0.004)


def image_grid(ax_grid, images, titles=None, cmap="gray") -> None:
    """Fill a 2-D array of axes with tensors (CxHxW) or arrays; axes are switched off."""
    axes = np.atleast_2d(ax_grid)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images) or images[i] is None:
            continue
        img = images[i]
        arr = to_numpy_image(img) if isinstance(img, torch.Tensor) else np.asarray(img)
        ax.imshow(arr, cmap=cmap if arr.ndim == 2 else None, vmin=0, vmax=1 if arr.ndim == 2 else None)
        if titles is not None and i < len(titles) and titles[i]:
            ax.set_title(titles[i], fontsize=8)

"""How well a pre-trained MCM reconstructs what it did not see: per-sample errors over the hidden
pixels, and the sweeps the MCM chapter and the ablations plot (error by kept-channel subset, by mask
ratio, against a mean-image baseline).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from au_lib.models.mcm import MCM, MODALITIES
from au_lib.ops.masking import MODALITY_CHANNELS, SUBSETS, SpatialMask, kept_channel_mask, patchify, random_masking


def reconstruction_errors(model: MCM, x5: Tensor, subset_idx: Tensor, spatial_mask: SpatialMask,
                          available: Tensor | None = None) -> dict[str, Tensor]:
    """Per-sample pixel MSE against ground truth, per modality, over the reconstructed region.

    For each modality: the mean squared error (in [0,1] units) over its hidden pixels, i.e. masked
    patches of kept channels plus every pixel of dropped channels. Returns ``{m: (B,)}`` (NaN where a
    sample hides nothing of that modality or lacks it).
    """
    was = model.training
    model.eval()
    try:
        imgs = model.reconstruct(x5, available, subset_idx=subset_idx, spatial_mask=spatial_mask)
    finally:
        model.train(was)
    b = x5.shape[0]
    dev = x5.device
    if available is None:
        available = torch.ones(b, 5, dtype=torch.bool, device=dev)
    kept = kept_channel_mask(subset_idx.to(dev))
    p = model.cfg.patch_size
    out = {}
    for m in MODALITIES:
        ch = list(MODALITY_CHANNELS[m])
        err = (patchify(imgs[m], p) - patchify(x5[:, ch], p)) ** 2
        err = err.reshape(b, err.shape[1], p * p, len(ch)).mean(2)
        w = (((spatial_mask.mask.to(dev)[:, :, None] > 0) | ~kept[:, None, ch]) & available[:, None, ch]).float()
        n = w.sum((1, 2))
        out[m] = torch.where(n > 0, (err * w).sum((1, 2)) / n.clamp_min(1), torch.full_like(n, float("nan")))
    return out


@torch.no_grad()
def error_by_subset(model: MCM, x5: Tensor, mask_ratio: float = 0.5, seed: int = 0,
                    available: Tensor | None = None) -> Tensor:
    """Mean pixel MSE per (kept-channel subset, modality) on ``x5`` (B,5,H,W): a (10, 3) tensor.

    Every subset sees the same spatial masks (drawn from ``seed``), so rows differ only in which
    channels were kept. Rows whose subset is unavailable for some samples use the others; NaN where
    a modality is never hidden (cannot happen: each modality is masked at ``mask_ratio`` > 0).
    """
    b = x5.shape[0]
    sm = random_masking(b, model.cfg.num_patches, mask_ratio, torch.Generator().manual_seed(seed))
    out = torch.full((len(SUBSETS), len(MODALITIES)), float("nan"))
    for s in range(len(SUBSETS)):
        errs = reconstruction_errors(model, x5, torch.full((b,), s, dtype=torch.long, device=x5.device), sm, available)
        out[s] = torch.stack([errs[m].nanmean().cpu() for m in MODALITIES])
    return out


@torch.no_grad()
def error_by_mask_ratio(model: MCM, x5: Tensor, ratios: Sequence[float], seed: int = 0,
                        subsets: Sequence[int] | None = None) -> Tensor:
    """Mean pixel MSE per (mask ratio, modality), averaged over ``subsets`` (default all 10): (R, 3)."""
    subsets = list(range(len(SUBSETS))) if subsets is None else list(subsets)
    b = x5.shape[0]
    out = torch.zeros(len(ratios), len(MODALITIES))
    for i, r in enumerate(ratios):
        sm = random_masking(b, model.cfg.num_patches, r, torch.Generator().manual_seed(seed + i))
        acc = torch.zeros(len(MODALITIES))
        for s in subsets:
            errs = reconstruction_errors(model, x5, torch.full((b,), s, dtype=torch.long, device=x5.device), sm)
            acc += torch.stack([errs[m].nanmean().cpu() for m in MODALITIES])
        out[i] = acc / len(subsets)
    return out


def mean_image_baseline(x5: Tensor) -> Tensor:
    """Pixel MSE per modality (3,) of predicting every image by the batch's mean image: a floor any
    useful reconstruction must beat."""
    mu = x5.mean(0, keepdim=True)
    err = (x5 - mu) ** 2
    return torch.stack([err[:, list(MODALITY_CHANNELS[m])].mean() for m in MODALITIES]).cpu()


__all__ = ["reconstruction_errors", "error_by_subset", "error_by_mask_ratio", "mean_image_baseline"]

"""Channel mixing and spatial masking for the multimodal channel-mixing MAE (MCM).

Five input channels are stacked in a fixed order, ``CHANNELS = (R, G, B, D, T)``: RGB in [0, 1],
depth and thermal as 1-channel images. *Channel mixing* keeps 3 of the 5 channels per sample (one of
the ``C(5, 3) = 10`` subsets in :data:`SUBSETS`) and drops the other two; the kept channels are put in
ascending channel order into the 3 slots of a standard 3-channel image (so the subset ``(R, G, B)``
is exactly the RGB image). *Spatial masking* then hides a fraction of the patches of that
3-channel image, MAE-style: per sample, a random permutation of the patches, the first
``round(N * (1 - ratio))`` visible.

Everything stochastic takes a ``torch.Generator``; nothing reads global RNG state.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

CHANNELS: tuple[str, ...] = ("R", "G", "B", "D", "T")
"""The five channels of the early-fusion input, in stacking order."""

MODALITY_CHANNELS: dict[str, tuple[int, ...]] = {"rgb": (0, 1, 2), "depth": (3,), "thermal": (4,)}
"""Which of the five channels belong to each modality."""

SUBSETS: tuple[tuple[int, int, int], ...] = tuple(itertools.combinations(range(5), 3))
"""The 10 kept-channel subsets, each a sorted triple of channel indices. ``SUBSETS[0] == (0, 1, 2)``."""

RGB_SUBSET: int = SUBSETS.index((0, 1, 2))
"""Index of the all-RGB subset (the only one an RGB-only image can form)."""


def subset_name(index: int) -> str:
    """``'RGD'`` style name of subset ``index``."""
    return "".join(CHANNELS[c] for c in SUBSETS[int(index)])


def subset_index(subset: int | str | Sequence[int] | Sequence[str]) -> int:
    """Index into :data:`SUBSETS` of a subset given as an index, a name (``"RGB"``, ``"RDT"``), channel
    indices (``(0, 3, 4)``) or channel names (``("R", "D", "T")``). Order does not matter."""
    if isinstance(subset, (int,)) and not isinstance(subset, bool):
        if not 0 <= subset < len(SUBSETS):
            raise ValueError(f"subset index {subset} out of range 0..{len(SUBSETS) - 1}")
        return int(subset)
    items = list(subset.upper()) if isinstance(subset, str) else list(subset)
    try:
        chans = tuple(sorted(CHANNELS.index(c.upper()) if isinstance(c, str) else int(c) for c in items))
    except ValueError:
        raise ValueError(f"subset {subset!r}: channels must be among {CHANNELS}") from None
    if chans not in SUBSETS:
        raise ValueError(f"subset {subset!r} is not 3 distinct channels of {CHANNELS}")
    return SUBSETS.index(chans)


def subset_table(device: torch.device | str | None = None) -> Tensor:
    """``SUBSETS`` as a long tensor of shape (10, 3)."""
    return torch.tensor(SUBSETS, dtype=torch.long, device=device)


def kept_channel_mask(subset_idx: Tensor) -> Tensor:
    """Boolean (B, 5): which channels each sample keeps."""
    table = subset_table(subset_idx.device)[subset_idx]  # B,3
    keep = torch.zeros(subset_idx.shape[0], 5, dtype=torch.bool, device=subset_idx.device)
    return keep.scatter_(1, table, True)


def sample_subsets(batch: int, generator: torch.Generator | None = None,
                   probs: Sequence[float] | Tensor | None = None,
                   available: Tensor | None = None) -> Tensor:
    """Draw one kept-channel subset per sample.

    Args:
        batch: number of samples B.
        generator: CPU generator (required for reproducibility; ``None`` only in interactive use).
        probs: (10,) weights over :data:`SUBSETS` (default uniform); normalised here.
        available: optional bool (B, 5): channels that exist for each sample (e.g. RGB-only data).
            Only subsets made of available channels are drawn; a sample with fewer than 3 available
            channels raises.

    Returns:
        long (B,) subset indices on the CPU.
    """
    w = torch.ones(len(SUBSETS)) if probs is None else torch.as_tensor(probs, dtype=torch.float64).float()
    if w.shape != (len(SUBSETS),) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"probs must be {len(SUBSETS)} non-negative weights with a positive sum, got {w.tolist()}")
    w = w.expand(batch, -1).clone()
    if available is not None:
        available = available.to("cpu", torch.bool)
        if available.shape != (batch, 5):
            raise ValueError(f"available must have shape ({batch}, 5), got {tuple(available.shape)}")
        ok = available[:, subset_table()].all(-1)  # B,10
        w = w * ok
        bad = (w.sum(1) <= 0).nonzero().flatten()
        if len(bad):
            raise ValueError(f"samples {bad.tolist()[:5]} have no drawable subset: fewer than 3 available "
                             f"channels or all allowed subsets have zero probability")
    return torch.multinomial(w, 1, generator=generator).squeeze(1)


def channel_mix(x5: Tensor, subset_idx: Tensor) -> Tensor:
    """Build the channel-mixing image.

    Args:
        x5: (B, 5, H, W) stacked R, G, B, D, T.
        subset_idx: long (B,) indices into :data:`SUBSETS`.

    Returns:
        (B, 3, H, W): the kept channels in ascending channel order.
    """
    if x5.ndim != 4 or x5.shape[1] != 5:
        raise ValueError(f"channel_mix expects a (B, 5, H, W) tensor of R,G,B,D,T, got {tuple(x5.shape)}")
    idx = subset_table(x5.device)[subset_idx.to(x5.device)]  # B,3
    return torch.gather(x5, 1, idx[:, :, None, None].expand(-1, -1, *x5.shape[2:]))


@dataclass
class SpatialMask:
    """A per-sample MAE mask over ``N`` patches.

    Attributes:
        ids_keep: long (B, N_keep) indices of visible patches (in shuffled order).
        ids_restore: long (B, N) permutation that un-shuffles [visible, masked] tokens to patch order.
        mask: float (B, N), 1 = masked (hidden from the encoder), 0 = visible.
    """

    ids_keep: Tensor
    ids_restore: Tensor
    mask: Tensor

    @property
    def num_visible(self) -> int:
        return int(self.ids_keep.shape[1])

    def to(self, device) -> "SpatialMask":
        return SpatialMask(self.ids_keep.to(device), self.ids_restore.to(device), self.mask.to(device))


def num_visible(num_patches: int, ratio: float) -> int:
    """Visible patches at mask ratio ``ratio``: ``int(N * (1 - ratio))`` as in MAE."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    return max(1, int(num_patches * (1 - ratio)))


def random_masking(batch: int, num_patches: int, ratio: float,
                   generator: torch.Generator | None = None) -> SpatialMask:
    """MAE random masking: per sample, shuffle patches by argsort of uniform noise and keep the first
    ``num_visible(N, ratio)``. Exactly ``N - num_visible`` patches are masked in every sample.

    Returns a :class:`SpatialMask` on the CPU (move it with ``.to(device)``).
    """
    keep = num_visible(num_patches, ratio)
    noise = torch.rand(batch, num_patches, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(batch, num_patches)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return SpatialMask(ids_shuffle[:, :keep].contiguous(), ids_restore, mask)


def check_image(x: Tensor, patch_size: int, channels: int | None = None, name: str = "image") -> None:
    """Raise a clear ``ValueError`` unless ``x`` is (B, C, H, W) with H, W divisible by ``patch_size``."""
    if x.ndim != 4:
        raise ValueError(f"{name} must be a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    h, w = x.shape[-2:]
    if h % patch_size or w % patch_size:
        raise ValueError(f"{name} size {h}x{w} is not divisible by the patch size {patch_size}")


def patchify(x: Tensor, patch_size: int) -> Tensor:
    """(B, C, H, W) -> (B, N, p*p*C), patches in row-major order, each flattened as (p, p, C) as in MAE."""
    check_image(x, patch_size)
    b, c, h, w = x.shape
    p = patch_size
    x = x.reshape(b, c, h // p, p, w // p, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(x: Tensor, patch_size: int, channels: int, grid: tuple[int, int] | None = None) -> Tensor:
    """Inverse of :func:`patchify`: (B, N, p*p*C) -> (B, C, H, W). ``grid`` = (H/p, W/p); square if omitted."""
    b, n, d = x.shape
    p = patch_size
    if d != p * p * channels:
        raise ValueError(f"last dim {d} != patch_size^2 * channels = {p * p * channels}")
    if grid is None:
        s = int(round(n ** 0.5))
        if s * s != n:
            raise ValueError(f"{n} patches do not form a square grid; pass grid=(rows, cols)")
        grid = (s, s)
    gh, gw = grid
    x = x.reshape(b, gh, gw, p, p, channels)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(b, channels, gh * p, gw * p)


def mask_image(x: Tensor, mask: Tensor, patch_size: int, fill: float = 0.5) -> Tensor:
    """Paint masked patches of ``x`` (B, C, H, W) with ``fill`` (for figures). ``mask`` (B, N), 1 = masked."""
    check_image(x, patch_size)
    gh, gw = x.shape[-2] // patch_size, x.shape[-1] // patch_size
    m = mask.reshape(-1, 1, gh, gw).to(x.dtype)
    m = m.repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)
    return x * (1 - m) + fill * m

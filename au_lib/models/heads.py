"""AU classifiers on top of representations, and the masked, class-weighted multi-label loss.

- :class:`LinearProbe`: ``BatchNorm1d(D) -> Linear(D, A)``, TCAE's classifier on a frozen embedding
  (the official code's ``Au_detection``; we keep a bias, which BatchNorm does not make redundant for
  the *logits*: it lets each AU start at its prior).
- :class:`MultiLabelHead`: MAE-style fine-tuning head (``LayerNorm? -> Dropout -> Linear``), small init.
- :class:`EncoderClassifier`: any module exposing ``forward_features(x) -> (B, D)`` plus a head, so one
  training loop serves MCM fine-tuning, the timm baselines and probes.
- :func:`masked_bce_loss`: multi-label BCE over known labels only (``-1``/``9`` masked), each AU's term
  multiplied by its JAA-Net / ME-GraphAU weight (:func:`au_lib.metrics.class_weights`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

class LinearProbe(nn.Module):
    """``BatchNorm1d(dim) -> Linear(dim, num_aus)`` on a (frozen) pooled embedding.

    Input ``(B, dim)`` features; output ``(B, num_aus)`` logits.
    """

    def __init__(self, dim: int, num_aus: int):
        super().__init__()
        if dim < 1 or num_aus < 1:
            raise ValueError(f"LinearProbe needs dim >= 1 and num_aus >= 1, got dim={dim}, num_aus={num_aus}")
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.fc = nn.Linear(dim, num_aus)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.ndim != 2 or feats.shape[1] != self.norm.num_features:
            raise ValueError(f"LinearProbe expects (B, {self.norm.num_features}) features, got {tuple(feats.shape)}")
        return self.fc(self.norm(feats))


class MultiLabelHead(nn.Module):
    """Fine-tuning head: ``LayerNorm -> Dropout -> Linear``; ``(B, dim) -> (B, num_aus)`` logits.

    The weight starts small (``trunc_normal(std=2e-5)`` as in MAE fine-tuning) so the pre-trained
    encoder is not disturbed by large early gradients.
    """

    def __init__(self, dim: int, num_aus: int, dropout: float = 0.0, norm: bool = True):
        super().__init__()
        from timm.layers import trunc_normal_

        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_aus)
        trunc_normal_(self.fc.weight, std=2e-5)
        nn.init.zeros_(self.fc.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.norm(feats)))


class EncoderClassifier(nn.Module):
    """An encoder with ``forward_features(x) -> (B, D)`` followed by a multi-label head.

    ``forward(x)`` returns ``(B, A)`` logits; ``features(x)`` the ``(B, D)`` embedding.
    ``param_groups(lr, weight_decay, layer_decay)``: the encoder's groups from :func:`param_groups`
    (layer decay when it has it); the head always gets the full learning rate.
    """

    def __init__(self, encoder: nn.Module, dim: int, num_aus: int, dropout: float = 0.0,
                 forward_kwargs: dict | None = None):
        super().__init__()
        if not hasattr(encoder, "forward_features"):
            raise TypeError(f"{type(encoder).__name__} has no forward_features(x) -> (B, D)")
        self.encoder = encoder
        self.head = MultiLabelHead(dim, num_aus, dropout)
        self.forward_kwargs = dict(forward_kwargs or {})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.encoder.forward_features(x, **self.forward_kwargs)
        if f.ndim != 2:
            raise ValueError(f"encoder.forward_features must return (B, D), got {tuple(f.shape)}")
        return f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def param_groups(self, lr: float, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
        """The encoder's groups (layer decay when it has them) and the head's at the full ``lr``."""
        return param_groups(self.encoder, lr, weight_decay, layer_decay) + param_groups(self.head, lr, weight_decay)


def param_groups(module: nn.Module, lr: float, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """AdamW parameter groups of ``module``, each with its ``lr`` (``lr * lr_scale``).

    - a module with its own ``param_groups(lr, weight_decay, layer_decay)`` (a wrapper such as
      :class:`EncoderClassifier`) decides for its parts;
    - a module with ``param_groups_lrd`` (the MCM encoder: timm's ``param_groups_layer_decay`` over
      its ``group_matcher``) gets MAE's layer-wise lr decay;
    - anything else gets timm's ``param_groups_weight_decay`` (no decay for biases and 1-D
      parameters) at the full ``lr``.
    """
    own = getattr(module, "param_groups", None)
    if callable(own):
        return own(lr, weight_decay, layer_decay)
    if hasattr(module, "param_groups_lrd"):
        groups = module.param_groups_lrd(weight_decay, layer_decay)
    else:
        from timm.optim import param_groups_weight_decay

        groups = param_groups_weight_decay(module, weight_decay)
    for g in groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    return groups


def masked_bce_loss(logits: torch.Tensor, labels: torch.Tensor,
                    weights: torch.Tensor | Sequence[float] | None = None) -> torch.Tensor:
    """Class-weighted multi-label BCE over *known* labels.

    Args:
        logits: ``(B, A)`` raw scores.
        labels: ``(B, A)`` with 1 (present), 0 (absent), -1 or 9 (unknown: ignored).
        weights: optional ``(A,)`` per-AU weights (JAA-Net/ME-GraphAU, mean 1, from the training split).

    Returns:
        Scalar: ``sum_{b,i known} w_i * bce(b,i) / #known`` (0 with a gradient if nothing is known).
    """
    if logits.shape != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ in shape")
    known = (labels == 0) | (labels == 1)
    target = (labels == 1).to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if weights is not None:
        w = torch.as_tensor(weights, dtype=logits.dtype, device=logits.device)
        if w.shape != (logits.shape[1],):
            raise ValueError(f"weights must have shape ({logits.shape[1]},), got {tuple(w.shape)}")
        loss = loss * w[None, :]
    loss = loss * known.to(loss.dtype)
    return loss.sum() / known.sum().clamp_min(1)


class SubsetFusion(nn.Module):
    """MCM "fusion" input: the encoder sees channel-mixing images of the 5 channels R,G,B,D,T.

    ``forward_features(x5: (B, 5, H, W)) -> (B, D)``.

    - In training mode each sample is encoded through *one* subset drawn uniformly from ``subsets``
      (the fine-tuning analogue of channel mixing; cost of a single forward pass), using the module's
      own ``torch.Generator`` (seeded by ``seed``).
    - In evaluation mode the features are averaged over *all* ``subsets`` (deterministic).

    ``subsets``: names such as ``"RGB"``, ``"RDT"`` (default: all 10 of :data:`au_lib.ops.masking.SUBSETS`).
    The encoder is called as ``encoder.forward_features(img, subset=idx)`` (the MCM encoder adds a
    learned subset embedding when its config has one).
    ``subsets=("RGB",)`` reduces to the RGB-only encoder. ``grid > 1``: the encoder's tokens pooled onto
    ``grid x grid`` cells (``forward_features(..., grid=grid)``; features of size ``grid * grid * D``).
    """

    def __init__(self, encoder: nn.Module, subsets: Sequence[str] | None = None, seed: int = 0, grid: int = 1):
        super().__init__()
        from au_lib.ops.masking import SUBSETS, subset_index

        self.encoder = encoder
        self.grid = int(grid)
        self.subsets = [subset_index(s) for s in subsets] if subsets else list(range(len(SUBSETS)))
        self.generator = torch.Generator().manual_seed(int(seed))

    def _encode(self, x5: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        from au_lib.ops.masking import channel_mix

        img = channel_mix(x5, idx)
        if self.grid == 1:
            return self.encoder.forward_features(img, subset=idx)
        return self.encoder.forward_features(img, subset=idx, grid=self.grid)

    def forward_features(self, x5: torch.Tensor) -> torch.Tensor:
        if x5.ndim != 4 or x5.shape[1] != 5:
            raise ValueError(f"SubsetFusion expects (B, 5, H, W) R,G,B,D,T input, got {tuple(x5.shape)}")
        table = torch.tensor(self.subsets, dtype=torch.long)
        if self.training:
            pick = torch.randint(len(self.subsets), (x5.shape[0],), generator=self.generator)
            return self._encode(x5, table[pick].to(x5.device))
        feats = [self._encode(x5, torch.full((x5.shape[0],), int(s), dtype=torch.long, device=x5.device))
                 for s in self.subsets]
        return torch.stack(feats).mean(0)

    def param_groups(self, lr: float, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
        """The encoder's groups (:func:`param_groups`)."""
        return param_groups(self.encoder, lr, weight_decay, layer_decay)

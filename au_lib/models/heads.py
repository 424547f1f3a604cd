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

from typing import Callable, Sequence

import torch
from torch import nn
import torch.nn.functional as F

FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]
"""A callable ``(B, C, H, W) -> (B, D)``: the representation a classifier is trained on."""


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
    ``param_groups(lr, weight_decay, layer_decay)`` delegates to the encoder's layer-decay helper
    when it has one (``encoder.param_groups``/``layer_decay_groups``), else gives two groups
    (with and without weight decay); the head always gets the full learning rate.
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
        enc_groups = None
        for name in ("param_groups", "layer_decay_groups", "param_groups_lrd"):
            fn = getattr(self.encoder, name, None)
            if callable(fn):
                enc_groups = _call_groups(fn, lr, weight_decay, layer_decay)
                break
        if enc_groups is None:
            enc_groups = decay_groups(self.encoder, lr, weight_decay)
        return list(enc_groups) + decay_groups(self.head, lr, weight_decay)


def _call_groups(fn, lr, weight_decay, layer_decay) -> list[dict]:
    import inspect

    params = inspect.signature(fn).parameters
    kw = {}
    for key, val in (("lr", lr), ("base_lr", lr), ("weight_decay", weight_decay), ("layer_decay", layer_decay)):
        if key in params:
            kw[key] = val
    groups = list(fn(**kw))
    for g in groups:  # a helper may return lr_scale instead of lr
        if "lr" not in g:
            g["lr"] = lr * g.get("lr_scale", 1.0)
    return groups


def decay_groups(module: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weights with decay; biases, norms and 1-d params (tokens, scales) without."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") or "token" in name or "pos_embed" in name
         else decay).append(p)
    out = []
    if decay:
        out.append({"params": decay, "lr": lr, "weight_decay": weight_decay})
    if no_decay:
        out.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})
    return out


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
    The encoder is called as ``encoder.forward_features(img, subset=idx)`` when it takes a subset
    (the MCM encoder adds a learned subset embedding), else ``encoder.forward_features(img)``.
    ``subsets=("RGB",)`` reduces to the RGB-only encoder.
    """

    def __init__(self, encoder: nn.Module, subsets: Sequence[str] | None = None, seed: int = 0):
        super().__init__()
        import inspect

        from au_lib.ops.masking import SUBSETS, subset_index

        self.encoder = encoder
        self.subsets = [subset_index(s) for s in subsets] if subsets else list(range(len(SUBSETS)))
        self.generator = torch.Generator().manual_seed(int(seed))
        self._takes_subset = "subset" in inspect.signature(encoder.forward_features).parameters

    def _encode(self, x5: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        from au_lib.ops.masking import channel_mix

        img = channel_mix(x5, idx)
        return self.encoder.forward_features(img, subset=idx) if self._takes_subset else self.encoder.forward_features(img)

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
        for name in ("param_groups", "layer_decay_groups", "param_groups_lrd"):
            fn = getattr(self.encoder, name, None)
            if callable(fn):
                return _call_groups(fn, lr, weight_decay, layer_decay)
        return decay_groups(self.encoder, lr, weight_decay)

"""Supervised baselines trained from scratch: a ResNet-18 and a ViT the size of the MCM encoder.

They measure what pre-training buys: the same protocol, head and loss, with random initialisation.
Both are timm models wrapped so they expose ``forward_features(x: (B,3,H,W)) -> (B, D)`` like the MCM
encoder, and a layer-decay ``param_groups`` (timm's ``param_groups_layer_decay``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from au_lib.profiles import pick


@dataclass(frozen=True)
class ViTSize:
    """A ViT's shape; ``image_size`` in pixels, ``patch_size`` in pixels."""

    image_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0


class TimmEncoder(nn.Module):
    """A timm backbone with its classifier removed; ``forward_features(x) -> (B, num_features)``.

    Input: ``(B, in_chans, H, W)`` images in [0, 1] (normalised inside with ``mean``/``std``).
    """

    def __init__(self, model: nn.Module, mean: float = 0.5, std: float = 0.5):
        super().__init__()
        self.model = model
        self.num_features = int(model.num_features)
        self.mean, self.std = float(mean), float(std)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def param_groups(self, lr: float, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
        """AdamW groups with per-block learning-rate scaling (``lr * lr_scale``)."""
        from timm.optim import param_groups_layer_decay

        groups = param_groups_layer_decay(self.model, weight_decay=weight_decay, layer_decay=layer_decay)
        for g in groups:
            g["lr"] = lr * g["lr_scale"]
        return groups


def vit_size(profile: str | None = None) -> ViTSize:
    """The MCM encoder's size for ``profile`` (so the supervised ViT is the pre-trained one's twin)."""
    from au_lib.models.mcm import MCM_PROFILES

    cfg = pick(MCM_PROFILES, profile)
    return ViTSize(image_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
                   num_heads=cfg.num_heads, mlp_ratio=float(cfg.mlp_ratio))


def create_baseline(name: str, image_size: int, drop_path: float = 0.0, in_chans: int = 3,
                    profile: str | None = None) -> TimmEncoder:
    """A randomly initialised backbone: ``"resnet18"`` or ``"vit"`` (the MCM encoder's size).

    Raises:
        KeyError: for an unknown ``name``.
    """
    import timm

    if name == "resnet18":
        model = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=in_chans,
                                  drop_path_rate=drop_path)
    elif name == "vit":
        s = vit_size(profile)
        patch = s.patch_size if image_size % s.patch_size == 0 else max(1, image_size // 8)
        model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, in_chans=in_chans,
                                  img_size=image_size, patch_size=patch, embed_dim=s.embed_dim,
                                  depth=s.depth, num_heads=s.num_heads, mlp_ratio=s.mlp_ratio,
                                  global_pool="avg", drop_path_rate=drop_path)
    else:
        raise KeyError(f"unknown baseline {name!r}; choose 'resnet18' or 'vit'")
    return TimmEncoder(model)

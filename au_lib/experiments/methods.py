"""The methods the AU protocol compares, parsed from strings (``probe:mcm``, ``scratch:vit``,
``finetune:mcm:fusion``), and the factories that build their feature extractors and networks.

- ``probe:<extractor>``: BatchNorm + Linear on frozen features. Extractors: ``pixels`` (8x8
  average-pooled pixels, no learning), ``random-vit`` (a frozen random ViT), ``mcm`` (the pre-trained
  MCM encoder, mean-pooled tokens), ``mcm-grid`` (the same encoder's tokens pooled onto a 4 x 4 grid of
  the face, :data:`MCM_GRID`), ``tcae-au`` / ``tcae-pose`` (TCAE's two 256-d embeddings).
- ``scratch:resnet18`` / ``scratch:vit``: supervised baselines from random initialisation.
- ``finetune:mcm`` / ``finetune:mcm:fusion``: the MCM encoder fine-tuned on RGB, or on the fused
  modalities (the mean of the encoder's features over a set of channel-mixing subsets).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

if TYPE_CHECKING:
    from au_lib.experiments.protocol import ProtocolSettings


EXTRACTORS = ("pixels", "random-vit", "mcm", "mcm-grid", "tcae-au", "tcae-pose")
MCM_GRID = 4
"""Cells per side of the ``mcm-grid`` probe's token grid (:meth:`au_lib.models.mcm.MCMEncoder.forward_features`)."""


@dataclass(frozen=True)
class Method:
    """What is trained: ``kind`` ``probe`` | ``scratch`` | ``finetune``; ``backbone`` an extractor
    (probes) or a network; ``modality`` ``rgb`` | ``fusion``; ``checkpoint`` for pre-trained weights."""

    kind: str
    backbone: str
    modality: str = "rgb"
    checkpoint: str | None = None

    @classmethod
    def parse(cls, text: str, checkpoint: str | None = None) -> "Method":
        """``"probe:tcae-au"``, ``"scratch:resnet18"``, ``"finetune:mcm:fusion"`` -> Method.

        Raises:
            ValueError: naming the bad part.
        """
        parts = text.strip().lower().split(":")
        if len(parts) not in (2, 3) or parts[0] not in ("probe", "scratch", "finetune"):
            raise ValueError(f"method {text!r}: expected probe:<extractor>, scratch:<resnet18|vit> or "
                             f"finetune:mcm[:rgb|fusion]")
        kind, backbone = parts[0], parts[1]
        modality = parts[2] if len(parts) == 3 else "rgb"
        if kind == "probe" and backbone not in EXTRACTORS:
            raise ValueError(f"method {text!r}: unknown extractor {backbone!r}; choose from {', '.join(EXTRACTORS)}")
        if kind == "scratch" and backbone not in ("resnet18", "vit"):
            raise ValueError(f"method {text!r}: scratch baselines are resnet18 and vit")
        if kind == "finetune" and backbone != "mcm":
            raise ValueError(f"method {text!r}: only the MCM encoder is fine-tuned (finetune:mcm)")
        if modality not in ("rgb", "fusion"):
            raise ValueError(f"method {text!r}: modality must be rgb or fusion")
        if modality == "fusion" and kind != "finetune":
            raise ValueError(f"method {text!r}: fusion applies to finetune:mcm only")
        if backbone in ("mcm", "mcm-grid", "tcae-au", "tcae-pose") and checkpoint is None:
            raise ValueError(f"method {text!r} needs a pre-trained checkpoint (--checkpoint)")
        return cls(kind, backbone, modality, None if checkpoint is None else str(checkpoint))

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.backbone}" + (":fusion" if self.modality == "fusion" else "")

    @property
    def modalities(self) -> tuple[str, ...]:
        return ("rgb", "depth", "thermal") if self.modality == "fusion" else ("rgb",)


class _Pixels(nn.Module):
    """No-learning reference features: ``(B,C,H,W) -> (B, C*64)`` 8x8 average-pooled pixels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)


def checkpoint_sha(path: str | None) -> str | None:
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16]


def make_extractor(name: str, *, image_size: int, checkpoint: str | None = None, seed: int = 0,
                   profile: str | None = None) -> nn.Module:
    """A frozen feature extractor ``(B,3,H,W) -> (B,D)`` by name (see :data:`EXTRACTORS`)."""
    if name == "pixels":
        return _Pixels()
    if name == "random-vit":
        from au_lib.models.baselines import create_baseline

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # timm initialises from the global RNG; fork keeps it untouched
            return create_baseline("vit", image_size, profile=profile).eval()
    if name in ("mcm", "mcm-grid"):
        from au_lib.models.mcm import load_pretrained_encoder

        enc = load_pretrained_encoder(checkpoint).eval()
        if name == "mcm-grid":
            return _Features(lambda x: enc.forward_features(x, grid=MCM_GRID), keep=enc, size=enc.cfg.img_size)
        return _Features(enc.forward_features, keep=enc, size=enc.cfg.img_size)
    if name in ("tcae-au", "tcae-pose"):
        from au_lib.models.tcae import load_tcae

        model = load_tcae(checkpoint)
        which = 0 if name == "tcae-au" else 1
        return _Features(lambda x: model.encode(x)[which], keep=model, size=model.cfg.image_size)
    raise KeyError(f"unknown extractor {name!r}; choose from {', '.join(EXTRACTORS)}")


class _Features(nn.Module):
    """Wrap ``fn: (B,3,S,S) -> (B,D)``; inputs of another size are resized (bilinear) to ``size``."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], keep: nn.Module | None = None,
                 size: int | None = None):
        super().__init__()
        self.fn = fn
        self.keep = keep
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and x.shape[-1] != self.size:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                          antialias=True)
        return self.fn(x)


def make_network(method: Method, num_aus: int, settings: ProtocolSettings, profile: str | None = None,
                 seed: int = 0) -> nn.Module:
    """The trainable classifier of a ``scratch`` or ``finetune`` method: encoder + multi-label head."""
    from au_lib.models.heads import EncoderClassifier

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # model init from a seed, without touching the caller's global RNG
        if method.kind == "scratch":
            from au_lib.models.baselines import create_baseline

            enc = create_baseline(method.backbone, settings.image_size, drop_path=settings.drop_path, profile=profile)
            return EncoderClassifier(enc, enc.num_features, num_aus)
        from au_lib.models import mcm

        enc = mcm.load_pretrained_encoder(method.checkpoint, drop_path=settings.drop_path)
        if enc.cfg.img_size != settings.image_size:
            raise ValueError(f"{method.checkpoint}: MCM encoder takes {enc.cfg.img_size}px images but the protocol "
                             f"uses {settings.image_size}px; use a checkpoint of the same profile")
        dim = int(enc.embed_dim)
        if method.modality == "fusion":
            from au_lib.models.heads import SubsetFusion

            enc = SubsetFusion(enc, settings.fusion_subsets or None, seed=seed)
        return EncoderClassifier(enc, dim, num_aus)

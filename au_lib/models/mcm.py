"""MCM: the multimodal channel-mixing masked autoencoder (Zhang et al., WACV 2024).

Pipeline for one pre-training step (shapes for batch B, image HxW, patch p, N = HW/p^2 patches)::

    x5 (B,5,H,W) R,G,B,D,T in [0,1]
      -> channel mixing: keep 3 of 5 channels per sample (subset s in 0..9)  -> x3 (B,3,H,W)
      -> per-channel normalisation, timm PatchEmbed -> tokens (B,N,D) + 2-D sin-cos position
         + learned subset embedding e_s (tells the encoder which channels fill the 3 slots)
      -> spatial masking at ratio r (MAE shuffle): encoder (timm Blocks) on the N(1-r) visible tokens
      -> one decoder per modality (RGB, depth, thermal): mask tokens + position, timm Blocks,
         linear head predicting that modality's pixels for every patch (B,N,p*p*C_m)
      -> loss per modality: MSE over (masked patches x kept channels) and (all patches x dropped
         channels), only where the modality exists; total = weighted sum.

The encoder (:class:`MCMEncoder`) is a standalone ViT whose parameter names match timm's
``VisionTransformer`` (``cls_token``, ``pos_embed``, ``patch_embed.*``, ``blocks.*``, ``norm.*``), so a
timm ``vit_base_patch16_224`` state_dict loads into it (:meth:`MCMEncoder.load_timm_state_dict`). For
fine-tuning it offers ``forward_features(x (B,3,H,W) in [0,1], subset=None) -> (B,D)`` (RGB by default),
``forward_tokens``, ``num_layers`` and :meth:`MCMEncoder.param_groups_lrd` (MAE layer-wise lr decay).
"""

from __future__ import annotations


from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Sequence

import torch
from timm.layers import PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from au_lib.ops.masking import (MODALITY_CHANNELS, RGB_SUBSET, SUBSETS, SpatialMask, check_image,
                                channel_mix, kept_channel_mask, patchify, random_masking,
                                sample_subsets, subset_index, subset_table, unpatchify)

MODALITIES: tuple[str, ...] = ("rgb", "depth", "thermal")
LayerNorm = partial(nn.LayerNorm, eps=1e-6)  # as MAE and timm ViTs


@dataclass(frozen=True)
class MCMConfig:
    """Sizes and pre-training choices of MCM. See the chapter's table for which come from the paper."""

    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mask_ratio: float = 0.5
    norm_pix_loss: bool = False
    subset_embedding: bool = True
    subset_probs: tuple[float, ...] | None = None  # None: uniform over the 10 subsets
    loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # rgb, depth, thermal
    drop_path: float = 0.0
    channel_mean: tuple[float, ...] = (0.485, 0.456, 0.406, 0.5, 0.5)
    channel_std: tuple[float, ...] = (0.229, 0.224, 0.225, 0.25, 0.25)

    def __post_init__(self):
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads or self.decoder_embed_dim % self.decoder_num_heads:
            raise ValueError("embed dims must be divisible by their head counts")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.subset_probs is not None and len(self.subset_probs) != len(SUBSETS):
            raise ValueError(f"subset_probs needs {len(SUBSETS)} weights, got {len(self.subset_probs)}")

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MCMConfig":
        names = {f.name for f in fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        return cls(**kw)


MCM_PROFILES: dict[str, MCMConfig] = {
    # CI: seconds. 32 px, 16 patches, 2-block encoder.
    "smoke": MCMConfig(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3,
                       decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2),
    # A laptop CPU: 64 px, 64 patches of 8x8, ViT-Tiny-width encoder (6 blocks), 2-block decoders.
    "cpu": MCMConfig(img_size=64, patch_size=8, embed_dim=192, depth=6, num_heads=3,
                     decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4),
    # The paper's scale (ViT-B/16 at 224; decoders as MAE: 8 blocks of width 512, 16 heads).
    "paper": MCMConfig(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12,
                       decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, drop_path=0.0),
}


def sincos_pos_embed(embed_dim: int, grid: int, cls_token: bool = True) -> Tensor:
    """MAE's fixed 2-D sin-cos position embedding, (1, grid*grid [+1], embed_dim); the cls row is zero."""
    if embed_dim % 4:
        raise ValueError(f"sin-cos position embedding needs embed_dim divisible by 4, got {embed_dim}")
    coords = torch.arange(grid, dtype=torch.float64)
    gh, gw = torch.meshgrid(coords, coords, indexing="ij")  # MAE: emb_h from w-grid first, keep order
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim / 4))

    def one(pos):
        out = pos.reshape(-1)[:, None] * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    emb = torch.cat([one(gw), one(gh)], dim=1).float()
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim), emb], dim=0)
    return emb[None]


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _as_subset_tensor(subset, batch: int, device) -> Tensor:
    if subset is None:
        return torch.full((batch,), RGB_SUBSET, dtype=torch.long, device=device)
    if isinstance(subset, Tensor):
        if subset.ndim == 0:
            subset = subset.expand(batch)
        if subset.shape != (batch,):
            raise ValueError(f"subset tensor must have shape ({batch},), got {tuple(subset.shape)}")
        return subset.to(device, torch.long)
    return torch.full((batch,), subset_index(subset), dtype=torch.long, device=device)


class MCMEncoder(nn.Module):
    """ViT encoder of the channel-mixing image (timm building blocks, timm parameter names).

    Inputs are 3-channel images in [0, 1] (sample units) plus which channels of R,G,B,D,T fill the 3
    slots (``subset``; default RGB); the encoder normalises each slot by its channel's mean/std.
    """

    def __init__(self, cfg: MCMConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.img_size, cfg.patch_size, 3, cfg.embed_dim)
        n = self.patch_embed.num_patches
        self.grid = int(round(n ** 0.5))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(sincos_pos_embed(cfg.embed_dim, self.grid), requires_grad=False)
        self.subset_embed = nn.Embedding(len(SUBSETS), cfg.embed_dim) if cfg.subset_embedding else None
        dpr = [cfg.drop_path * i / max(1, cfg.depth - 1) for i in range(cfg.depth)]  # stochastic depth rule
        self.blocks = nn.ModuleList(Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, qkv_bias=True,
                                          drop_path=dpr[i], norm_layer=LayerNorm) for i in range(cfg.depth))
        self.norm = LayerNorm(cfg.embed_dim)
        self.register_buffer("channel_mean", torch.tensor(cfg.channel_mean).float(), persistent=False)
        self.register_buffer("channel_std", torch.tensor(cfg.channel_std).float(), persistent=False)
        self.register_buffer("subsets", subset_table(), persistent=False)
        self._init()

    def _init(self) -> None:
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        if self.subset_embed is not None:
            trunc_normal_(self.subset_embed.weight, std=0.02)
        self.blocks.apply(_init_weights)
        self.norm.apply(_init_weights)

    @property
    def num_layers(self) -> int:
        """Layers for layer-wise lr decay: embeddings (0), each block (1..depth), head side (depth+1)."""
        return len(self.blocks) + 1

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "pos_embed", "subset_embed.weight"}

    def embed(self, x3: Tensor, subset_idx: Tensor) -> Tensor:
        """Normalise, patch-embed and add position + subset embeddings. (B,3,H,W) -> (B,N,D)."""
        check_image(x3, self.cfg.patch_size, 3, "encoder input")
        if tuple(x3.shape[-2:]) != (self.cfg.img_size, self.cfg.img_size):
            raise ValueError(f"encoder input is {x3.shape[-2]}x{x3.shape[-1]}; this model expects "
                             f"{self.cfg.img_size}x{self.cfg.img_size}")
        chans = self.subsets[subset_idx]  # B,3
        x3 = (x3 - self.channel_mean[chans][:, :, None, None]) / self.channel_std[chans][:, :, None, None]
        t = self.patch_embed(x3) + self.pos_embed[:, 1:]
        if self.subset_embed is not None:
            t = t + self.subset_embed(subset_idx)[:, None]
        return t

    def _prepend_cls(self, t: Tensor, subset_idx: Tensor) -> Tensor:
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(t.shape[0], -1, -1)
        if self.subset_embed is not None:
            cls = cls + self.subset_embed(subset_idx)[:, None]
        return torch.cat([cls, t], dim=1)

    def forward_masked(self, x3: Tensor, subset_idx: Tensor, ids_keep: Tensor) -> Tensor:
        """Encode visible patches only: (B,3,H,W), (B,), (B,K) -> (B,1+K,D) (cls first, normed)."""
        t = self.embed(x3, subset_idx)
        t = torch.gather(t, 1, ids_keep[:, :, None].expand(-1, -1, t.shape[-1]))
        t = self._prepend_cls(t, subset_idx)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)

    def forward_tokens(self, x: Tensor, subset=None) -> Tensor:
        """All patches visible: (B,3,H,W) in [0,1] -> (B,1+N,D) normed tokens (cls first).

        ``subset``: None (RGB), an index, a name like ``"RDT"``, channel indices, or a (B,) tensor.
        """
        check_image(x, self.cfg.patch_size, 3, "encoder input")
        s = _as_subset_tensor(subset, x.shape[0], x.device)
        t = self._prepend_cls(self.embed(x, s), s)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)

    def forward_features(self, x: Tensor, subset=None, grid: int = 1) -> Tensor:
        """Pooled patch tokens (cls excluded), (B,3,H,W) in [0,1] -> (B, grid*grid*D). RGB by default.

        ``grid=1``: the mean over all patch tokens (MAE's global pool), (B, D). ``grid=g``: the token map
        (D, n, n) average-pooled onto g x g cells of the face and flattened channel-major, so a linear
        probe can tell the brows from the mouth (an AU is local; the global mean washes it out).
        """
        t = self.forward_tokens(x, subset)[:, 1:]
        if grid == 1:
            return t.mean(dim=1)
        n = self.grid
        if not 1 <= grid <= n:
            raise ValueError(f"grid must be between 1 and the {n} patches per side, got {grid}")
        fmap = t.transpose(1, 2).reshape(t.shape[0], t.shape[2], n, n)
        return torch.nn.functional.adaptive_avg_pool2d(fmap, grid).flatten(1)

    forward = forward_features

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's layer grouping as MAE's ``param_groups_lrd``: embeddings (layer 0), block ``i``
        (``i + 1``), the final norm on a layer of its own (``depth + 1``, full lr). (timm's ViT folds its
        norm into the last block instead, which shifts every block's decay by one power.)"""
        return {"stem": r"^cls_token|^pos_embed|^patch_embed|^subset_embed",
                "blocks": [(r"^blocks\.(\d+)", None)], "norm": r"^norm"}

    def param_groups_lrd(self, weight_decay: float = 0.05, layer_decay: float = 0.75) -> list[dict]:
        """AdamW parameter groups with MAE's layer-wise lr decay (timm's ``param_groups_layer_decay``
        over :meth:`group_matcher`): ``lr_scale = layer_decay ** (num_layers - layer)``; 1-D parameters
        and :meth:`no_weight_decay` names get no weight decay. Timm's schedulers apply ``lr_scale``;
        :func:`au_lib.models.heads.param_groups` turns it into each group's ``lr``."""
        from timm.optim import param_groups_layer_decay

        return param_groups_layer_decay(self, weight_decay, no_weight_decay_list=self.no_weight_decay(),
                                        layer_decay=layer_decay)

    def load_timm_state_dict(self, state: dict[str, Tensor]) -> dict[str, list[str]]:
        """Load a timm ``VisionTransformer`` state_dict (e.g. ``vit_base_patch16_224``).

        Copies ``cls_token``, ``pos_embed`` (resampled if the grid differs), ``patch_embed``, ``blocks``
        and ``norm``; ignores the classifier (``head``, ``fc_norm``). Returns ``{"missing": [...],
        "ignored": [...]}``. Raises ``ValueError`` on a width/depth mismatch.
        """
        state = dict(state)
        ignored = [k for k in state if k.startswith(("head", "fc_norm"))]
        for k in ignored:
            state.pop(k)
        if "pos_embed" in state and state["pos_embed"].shape != self.pos_embed.shape:
            pe = state["pos_embed"]
            if pe.shape[-1] != self.pos_embed.shape[-1]:
                raise ValueError(f"timm pos_embed width {pe.shape[-1]} != encoder width {self.pos_embed.shape[-1]}")
            old = int(round((pe.shape[1] - 1) ** 0.5))
            state["pos_embed"] = resample_abs_pos_embed(pe, [self.grid, self.grid], [old, old], num_prefix_tokens=1)
        own = self.state_dict()
        unexpected = [k for k in state if k not in own]
        if unexpected:
            raise ValueError(f"timm state_dict has keys this encoder lacks (wrong depth or a non-ViT "
                             f"model?): {unexpected[:5]}")
        for k, v in state.items():
            if own[k].shape != v.shape:
                raise ValueError(f"timm weight {k} has shape {tuple(v.shape)}, encoder expects {tuple(own[k].shape)}")
        result = self.load_state_dict(state, strict=False)
        return {"missing": list(result.missing_keys), "ignored": ignored}


class MCMDecoder(nn.Module):
    """One modality's decoder: (B,1+K,D) encoder tokens + restore order -> (B,N,p*p*C) pixel predictions."""

    def __init__(self, cfg: MCMConfig, out_channels: int, grid: int):
        super().__init__()
        d = cfg.decoder_embed_dim
        self.decoder_embed = nn.Linear(cfg.embed_dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(d, grid), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(Block(d, cfg.decoder_num_heads, cfg.mlp_ratio, qkv_bias=True,
                                                  norm_layer=LayerNorm) for _ in range(cfg.decoder_depth))
        self.decoder_norm = LayerNorm(d)
        self.decoder_pred = nn.Linear(d, cfg.patch_size ** 2 * out_channels)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(_init_weights)

    def forward(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        x = self.decoder_embed(latent)
        b, n = ids_restore.shape
        masks = self.mask_token.expand(b, n + 1 - x.shape[1], -1)
        x_ = torch.cat([x[:, 1:], masks], dim=1)
        x_ = torch.gather(x_, 1, ids_restore[:, :, None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]


@dataclass
class MCMOutput:
    """Result of :meth:`MCM.forward`.

    loss: scalar, weighted sum of the per-modality losses that had a target;
    losses: per modality, detached scalar (NaN when nothing of that modality was to be reconstructed);
    preds: per modality (B,N,p*p*C_m) predictions (pixel units, or per-patch normalised units with
        ``norm_pix_loss``); mask: (B,N) 1 = masked; subset_idx: (B,); kept: bool (B,5);
    x3: (B,3,H,W) the channel-mixing image that was encoded (before spatial masking).
    """

    loss: Tensor
    losses: dict[str, Tensor]
    preds: dict[str, Tensor]
    mask: Tensor
    subset_idx: Tensor
    kept: Tensor
    x3: Tensor
    counts: dict[str, Tensor] = field(default_factory=dict)


def mcm_loss(preds: dict[str, Tensor], x5: Tensor, mask: Tensor, kept: Tensor, available: Tensor,
             patch_size: int, norm_pix_loss: bool = False,
             weights: Sequence[float] = (1.0, 1.0, 1.0)) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """MCM's reconstruction loss.

    For modality m with channels c (rgb: 0-2, depth: 3, thermal: 4), the squared error is averaged over
    the p*p pixels of each (patch, channel) pair, then over the pairs that were hidden from the encoder
    and exist: ``(patch masked or channel c dropped) and channel c available``. With ``norm_pix_loss``
    the target patch (all p*p*C values of the modality) is normalised by its mean and std (MAE).

    Args:
        preds: {m: (B,N,p*p*C_m)}; x5: (B,5,H,W); mask: (B,N) 1 = masked; kept, available: bool (B,5).

    Returns:
        ``(total, losses, counts)``: total = sum_m weight_m * loss_m (a modality with nothing to
        reconstruct contributes an exact zero but stays in the graph); ``losses[m]`` detached, NaN when
        its count is 0; ``counts[m]`` number of (patch, channel) pairs in the average.
    """
    b = x5.shape[0]
    p = patch_size
    total = x5.new_zeros((), dtype=torch.float32)
    losses, counts = {}, {}
    for w_m, m in zip(weights, MODALITIES):
        ch = list(MODALITY_CHANNELS[m])
        target = patchify(x5[:, ch], p).float()
        if norm_pix_loss:
            mean = target.mean(-1, keepdim=True)
            var = target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        err = (preds[m].float() - target) ** 2
        err = err.reshape(b, target.shape[1], p * p, len(ch)).mean(2)  # B,N,C
        weight = ((mask[:, :, None] > 0) | ~kept[:, None, ch]) & available[:, None, ch]
        weight = weight.to(err.dtype)
        n = weight.sum()
        loss_m = (err * weight).sum() / n.clamp_min(1.0)
        total = total + w_m * loss_m
        losses[m] = torch.where(n > 0, loss_m.detach(), torch.full_like(loss_m.detach(), float("nan")))
        counts[m] = n.detach()
    return total, losses, counts


class MCM(nn.Module):
    """Multimodal channel-mixing MAE: encoder + one decoder per modality (rgb, depth, thermal)."""

    def __init__(self, cfg: MCMConfig, seed: int | None = 0):
        """Build and initialise (MAE's scheme) from ``seed``; ``seed=None`` uses the global RNG."""
        super().__init__()
        self.cfg = cfg
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.encoder = MCMEncoder(cfg)
            self.decoders = nn.ModuleDict({m: MCMDecoder(cfg, len(MODALITY_CHANNELS[m]), self.encoder.grid)
                                           for m in MODALITIES})

    def no_weight_decay(self) -> set[str]:
        """Parameters pre-trained without weight decay (MAE): the tokens and the subset embedding."""
        return ({f"encoder.{n}" for n in self.encoder.no_weight_decay()}
                | {f"decoders.{m}.mask_token" for m in MODALITIES})

    def draw(self, batch: int, generator: torch.Generator | None, available: Tensor | None = None,
             mask_ratio: float | None = None) -> tuple[Tensor, SpatialMask]:
        """Draw the random parts of a step on the CPU: subsets (B,) and a :class:`SpatialMask`."""
        subset_idx = sample_subsets(batch, generator, self.cfg.subset_probs, available)
        ratio = self.cfg.mask_ratio if mask_ratio is None else mask_ratio
        return subset_idx, random_masking(batch, self.cfg.num_patches, ratio, generator)

    def forward(self, x5: Tensor, available: Tensor | None = None, *, generator: torch.Generator | None = None,
                mask_ratio: float | None = None, subset_idx: Tensor | None = None,
                spatial_mask: SpatialMask | None = None) -> MCMOutput:
        """One MCM step.

        Args:
            x5: (B,5,H,W) stacked R,G,B,D,T in [0,1]; channels of missing modalities may hold anything.
            available: bool (B,5), channels that exist (default: all). Subsets use available channels
                only, and the loss skips unavailable channels.
            generator: CPU generator for the subset and mask draws (ignored for parts passed in).
            mask_ratio: overrides ``cfg.mask_ratio``.
            subset_idx, spatial_mask: fix the channel subsets (B,) / the spatial mask instead of drawing.
        """
        cfg = self.cfg
        check_image(x5, cfg.patch_size, 5, "MCM input (R,G,B,D,T)")
        b, dev = x5.shape[0], x5.device
        if available is None:
            available = torch.ones(b, 5, dtype=torch.bool, device=dev)
        available = available.to(dev, torch.bool)
        if subset_idx is None or spatial_mask is None:
            s_draw, m_draw = self.draw(b, generator, available, mask_ratio)
            subset_idx = s_draw if subset_idx is None else subset_idx
            spatial_mask = m_draw if spatial_mask is None else spatial_mask
        subset_idx = subset_idx.to(dev)
        sm = spatial_mask.to(dev)
        kept = kept_channel_mask(subset_idx)
        if bool((kept & ~available).any()):
            raise ValueError("a chosen channel subset uses a channel marked unavailable")
        x3 = channel_mix(x5, subset_idx)
        latent = self.encoder.forward_masked(x3, subset_idx, sm.ids_keep)
        preds = {m: self.decoders[m](latent, sm.ids_restore) for m in MODALITIES}  # B,N,p*p*C_m
        total, losses, counts = mcm_loss(preds, x5, sm.mask, kept, available, cfg.patch_size,
                                         cfg.norm_pix_loss, cfg.loss_weights)
        return MCMOutput(total, losses, preds, sm.mask, subset_idx, kept, x3, counts)

    @torch.no_grad()
    def reconstruct(self, x5: Tensor, available: Tensor | None = None, *, subset_idx: Tensor | None = None,
                    spatial_mask: SpatialMask | None = None, mask_ratio: float | None = None,
                    generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Images for figures: ``{"x3", "mask" (B,N), "rgb" (B,3,H,W), "depth", "thermal" (B,1,H,W)}``.

        Predictions are in [0,1] pixel units (with ``norm_pix_loss`` they are in per-patch normalised
        units and are shown de-normalised with the *input* image statistics where available).
        """
        out = self.forward(x5, available, generator=generator, mask_ratio=mask_ratio, subset_idx=subset_idx,
                           spatial_mask=spatial_mask)
        p, g = self.cfg.patch_size, self.encoder.grid
        imgs = {"x3": out.x3, "mask": out.mask, "subset_idx": out.subset_idx}
        for m in MODALITIES:
            pred = out.preds[m].float()
            if self.cfg.norm_pix_loss:
                t = patchify(x5[:, list(MODALITY_CHANNELS[m])], p)
                pred = pred * (t.var(-1, keepdim=True) + 1e-6) ** 0.5 + t.mean(-1, keepdim=True)
            imgs[m] = unpatchify(pred, p, len(MODALITY_CHANNELS[m]), (g, g)).clamp(0, 1)
        return imgs


def load_pretrained_encoder(checkpoint_path: str | Path, map_location="cpu",
                            drop_path: float | None = None) -> MCMEncoder:
    """Build an :class:`MCMEncoder` from a pre-training checkpoint written by ``au_lib.train.pretrain``
    (a dict with ``"config"`` and ``"model"``), or from a file holding a timm ViT state_dict together
    with ``{"config": MCMConfig dict}``. ``drop_path`` overrides the rate for fine-tuning.
    """
    from au_lib.cache import load_torch_file

    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"no MCM checkpoint at {path}")
    ckpt = load_torch_file(path, what="MCM checkpoint", map_location=map_location,
                           advice="pass another --checkpoint or pre-train again")
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path}: not an MCM pre-training checkpoint (needs 'model' and 'config' entries)")
    cfg_d = ckpt["config"]
    cfg_d = cfg_d.get("model", cfg_d) if isinstance(cfg_d, dict) else cfg_d
    cfg = MCMConfig.from_dict(cfg_d)
    if drop_path is not None:
        cfg = MCMConfig.from_dict({**cfg.to_dict(), "drop_path": drop_path})
    enc = MCMEncoder(cfg)
    state = ckpt["model"]
    if any(k.startswith("encoder.") for k in state):
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        enc.load_state_dict(state, strict=True)
    else:
        enc.load_timm_state_dict(state)
    return enc


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def encoder_flops_per_image(cfg: MCMConfig, visible_fraction: float = 1.0) -> float:
    """Approximate forward FLOPs (2 x MACs) of the encoder on ``visible_fraction`` of the patches."""
    n = int(cfg.num_patches * visible_fraction) + 1
    d = cfg.embed_dim
    per_block = 2 * n * (4 * d * d + 2 * d * d * cfg.mlp_ratio) + 2 * 2 * n * n * d
    return cfg.depth * per_block + 2 * cfg.num_patches * 3 * cfg.patch_size ** 2 * d


def decoder_flops_per_image(cfg: MCMConfig) -> float:
    """Approximate forward FLOPs of one decoder (all N+1 tokens)."""
    n = cfg.num_patches + 1
    d = cfg.decoder_embed_dim
    per_block = 2 * n * (4 * d * d + 2 * d * d * cfg.mlp_ratio) + 2 * 2 * n * n * d
    return cfg.decoder_depth * per_block + 2 * n * cfg.embed_dim * d


def mcm_train_flops_per_image(cfg: MCMConfig) -> float:
    """Approximate training FLOPs per image (forward x 3): encoder on visible tokens + 3 decoders."""
    fwd = encoder_flops_per_image(cfg, 1 - cfg.mask_ratio) + len(MODALITIES) * decoder_flops_per_image(cfg)
    return 3 * fwd


__all__ = ["MCMConfig", "MCM_PROFILES", "MCM", "MCMEncoder", "MCMDecoder", "MCMOutput", "MODALITIES",
           "load_pretrained_encoder", "sincos_pos_embed",
           "count_parameters", "mcm_train_flops_per_image"]

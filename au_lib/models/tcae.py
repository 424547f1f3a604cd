"""TCAE, the twin-cycle autoencoder of Li et al. (CVPR 2019), as the paper and its official code define it.

Two frames of one face, a *source* ``S`` and a *target* ``T``, are encoded into an AU embedding
``phi`` and a pose embedding ``psi`` (256-d each). Two decoders turn the pairs ``[phi_s, phi_t]`` and
``[psi_s, psi_t]`` into displacement fields ``tau_A`` and ``tau_P`` (pixels, ``2xHxW``) plus one
attention logit each. The overall displacement is the per-pixel softmax mix of the two and the
target is rebuilt from the source with **one** warp. The twin cycles change only the AUs
(``S_A = warp(S, tau_A)``) or only the pose (``S_P = warp(S, tau_P)``), ask the changed image's
embeddings to match the right halves of source and target, and morph it back with the same decoder.

Conventions: images ``Bx3xHxW`` in [0, 1]; displacements in pixels with
``output(x, y) = source(x - dx, y - dy)`` (channel 0 = dx along width, 1 = dy), warped by
:func:`au_lib.ops.warp.warp`. The official code predicts normalised ``grid_sample`` offsets of the
opposite sign; :func:`au_lib.ops.warp.official_flow_to_displacement` converts.

Where the official code (``mysee1989/TCAE``) and the paper differ, :class:`TCAEConfig` has a switch
with the paper's choice as default (where it is known):

- ``attention="softmax"`` (paper) vs ``"tanh_softmax"`` (code: logits squashed by tanh, so each
  branch weight stays in [0.119, 0.881]);
- ``detach_cycle_input=False`` (paper's cycle loss) vs ``True`` (code detaches the changed image
  before morphing it back, so the cycle trains only the inverse decoder pass);
- ``output_consistency=False`` (Fig. 2) vs ``True`` (code adds ``|phi(T_hat)-phi_t|^2`` and
  ``|psi(T_hat)-psi_t|^2``);
- ``curriculum=None`` (every sample) vs the code's curriculum window ``(lo, hi)``: each loss term is
  averaged over the samples ranked ``int(lo B) .. int(hi B)`` by that term (the code starts at
  ``(0, 0.5)``; the training loop moves the window, see :mod:`au_lib.train.tcae`);
- ``encoder_calls="batched"`` (one encoder call for source and target, one for the changed images:
  BatchNorm shares statistics) vs ``"separate"`` (the code: five calls, target, source, pose-changed,
  AU-changed, rebuilt target, each with its own batch statistics).

Fixed to the code (no switch; the paper does not say otherwise): every convolution has a bias; the
decoder is ``log2(H) - 1`` blocks of Upsample(x2, bilinear, ``align_corners=False``, PyTorch 0.4.1's
default) -> Conv3x3 -> BN -> ReLU, then Upsample and a Conv3x3 to 3 channels; the sparsity L1 is
taken on the *clamped* AU displacement (``clamp(grid + flow) - grid``: the part of the field that
stays inside the image, which is what the warp uses).

Settings that make a small model learn on a CPU budget (the paper's value in brackets; the ``cpu``
profile changes them, the chapter measures each): ``max_displacement`` [1.0, half the image],
``zero_init_flow`` [False: the last decoder conv starts at zero so the untrained fields are zero,
not pixels of noise], ``embedding_loss`` [``"l2"``; ``"scaled"`` divides each squared distance by
the batch variance of the reference code, so shrinking the codes cannot lower it], ``pose_first``
[False; True: during the training loop's reconstruction-only warm-up the target is rebuilt with the
pose field alone], ``composition`` [``"mix"``; ``"add"``: the target is rebuilt with ``tau_A + tau_P``.
A per-pixel convex mix cannot express a face that turns *and* smiles, where the true motion is the
sum of the two (SynthAU's true AU and pose fields add up to its true target motion up to the error of
composing two motions by a sum), so under the mix the AU field is paid for nothing wherever the head also
moves], ``photometric`` [``"l1"``; ``"robust"``: ``(r^2 + 1e-6)^0.2`` per pixel, which lets pixels no
warp explains (the background the head uncovers) pull the fields less than the face does].

Loss weights keep the authors' ratio: reconstruction 10x the consistency terms, 100x the L1
sparsity term on ``tau_A`` (code: 10, 1, 0.1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from au_lib.profiles import pick

EMBED_DIM = 256
ROBUST_POWER, ROBUST_EPS = 0.2, 1e-6
"""The robust photometric penalty ``(r^2 + eps)^power`` (``photometric="robust"``)."""


@dataclass(frozen=True)
class TCAELossWeights:
    """Weights of the TCAE loss terms (code values; the author's ratio 10 : 1 : 0.1)."""

    recon: float = 10.0          # L1 of the rebuilt target
    embedding: float = 1.0       # each of the four embedding-consistency terms (squared L2)
    cycle: float = 1.0           # each of the two cycle (morph-back) L1 terms
    sparsity: float = 0.1        # L1 of the AU displacement (in normalised units, as the code)
    output: float = 1.0          # the code's extra consistency of the rebuilt target (if enabled)


@dataclass(frozen=True)
class TCAEConfig:
    """Sizes and switches of a TCAE model.

    ``image_size`` must equal ``2 ** (len(trunk_channels) + len(branch_channels))`` (each conv halves
    the size down to 1x1) and ``len(decoder_channels)`` must be ``log2(image_size) - 1`` (each block
    doubles the size; a last upsampling before the output convolution reaches the image size).
    """

    image_size: int = 256
    in_channels: int = 3
    trunk_channels: tuple[int, ...] = (32, 64, 128, 256, 256)
    branch_channels: tuple[int, ...] = (256, 256, EMBED_DIM)
    decoder_channels: tuple[int, ...] = (256, 256, 256, 256, 128, 64, 32)
    max_displacement: float = 1.0   # tanh bound in normalised units (1.0 = half the image, as the code)
    attention: str = "softmax"       # "softmax" (paper) | "tanh_softmax" (official code)
    detach_cycle_input: bool = False
    output_consistency: bool = False
    curriculum: tuple[float, float] | None = None  # the code: (0.0, 0.5), moved by the training loop
    encoder_calls: str = "batched"   # "batched" | "separate" (official: five calls)
    zero_init_flow: bool = False     # last decoder conv initialised to zero (fields start at 0)
    embedding_loss: str = "l2"       # "l2" (paper, code) | "scaled" (divided by the code's batch variance)
    pose_first: bool = False         # while the other terms are off (aux_scale 0) rebuild the target with tau_P alone
                                     # (head motion goes to the pose branch before the AU branch can take it)
    composition: str = "mix"         # "mix" (paper: per-pixel softmax mix of tau_A and tau_P) | "add" (tau_A + tau_P)
    photometric: str = "l1"          # "l1" (paper, code) | "robust": (r^2 + 1e-6)^0.2 per pixel (reconstruction, cycles)
    padding_mode: str = "border"     # the code clamps the grid to [-1, 1]: border sampling
    weights: TCAELossWeights = field(default_factory=TCAELossWeights)

    def __post_init__(self) -> None:
        depth = len(self.trunk_channels) + len(self.branch_channels)
        if self.image_size != 2 ** depth:
            raise ValueError(f"TCAEConfig: image_size={self.image_size} needs {int(math.log2(max(self.image_size, 1)))} "
                             f"stride-2 convs, got trunk {len(self.trunk_channels)} + branch {len(self.branch_channels)}")
        if len(self.decoder_channels) != depth - 1:
            raise ValueError(f"TCAEConfig: decoder_channels needs {depth - 1} entries for image_size={self.image_size} "
                             f"(then one upsampling and the output conv), got {len(self.decoder_channels)}")
        if self.attention not in ("softmax", "tanh_softmax"):
            raise ValueError(f"TCAEConfig: attention must be 'softmax' or 'tanh_softmax', got {self.attention!r}")
        if self.curriculum is not None:
            lo, hi = self.curriculum
            if not 0.0 <= lo < hi <= 1.0:
                raise ValueError(f"TCAEConfig: curriculum window must satisfy 0 <= lo < hi <= 1, got {self.curriculum}")
        if self.encoder_calls not in ("batched", "separate"):
            raise ValueError(f"TCAEConfig: encoder_calls must be 'batched' or 'separate', got {self.encoder_calls!r}")
        if self.composition not in ("mix", "add"):
            raise ValueError(f"TCAEConfig: composition must be 'mix' or 'add', got {self.composition!r}")
        if self.photometric not in ("l1", "robust"):
            raise ValueError(f"TCAEConfig: photometric must be 'l1' or 'robust', got {self.photometric!r}")
        if self.embedding_loss not in ("l2", "scaled"):
            raise ValueError(f"TCAEConfig: embedding_loss must be 'l2' or 'scaled', got {self.embedding_loss!r}")
        if not self.max_displacement > 0:
            raise ValueError(f"TCAEConfig: max_displacement must be > 0, got {self.max_displacement}")

    @property
    def embed_dim(self) -> int:
        return self.branch_channels[-1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "TCAEConfig":
        d = dict(d)
        w = d.pop("weights", {})
        for k in ("trunk_channels", "branch_channels", "decoder_channels"):
            if k in d:
                d[k] = tuple(d[k])
        if d.get("curriculum") is not None:
            d["curriculum"] = tuple(d["curriculum"])
        return cls(**d, weights=TCAELossWeights(**w) if isinstance(w, dict) else w)


TCAE_PROFILES: dict[str, TCAEConfig] = {
    # CI: 32 px, tiny widths (embeddings stay 256-d so the probes see the same interface).
    "smoke": TCAEConfig(image_size=32, trunk_channels=(8, 16, 32), branch_channels=(64, EMBED_DIM),
                        decoder_channels=(64, 32, 16, 8), max_displacement=0.25, zero_init_flow=True,
                        embedding_loss="scaled", composition="add"),
    # A laptop: 64 px, about a quarter of the paper's widths; fields bounded to +-8 px and starting at
    # zero, summed rather than mixed, a robust photometric penalty (see the module docstring; the
    # chapter measures what each setting does).
    "cpu": TCAEConfig(image_size=64, trunk_channels=(16, 32, 64, 128), branch_channels=(256, EMBED_DIM),
                      decoder_channels=(256, 128, 64, 32, 16), max_displacement=0.25, zero_init_flow=True,
                      embedding_loss="scaled", pose_first=True, composition="add", photometric="robust"),
    # The paper / official code: 256x256, five trunk convs, three per branch, seven decoder blocks
    # (512->256->256->256->256->128->64->32), then Upsample and the 32->3 output conv.
    "paper": TCAEConfig(),
}

PAPER_SETTINGS: dict[str, object] = {"max_displacement": 1.0, "zero_init_flow": False, "embedding_loss": "l2",
                                   "pose_first": False, "composition": "mix", "photometric": "l1"}
"""The paper's (and the code's) values of the settings the ``cpu`` profile changes to make a small model learn."""

OFFICIAL_SWITCHES: dict[str, object] = {"attention": "tanh_softmax", "detach_cycle_input": True,
                                        "output_consistency": True, "curriculum": (0.0, 0.5),
                                        "encoder_calls": "separate", **PAPER_SETTINGS}
"""Every model switch set as the released code has it (``train-tcae --official``)."""


def tcae_config(profile: str | None = None, **overrides) -> TCAEConfig:
    """The model configuration of ``profile`` (default: ``$AU_PROFILE``), with field overrides."""
    return pick(TCAE_PROFILES, profile, **overrides)


def _down(cin: int, cout: int, last: bool = False) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 4, 2, 1)  # with bias, as the code
    return nn.Sequential(conv) if last else nn.Sequential(conv, nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True))


class TCAEEncoder(nn.Module):
    """Shared conv trunk and two branches: ``x[B,3,H,W] -> (au_emb[B,D], pose_emb[B,D])``.

    4x4 stride-2 convs with BN + LeakyReLU(0.2); the last conv of each branch has no activation
    (as ``Gen_sep_feature`` in the official code).
    """

    def __init__(self, cfg: TCAEConfig) -> None:
        super().__init__()
        chans = (cfg.in_channels,) + tuple(cfg.trunk_channels)
        self.trunk = nn.Sequential(*[_down(a, b) for a, b in zip(chans[:-1], chans[1:])])

        def branch() -> nn.Sequential:
            bc = (chans[-1],) + tuple(cfg.branch_channels)
            n = len(bc) - 1
            return nn.Sequential(*[_down(a, b, last=(i == n - 1)) for i, (a, b) in enumerate(zip(bc[:-1], bc[1:]))])

        self.au_branch = branch()
        self.pose_branch = branch()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.au_branch(h).flatten(1), self.pose_branch(h).flatten(1)


class TCAEDecoder(nn.Module):
    """``[emb_a, emb_b]`` (``B x 2D``) -> 3 maps at image resolution: 2 displacement + 1 attention logit.

    ReLU on the input, then ``len(decoder_channels)`` blocks of ``Upsample(x2, bilinear) -> Conv3x3 ->
    BN -> ReLU``, one more ``Upsample(x2)`` and a Conv3x3 to 3 channels (``generate_decoder_layers``
    of the code: 7 blocks at 256 px). The displacement is ``max_displacement * tanh`` in normalised
    units, returned in **pixels** (paper convention); the attention logit is returned raw.
    """

    def __init__(self, cfg: TCAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        chans = (2 * cfg.embed_dim,) + tuple(cfg.decoder_channels)
        layers: list[nn.Module] = [nn.ReLU()]
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                       nn.Conv2d(a, b, 3, 1, 1), nn.BatchNorm2d(b), nn.ReLU(True)]
        out = nn.Conv2d(chans[-1], 3, 3, 1, 1)
        if cfg.zero_init_flow:  # fields (and attention logits) start at exactly zero
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
        layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), out]
        self.net = nn.Sequential(*layers)

    def forward(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.cat([emb_a, emb_b], dim=1)[:, :, None, None]
        out = self.net(z)
        # normalised offset in (-m, m); the official code's sign is x_hat = x + flow: flip to pixels.
        from au_lib.ops.warp import official_flow_to_displacement

        flow = self.cfg.max_displacement * torch.tanh(out[:, :2].float())
        return official_flow_to_displacement(flow), out[:, 2:3].float()


@dataclass
class TCAEOutput:
    """Everything one forward pass of :meth:`TCAE.forward` produces (tensors ``B x ...``)."""

    disp_au: torch.Tensor        # B,2,H,W pixels: source -> AU-changed
    disp_pose: torch.Tensor      # B,2,H,W pixels: source -> pose-changed
    disp: torch.Tensor           # B,2,H,W pixels: attention mix, source -> target
    attention: torch.Tensor      # B,2,H,W softmax weights (AU, pose)
    recon: torch.Tensor          # B,C,H,W rebuilt target
    au_changed: torch.Tensor     # B,C,H,W
    pose_changed: torch.Tensor   # B,C,H,W
    emb: dict = field(default_factory=dict)


class TCAE(nn.Module):
    """The twin-cycle autoencoder. ``model(source, target)`` -> :class:`TCAEOutput`;
    ``model.losses(source, target)`` -> dict of loss terms with ``"total"``."""

    def __init__(self, cfg: TCAEConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or tcae_config()
        self.encoder = TCAEEncoder(self.cfg)
        self.au_decoder = TCAEDecoder(self.cfg)
        self.pose_decoder = TCAEDecoder(self.cfg)

    # -- small pieces --------------------------------------------------------------------------
    def _check(self, x: torch.Tensor, name: str) -> None:
        c, s = self.cfg.in_channels, self.cfg.image_size
        if x.ndim != 4 or x.shape[1] != c or x.shape[-2:] != (s, s):
            raise ValueError(f"TCAE: {name} must be Bx{c}x{s}x{s} (image_size={s}), got {tuple(x.shape)}")

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x[B,3,H,W]`` in [0,1] -> ``(au_emb[B,256], pose_emb[B,256])`` for linear probes."""
        self._check(x, "x")
        return self.encoder(x)

    def warp(self, img: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
        from au_lib.ops.warp import warp

        return warp(img, disp.to(img.dtype), padding_mode=self.cfg.padding_mode)

    def mix(self, disp_au: torch.Tensor, logit_au: torch.Tensor, disp_pose: torch.Tensor,
            logit_pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The overall displacement -> ``(disp[B,2,H,W], weights[B,2,H,W])``: the paper's per-pixel softmax
        mix of the two fields (``composition="mix"``), or their sum (``"add"``: both weights 1, the
        attention logits unused)."""
        from au_lib.ops.warp import mix_displacements

        if self.cfg.composition == "add":
            ones = torch.ones_like(logit_au)
            return disp_au + disp_pose, torch.cat([ones, ones], 1)
        if self.cfg.attention == "tanh_softmax":
            logit_au, logit_pose = torch.tanh(logit_au), torch.tanh(logit_pose)
        return mix_displacements(disp_au, disp_pose, logit_au, logit_pose)

    # -- forward ---------------------------------------------------------------------------------
    def _encode_pair(self, source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(phi_s, phi_t, psi_s, psi_t)``: one encoder call (``batched``) or the code's two."""
        if self.cfg.encoder_calls == "separate":
            psi_t, phi_t = self.encoder(target)[::-1]   # the code encodes the target first
            psi_s, phi_s = self.encoder(source)[::-1]
            return phi_s, phi_t, psi_s, psi_t
        B = source.shape[0]
        phi, psi = self.encoder(torch.cat([source, target]))
        return phi[:B], phi[B:], psi[:B], psi[B:]

    def forward(self, source: torch.Tensor, target: torch.Tensor, pose_only: bool = False) -> TCAEOutput:
        """Predict displacements and warped images for ``source, target`` (``B x C x H x W``).
        ``pose_only`` rebuilds the target with the pose field alone (attention 0 / 1)."""
        self._check(source, "source")
        self._check(target, "target")
        B = source.shape[0]
        phi_s, phi_t, psi_s, psi_t = self._encode_pair(source, target)
        disp_au, logit_au = self.au_decoder(phi_s, phi_t)
        disp_pose, logit_pose = self.pose_decoder(psi_s, psi_t)
        disp, w = self.mix(disp_au, logit_au, disp_pose, logit_pose)
        if pose_only:
            disp, w = disp_pose, torch.cat([torch.zeros_like(logit_pose), torch.ones_like(logit_pose)], 1)
        imgs = self.warp(torch.cat([source] * 3), torch.cat([disp, disp_au, disp_pose]))
        recon, au_changed, pose_changed = imgs[:B], imgs[B:2 * B], imgs[2 * B:]
        return TCAEOutput(disp_au, disp_pose, disp, w, recon, au_changed, pose_changed,
                          emb={"phi_s": phi_s, "phi_t": phi_t, "psi_s": psi_s, "psi_t": psi_t})

    def _encode_changed(self, out: TCAEOutput) -> dict[str, torch.Tensor]:
        """Codes of the changed images (and of the rebuilt target if ``output_consistency``)."""
        names = ["P", "A"] + (["R"] if self.cfg.output_consistency else [])
        imgs = {"P": out.pose_changed, "A": out.au_changed, "R": out.recon}
        codes: dict[str, torch.Tensor] = {}
        if self.cfg.encoder_calls == "separate":  # the code's order: pose-changed, AU-changed, rebuilt
            for n in names:
                codes[f"phi_{n}"], codes[f"psi_{n}"] = self.encoder(imgs[n])
            return codes
        B = out.recon.shape[0]
        phi, psi = self.encoder(torch.cat([imgs[n] for n in names]))
        for k, n in enumerate(names):
            codes[f"phi_{n}"], codes[f"psi_{n}"] = phi[k * B:(k + 1) * B], psi[k * B:(k + 1) * B]
        return codes

    def sparsity(self, disp_au: torch.Tensor) -> torch.Tensor:
        """Per-sample mean ``|tau_A|`` in normalised units, on the part of the field that stays inside
        the image (the code's ``clamp(grid + flow) - grid``) -> ``[B]``."""
        H, W = disp_au.shape[-2:]
        dev = disp_au.device
        xs = torch.arange(W, device=dev, dtype=torch.float32).view(1, 1, W)
        ys = torch.arange(H, device=dev, dtype=torch.float32).view(1, H, 1)
        dx = xs - (xs - disp_au[:, 0].float()).clamp(0, W - 1)   # pull: content comes from x - dx
        dy = ys - (ys - disp_au[:, 1].float()).clamp(0, H - 1)
        return ((dx * (2.0 / (W - 1))).abs() + (dy * (2.0 / (H - 1))).abs()).flatten(1).mean(1) / 2

    def photometric_error(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-sample photometric error of two images ``B x C x H x W`` -> ``[B]``: the mean absolute
        difference (``photometric="l1"``, the paper's), or the mean of the robust penalty
        ``(r^2 + 1e-6)^0.2`` (``"robust"``, the generalised Charbonnier of optical-flow work; a perfect
        match scores the floor ``1e-6^0.2 = 0.063``). The robust penalty grows much more slowly than
        ``|r|`` for large residuals, so pixels no warp can explain (the background uncovered as the head
        moves, the frame's edges) pull the fields less than the face does."""
        r = a.float() - b.float()
        if self.cfg.photometric == "robust":
            return (r * r + ROBUST_EPS).pow(ROBUST_POWER).flatten(1).mean(1)
        return r.abs().flatten(1).mean(1)

    def _code_distance(self, a: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Per-sample squared L2 between codes, mean over dims (``embedding_loss="l2"``), or divided by
        the detached batch variance of ``ref`` (``"scaled"``: shrinking every code cannot lower it)."""
        d = (a.float() - ref.float()).pow(2).mean(1)
        if self.cfg.embedding_loss == "scaled":
            d = d / (ref.detach().float().var(0, unbiased=False).mean() + 1e-6)
        return d

    def losses(self, source: torch.Tensor, target: torch.Tensor,
               curriculum: tuple[float, float] | None = None, aux_scale: float = 1.0,
               pose_only: bool | None = None) -> dict[str, torch.Tensor]:
        """All TCAE loss terms (per-batch means) and their weighted ``total``.

        Terms: ``recon`` the photometric error of ``T`` and ``warp(S, tau)`` (:meth:`photometric_error`); ``emb_*`` squared-L2 embedding consistency (AU-changed
        image: AU of target, pose of source; pose-changed image: pose of target, AU of source);
        ``cycle_au``/``cycle_pose`` the same error of ``S`` and ``warp(S_A, tau_-A)`` etc.; ``sparsity`` mean |tau_A| in
        normalised units (:meth:`sparsity`); ``out_*`` the code's extra terms if enabled.
        ``curriculum`` (default: the configuration's) is the window ``(lo, hi)`` of samples, ranked
        per term, that each term averages over (the code's ``sort()[int(lo B):int(hi B)]``).
        ``aux_scale`` multiplies the weight of every term but the reconstruction (a warm-up; 1 = the
        configured weights); while it is 0, ``pose_first`` rebuilds the target with the pose field alone
        (``pose_only`` True/False overrides that rule; the training loop's ``pose_warmup`` uses it).
        """
        cfg, w = self.cfg, self.cfg.weights
        if pose_only is None:
            pose_only = cfg.pose_first and aux_scale == 0
        out = self.forward(source, target, pose_only=pose_only)
        e = out.emb
        c = self._encode_changed(out)
        dist = self._code_distance

        photo = self.photometric_error
        terms = {
            "recon": photo(out.recon, target),
            "emb_au_img_au": dist(c["phi_A"], e["phi_t"]),
            "emb_au_img_pose": dist(c["psi_A"], e["psi_s"]),
            "emb_pose_img_pose": dist(c["psi_P"], e["psi_t"]),
            "emb_pose_img_au": dist(c["phi_P"], e["phi_s"]),
        }
        # morph back: decoder inputs swapped to [changed embedding, source embedding]
        back_pose, _ = self.pose_decoder(c["psi_P"], e["psi_s"])
        back_au, _ = self.au_decoder(c["phi_A"], e["phi_s"])
        src_A = out.au_changed.detach() if cfg.detach_cycle_input else out.au_changed
        src_P = out.pose_changed.detach() if cfg.detach_cycle_input else out.pose_changed
        B = source.shape[0]
        back = self.warp(torch.cat([src_A, src_P]), torch.cat([back_au, back_pose]))
        terms["cycle_au"] = photo(back[:B], source)
        terms["cycle_pose"] = photo(back[B:], source)
        terms["sparsity"] = self.sparsity(out.disp_au)
        if cfg.output_consistency:
            terms["out_au"] = dist(c["phi_R"], e["phi_t"])
            terms["out_pose"] = dist(c["psi_R"], e["psi_t"])
        weight = {"recon": w.recon, "cycle_au": w.cycle, "cycle_pose": w.cycle, "sparsity": w.sparsity,
                  "out_au": w.output, "out_pose": w.output}
        window = curriculum if curriculum is not None else cfg.curriculum
        result: dict[str, torch.Tensor] = {}
        total = source.new_zeros((), dtype=torch.float32)
        for name, per_sample in terms.items():
            red = curriculum_mean(per_sample, window)
            result[name] = red.detach()
            total = total + weight.get(name, w.embedding) * (1.0 if name == "recon" else aux_scale) * red
        result["total"] = total
        result["_output"] = out  # type: ignore[assignment]
        return result


def curriculum_mean(x: torch.Tensor, window: tuple[float, float] | None) -> torch.Tensor:
    """Mean of ``x[B]`` over the samples ranked ``int(lo B)`` to ``int(hi B)`` (ascending), the code's
    curriculum; the plain mean if ``window`` is None. At least one sample is kept."""
    if window is None:
        return x.mean()
    n = x.numel()
    lo, hi = int(window[0] * n), int(window[1] * n)
    hi = max(hi, lo + 1)
    lo = min(lo, n - 1)
    return x.sort().values[lo:min(hi, n)].mean()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_tcae(checkpoint: str | Path | dict, map_location: str | torch.device = "cpu") -> TCAE:
    """Rebuild a :class:`TCAE` from a checkpoint written by :mod:`au_lib.train.tcae` (eval mode).

    Raises:
        FileNotFoundError: naming the path if it does not exist.
        ValueError: if the file is not a TCAE checkpoint.
    """
    if isinstance(checkpoint, dict):
        state = checkpoint
        where = "<dict>"
    else:
        from au_lib.cache import load_torch_file

        path = Path(checkpoint)
        if not path.exists():
            raise FileNotFoundError(f"TCAE checkpoint not found: {path}")
        state = load_torch_file(path, what="TCAE checkpoint", map_location=map_location)
        where = str(path)
    if not isinstance(state, dict) or "model_config" not in state or "model" not in state:
        raise ValueError(f"{where}: not a TCAE checkpoint (needs 'model_config' and 'model' entries)")
    model = TCAE(TCAEConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval()


__all__ = ["EMBED_DIM", "TCAE", "TCAEConfig", "TCAELossWeights", "TCAEOutput", "TCAE_PROFILES", "PAPER_SETTINGS",
           "OFFICIAL_SWITCHES", "tcae_config", "curriculum_mean", "load_tcae", "count_parameters"]

"""Training TCAE on frame pairs: data, the paper's crop jitter, the loop (checkpoints, resume, AMP, DDP).

```python
from au_lib.train.tcae import train_tcae, train_config
run = train_tcae(train_config("cpu"), "runs/tcae", data="synthau")   # resumes if run/last.pt exists
```

Data sources (``data=``): ``"synthau"`` (:func:`au_lib.data.synth.open_pairs`, with ground truth),
``"video"`` (:func:`au_lib.data.video.open_video_pairs`, real frames), ``"toy"`` (:class:`ToyPairs`,
random smooth textures moved by a known global shift + local bump; for tests), or any map-style
dataset yielding ``source``/``target`` tensors ``3xHxW`` in [0, 1].

Augmentation as the official code (``TCAE_data.py``, ``jittering=True``; ``jitter="independent"``):
centre crop 224/256 of the face, then a random crop of side ``s`` in [200, 224)/256 placed
**independently** in source and target, resized back; the independent placement adds a random
relative translation (up to +-6 px at 64 px) that the pose branch must absorb. (The code draws ``s``
once per epoch; here once per pair.) ``jitter="shared"`` places the same crop in both frames (scale
and position augmentation without invented motion); ``"off"`` uses the frames as they are.

Schedules (``schedule=``): ``"none"`` (constant learning rate, the code's first phase), ``"cosine"``
(warm-up then half cosine, per update) and ``"official"``: the code's loop, where every
``validate_every`` updates (the code's epoch) the validation loss is computed and, after a
15-validation plateau, the curriculum window moves by 0.1 until its top reaches 0.85, after which
``ReduceLROnPlateau(patience=10)`` takes over (:class:`OfficialSchedule`).

Distributed: launched with ``torchrun --nproc_per_node N -m au_lib train-tcae ...`` the command sets
up the process group (:func:`au_lib.train.engine.distributed`); inside it :func:`train_tcae` shards
the pairs with a ``DistributedSampler`` and wraps the model in DDP; rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
import torch.nn as nn

from au_lib.models.tcae import OFFICIAL_SWITCHES, TCAE, TCAEConfig, tcae_config
from au_lib.profiles import current_profile, pick
from au_lib.train import engine


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TCAETrainConfig:
    """One TCAE training run. ``steps`` counts optimiser updates (global batch = ``batch_size`` x world)."""

    model: TCAEConfig
    batch_size: int = 64
    steps: int = 100_000
    optimizer: str = "sgd"          # "sgd" (official: momentum 0.9, lr 1e-3) | "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    jitter: str = "independent"     # "independent" (paper, code) | "shared" | "off"
    crop_range: tuple[float, float] = (200 / 256, 224 / 256)
    centre_crop: float = 224 / 256
    checkpoint_every: int = 1000    # also kept as ckpt_<step>.pt for evaluation over training
    log_every: int = 50
    num_workers: int = 4
    seed: int = 0
    amp: bool | str = True          # True: bf16 on CUDA only; "bf16" also on CPU; "fp16"; False
    pool_pairs: int | None = None   # SynthAU: render this many pairs once and cache them (CPU budgets); None: stream
    aux_warmup: int = 0             # updates of reconstruction only, then the other terms ramp in over as many
    pose_warmup: int | None = None  # with the model's pose_first: updates that rebuild the target with the pose
                                    # field alone (None: all of aux_warmup); after it both fields rebuild it
    schedule: str = "none"          # "none" (constant lr) | "cosine" | "official" (curriculum + plateau)
    warmup_steps: int = 0           # "cosine": linear warm-up updates
    validate_every: int = 0         # updates per validation ("official": the code's epoch); 0: never
    val_pairs: int = 0              # held-out pairs (carved from the pool or the first items) for validation
    plateau_interval: int = 15      # "official": validations without a new best before the window moves
    curriculum_step: float = 0.1    # "official": how far the window moves
    curriculum_top: float = 0.85    # "official": the window moves while its top is below this
    plateau_patience: int = 10      # "official": ReduceLROnPlateau patience (in plateau signals)

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"TCAETrainConfig: optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.batch_size < 1 or self.steps < 0:
            raise ValueError(f"TCAETrainConfig: batch_size must be >= 1 and steps >= 0, "
                             f"got {self.batch_size}, {self.steps}")
        if self.jitter not in ("independent", "shared", "off"):
            raise ValueError(f"TCAETrainConfig: jitter must be 'independent', 'shared' or 'off', got {self.jitter!r}")
        if self.schedule not in ("none", "cosine", "official"):
            raise ValueError(f"TCAETrainConfig: schedule must be 'none', 'cosine' or 'official', got {self.schedule!r}")
        if self.pose_warmup is not None and self.pose_warmup < 0:
            raise ValueError(f"TCAETrainConfig: pose_warmup must be >= 0 or None, got {self.pose_warmup}")
        if self.schedule == "official" and (self.validate_every < 1 or self.val_pairs < 1):
            raise ValueError("TCAETrainConfig: schedule='official' needs validate_every >= 1 and val_pairs >= 1")
        lo, hi = self.crop_range
        if not 0 < lo <= hi <= self.centre_crop <= 1:
            raise ValueError(f"TCAETrainConfig: need 0 < crop_range[0] <= crop_range[1] <= centre_crop <= 1, "
                             f"got {self.crop_range}, {self.centre_crop}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "TCAETrainConfig":
        d = dict(d)
        d["model"] = TCAEConfig.from_dict(d["model"])
        d["crop_range"] = tuple(d["crop_range"])
        if isinstance(d.get("jitter"), bool):  # written before the jitter modes
            d["jitter"] = "independent" if d["jitter"] else "off"
        return cls(**d)


TRAIN_PROFILES: dict[str, TCAETrainConfig] = {
    "smoke": TCAETrainConfig(model=tcae_config("smoke"), batch_size=8, steps=40, optimizer="adam", lr=2e-3,
                             jitter="shared", checkpoint_every=20, log_every=10, num_workers=0, pool_pairs=48,
                             schedule="cosine", warmup_steps=4),
    # Adam with a cosine schedule: the official SGD at lr 1e-3 barely moves in the few thousand
    # updates a laptop affords. No crops: the code's independent crops invent up to +-6 px of
    # motion at 64 px, more than the faces move, and SynthAU's crops are already aligned.
    # (PAPER_TRAINING restores the code's values.)
    # 4,000 updates (1,827 s on one core with a second training job on the other): 2,000 of reconstruction alone, the first 1,400 with
    # the pose field alone (it takes the head motion), then both fields; the other terms ramp in over the
    # last 2,000, while the learning rate decays (ramped in at a high rate they drove both fields to zero).
    "cpu": TCAETrainConfig(model=tcae_config("cpu"), batch_size=16, steps=4000, optimizer="adam", lr=1e-3,
                           jitter="off", checkpoint_every=250, log_every=50, num_workers=0, pool_pairs=3000,
                           schedule="cosine", warmup_steps=50, aux_warmup=2000, pose_warmup=1400),
    # The official code: SGD(momentum 0.9, lr 1e-3), batch 64, 256x256, its curriculum and plateaus.
    "paper": TCAETrainConfig(model=tcae_config("paper"), batch_size=64, steps=100_000, optimizer="sgd", lr=1e-3,
                             checkpoint_every=5000, log_every=100, num_workers=8, schedule="official",
                             validate_every=1000, val_pairs=512),
}

PAPER_TRAINING: dict[str, Any] = {"jitter": "independent", "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9,
                                  "schedule": "none", "aux_warmup": 0}
"""The code's training values of the settings the ``cpu`` profile changes (its curriculum and plateau
schedule need a validation set: ``--official`` adds them)."""

OFFICIAL_TRAINING: dict[str, Any] = {**PAPER_TRAINING, "schedule": "official"}
"""Training settings of the released code (with :data:`OFFICIAL_SWITCHES` for the model)."""

def train_config(profile: str | None = None, model_overrides: Mapping[str, Any] | None = None,
                 official: bool = False, **overrides) -> TCAETrainConfig:
    """The training configuration of ``profile`` with field overrides (``model_overrides`` for the model).

    ``official=True`` applies the released code's model switches and training settings
    (:data:`~au_lib.models.tcae.OFFICIAL_SWITCHES`, :data:`OFFICIAL_TRAINING`; a validation set of
    ``val_pairs`` and a ``validate_every`` are added if the profile has none) before the overrides.
    """
    cfg = pick(TRAIN_PROFILES, profile)
    if official:
        cfg = replace(cfg, model=replace(cfg.model, **OFFICIAL_SWITCHES), **OFFICIAL_TRAINING,
                      validate_every=cfg.validate_every or max(1, cfg.checkpoint_every // 5),
                      val_pairs=cfg.val_pairs or 4 * cfg.batch_size)
    if model_overrides:
        cfg = replace(cfg, model=replace(cfg.model, **model_overrides))
    return replace(cfg, **overrides) if overrides else cfg


def with_length(cfg: TCAETrainConfig, steps: int) -> TCAETrainConfig:
    """``cfg`` run for ``steps`` updates with its phases scaled alike: the learning-rate warm-up, the
    reconstruction-only warm-up (``aux_warmup``) and ``pose_warmup`` keep their share of the run."""
    if steps < 1:
        raise ValueError(f"with_length: steps must be >= 1, got {steps}")
    f = steps / max(cfg.steps, 1)
    return replace(cfg, steps=steps, warmup_steps=round(cfg.warmup_steps * f), aux_warmup=round(cfg.aux_warmup * f),
                   pose_warmup=None if cfg.pose_warmup is None else round(cfg.pose_warmup * f))


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------

class ToyPairs(torch.utils.data.Dataset):
    """Random smooth textures moved by a known global shift ("pose") plus a local bump ("AU").

    Item ``i`` is a deterministic function of ``(seed, i)``. Keys as the SynthAU pairs: ``source``,
    ``target``, ``au_changed``, ``pose_changed`` (``3xHxW``), ``disp_au``, ``disp_pose``,
    ``disp_target`` (``2xHxW`` pixels; the target displacement is the sum of the two, an
    approximation of their composition that is exact where the bump is zero), ``subject``.
    ``identity=True`` makes ``target == source`` (zero motion).
    """

    def __init__(self, n: int = 64, image_size: int = 32, max_shift: float = 2.0, bump: float = 2.0,
                 seed: int = 0, identity: bool = False) -> None:
        if n < 1 or image_size < 8:
            raise ValueError(f"ToyPairs: need n >= 1 and image_size >= 8, got {n}, {image_size}")
        self.n, self.size, self.max_shift, self.bump, self.seed, self.identity = n, image_size, max_shift, bump, seed, identity

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        from au_lib.ops.warp import warp

        if not 0 <= i < self.n:
            raise IndexError(i)
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)
        S = self.size
        low = torch.rand(1, 3, 6, 6, generator=g)
        img = torch.nn.functional.interpolate(low, size=(S, S), mode="bicubic", align_corners=True).clamp(0, 1)
        yy, xx = torch.meshgrid(torch.arange(S, dtype=torch.float32), torch.arange(S, dtype=torch.float32),
                                indexing="ij")
        shift = (torch.rand(2, generator=g) * 2 - 1) * self.max_shift
        d_pose = shift.view(1, 2, 1, 1).expand(1, 2, S, S).clone()
        c = (torch.rand(2, generator=g) * 0.5 + 0.25) * S
        amp = (torch.rand(2, generator=g) * 2 - 1) * self.bump
        bump = torch.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * (S / 8) ** 2))
        d_au = (amp.view(2, 1, 1) * bump).unsqueeze(0)
        if self.identity:
            d_pose, d_au = torch.zeros_like(d_pose), torch.zeros_like(d_au)
        d_tot = d_pose + d_au
        out = warp(img.expand(3, -1, -1, -1), torch.cat([d_tot, d_au, d_pose]), padding_mode="border")
        return {"source": img[0], "target": out[0], "au_changed": out[1], "pose_changed": out[2],
                "disp_au": d_au[0], "disp_pose": d_pose[0], "disp_target": d_tot[0],
                "subject": f"toy{i % 8}", "sequence": "toy", "frame": i}


def open_pair_data(data: str | torch.utils.data.Dataset, image_size: int, profile: str | None = None,
                   seed: int = 0, **options) -> torch.utils.data.Dataset:
    """Open a pair dataset by name (``synthau`` | ``video`` | ``toy``) or pass a dataset through.

    ``synthau``: :func:`au_lib.data.synth.open_pairs` (default ``view="pretrain"``); ``video``:
    :func:`au_lib.data.video.open_video_pairs` (options e.g. ``max_gap``); ``toy``: :class:`ToyPairs`.
    """
    if isinstance(data, torch.utils.data.Dataset):
        return data
    name = str(data).lower()
    if name in ("synthau", "synth"):
        from au_lib.data.synth import open_pairs

        options.setdefault("view", "pretrain")  # the pre-training pool; its subjects are in no other view
        return open_pairs(image_size=image_size, profile=profile, seed=seed, **options)
    if name == "video":
        from au_lib.data.video import open_video_pairs

        return open_video_pairs(image_size=image_size, profile=profile, seed=seed, **options)
    if name == "toy":
        return ToyPairs(image_size=image_size, seed=seed, **options)
    raise ValueError(f"unknown TCAE pair data {data!r}: choose synthau, video or toy")


class PairPool(torch.utils.data.Dataset):
    """A fixed set of pairs held as stacked tensors (non-tensor fields as lists)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = dict(data)
        self.n = len(self.data["source"])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.data.items()}


def pair_pool(dataset: torch.utils.data.Dataset, n: int, path: str | Path | None = None, seed: int = 0,
              progress: bool = True) -> PairPool:
    """``n`` pairs drawn without replacement (``seed``) from ``dataset``, rendered once and cached at
    ``path`` (atomic write; reused when present with the same ``n``). For on-the-fly renderers that
    are too slow to feed a CPU training loop."""
    from au_lib.provenance import atomic_torch_save

    bar = engine.progress

    if path is not None:
        from au_lib.cache import load_cached_torch

        def check(d) -> None:
            if len(d["source"]) != min(n, len(dataset)):
                raise ValueError(f"{len(d['source'])} pairs, expected {min(n, len(dataset))}")

        data = load_cached_torch(path, what="TCAE pair pool", check=check)
        if data is not None:
            return PairPool(data)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=g)[:n].sort().values.tolist()
    items = [dataset[i] for i in bar(idx, desc="render pairs", enabled=progress)]
    keep = [k for k, v in items[0].items() if isinstance(v, (torch.Tensor, str, int, float))]
    data = collate_pairs([{k: it[k] for k in keep} for it in items])
    if path is not None:
        atomic_torch_save(data, path)
    return PairPool(data)


def jitter_pairs(source: torch.Tensor, target: torch.Tensor, cfg: TCAETrainConfig,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's augmentation on a batch ``B x C x H x W``: centre crop ``centre_crop``, then crops of
    side ``s ~ U(crop_range)`` (one ``s`` per pair) at **independent** random positions in source and
    target (``cfg.jitter="independent"``; ``"shared"``: the same position in both), resized back to
    ``H x W`` (bilinear, ``torchvision.ops.roi_align``). ``"off"`` returns the inputs."""
    if cfg.jitter == "off":
        return source, target
    from torchvision.ops import roi_align

    B, _, H, W = source.shape
    s = torch.empty(B).uniform_(*cfg.crop_range, generator=generator)
    lo = (1 - cfg.centre_crop) / 2

    def boxes() -> torch.Tensor:
        ox = lo + torch.rand(B, generator=generator) * (cfg.centre_crop - s)
        oy = lo + torch.rand(B, generator=generator) * (cfg.centre_crop - s)
        b = torch.stack([torch.arange(B, dtype=torch.float32), ox * W, oy * H, (ox + s) * W, (oy + s) * H], 1)
        return b.to(source.device, source.dtype)

    b_src = boxes()
    b_tgt = b_src if cfg.jitter == "shared" else boxes()
    return (roi_align(source, b_src, (H, W), aligned=True, sampling_ratio=2),
            roi_align(target, b_tgt, (H, W), aligned=True, sampling_ratio=2))


def collate_pairs(items: list[dict]) -> dict:
    """Stack tensors, keep other fields as lists."""
    out: dict[str, Any] = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        out[k] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out


# ------------------------------------------------------------------------------------------------
# the step and the run (loop, checkpoints, resume, AMP, DDP, progress: au_lib.train.engine)
# ------------------------------------------------------------------------------------------------

class _LossModule(nn.Module):
    """Wraps :meth:`TCAE.losses` as ``forward`` so DDP sees one call per step."""

    def __init__(self, model: TCAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, source: torch.Tensor, target: torch.Tensor,
                curriculum: tuple[float, float] | None = None, aux_scale: float = 1.0,
                pose_only: bool | None = None) -> dict:
        return self.model.losses(source, target, curriculum, aux_scale, pose_only)


def tcae_step(cfg: TCAETrainConfig, device: torch.device, window: "OfficialSchedule | None" = None):
    """The TCAE step for :func:`au_lib.train.engine.train_one_epoch`: a batch of pairs -> the loss terms
    (``loss`` = ``total``). The jitter of update ``k`` is drawn from
    :func:`~au_lib.train.engine.step_generator` ``(seed, k, rank)``; ``window`` supplies the current
    curriculum window (the model configuration's if None)."""
    rank = engine.dist_info().rank

    def step_fn(model: nn.Module, batch: dict, step: int, micro: int) -> dict:
        src = batch["source"].to(device, non_blocking=True)
        tgt = batch["target"].to(device, non_blocking=True)
        src, tgt = jitter_pairs(src, tgt, cfg, engine.step_generator(cfg.seed, step, rank))
        terms = model(src, tgt, window.window if window is not None else None, aux_scale(cfg, step), pose_only(cfg, step))
        return {"loss": terms["total"], **terms}
    return step_fn


def aux_scale(cfg: TCAETrainConfig, step: int) -> float:
    """Weight factor of the non-reconstruction terms at update ``step``: 0 for the first
    ``aux_warmup`` updates (the fields first learn to explain the target), then a linear ramp to 1
    over as many updates; always 1 when ``aux_warmup`` is 0 (the paper)."""
    w = cfg.aux_warmup
    if w <= 0:
        return 1.0
    return float(min(1.0, max(0.0, (step - w) / w)))


def pose_only(cfg: TCAETrainConfig, step: int) -> bool | None:
    """Whether update ``step`` rebuilds the target with the pose field alone: ``None`` (the model's rule:
    ``pose_first`` while ``aux_scale`` is 0) unless ``pose_warmup`` is set, then ``pose_first`` for the
    first ``pose_warmup`` updates (after which both fields rebuild it, the other terms still off until
    ``aux_warmup``)."""
    if cfg.pose_warmup is None:
        return None
    return bool(cfg.model.pose_first and step < cfg.pose_warmup)


class OfficialSchedule:
    """The released code's training schedule (``run()`` with ``TrackLoss``), one call per validation.

    The code validates after every epoch. :meth:`update` takes that validation loss: a new best resets
    the plateau clock; after more than ``plateau_interval`` validations without a new best (and as
    long since the last move) the curriculum window ``(lo, hi)`` moves up by ``curriculum_step`` while
    ``hi < curriculum_top`` (and the clock restarts); once it is at the top, each such plateau signal
    steps ``ReduceLROnPlateau(patience=plateau_patience)`` with the validation loss instead.
    """

    def __init__(self, cfg: TCAETrainConfig, optimizer: torch.optim.Optimizer | None = None) -> None:
        self.cfg = cfg
        self.window: tuple[float, float] | None = cfg.model.curriculum
        self.plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=cfg.plateau_patience)
                        if optimizer is not None else None)
        self._reset()
        self.moves: list[tuple[int, tuple[float, float]]] = []

    def _reset(self) -> None:
        self.best, self.best_epoch, self.last_warm = float("inf"), -1, -1

    def update(self, loss: float, epoch: int) -> str | None:
        """Feed the validation loss of ``epoch``; returns ``"window"``/``"plateau"`` when it acted."""
        if loss < self.best:
            self.best, self.best_epoch, self.last_warm = loss, epoch, epoch
        i = self.cfg.plateau_interval
        if not (epoch - self.best_epoch > i and epoch - self.last_warm > i):
            return None
        self.last_warm = epoch
        if self.window is not None and self.window[1] < self.cfg.curriculum_top:
            step = self.cfg.curriculum_step
            self.window = (round(self.window[0] + step, 6), round(self.window[1] + step, 6))
            self.moves.append((epoch, self.window))
            self._reset()
            return "window"
        if self.plateau is not None:
            self.plateau.step(loss)
        return "plateau"

    def state_dict(self) -> dict:
        return {"window": self.window, "best": self.best, "best_epoch": self.best_epoch,
                "last_warm": self.last_warm, "moves": self.moves,
                "plateau": self.plateau.state_dict() if self.plateau is not None else None}

    def load_state_dict(self, state: Mapping) -> None:
        self.window = tuple(state["window"]) if state["window"] is not None else None
        self.best, self.best_epoch, self.last_warm = state["best"], state["best_epoch"], state["last_warm"]
        self.moves = [(int(e), tuple(w)) for e, w in state.get("moves", [])]
        if self.plateau is not None and state.get("plateau") is not None:
            self.plateau.load_state_dict(state["plateau"])


@torch.no_grad()
def validation_loss(model: TCAE, pairs: Mapping[str, torch.Tensor], cfg: TCAETrainConfig,
                    device: torch.device, batch_size: int | None = None) -> dict[str, float]:
    """Mean loss terms over a fixed set of pairs (eval mode, every sample, jitter from a fixed seed),
    as the code's ``val()``."""
    was = model.training
    model.eval()
    n = len(pairs["source"])
    bs = batch_size or cfg.batch_size
    meter = engine.Meter()
    for k, i in enumerate(range(0, n, bs)):
        src = pairs["source"][i:i + bs].to(device)
        tgt = pairs["target"][i:i + bs].to(device)
        src, tgt = jitter_pairs(src, tgt, cfg, engine.step_generator(cfg.seed, k, 0, stream=1))
        terms = model.losses(src, tgt, (0.0, 1.0))
        meter.add({k2: float(v) for k2, v in terms.items() if not k2.startswith("_")}, len(src))
    model.train(was)
    return meter.means()


def _make_optimizer(model: nn.Module, cfg: TCAETrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


class StepBatches:
    """Index batches for updates ``start, start + 1, ...`` (an endless iterable for ``batch_sampler``).

    Pass ``e`` over the data uses ``randperm(n)`` seeded with ``(seed, e)``; update ``k`` takes the
    ``k``-th global batch of ``batch_size * world`` indices (passes drop the remainder; smaller data
    repeats items within a batch) and rank ``r`` its ``r``-th share. Batches depend only on
    ``(seed, k)``, so resuming at ``start`` continues exactly where an uninterrupted run would be.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int = 0, rank: int = 0, world: int = 1) -> None:
        if n < 1:
            raise ValueError("StepBatches: the dataset is empty")
        self.n, self.bs, self.seed, self.start, self.rank, self.world = n, batch_size, seed, start, rank, world
        self.global_bs = batch_size * world
        self.per_pass = max(1, n // self.global_bs)

    def _perm(self, e: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + e)
        perm = torch.randperm(self.n, generator=g)
        if self.n < self.global_bs:  # tiny data: repeat it to fill one batch
            perm = perm.repeat(-(-self.global_bs // self.n))
        return perm

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start
        while True:
            e, j = divmod(k, self.per_pass)
            glob = self._perm(e)[j * self.global_bs:(j + 1) * self.global_bs]
            yield glob[self.rank * self.bs:(self.rank + 1) * self.bs].tolist()
            k += 1


NOT_BINDING = ("steps", "checkpoint_every", "log_every", "num_workers")
"""Config fields a resumed run may change (length, logging cadence, workers); the length only
when the learning rate does not depend on it (``schedule="cosine"`` binds ``steps``)."""


def not_binding(cfg: TCAETrainConfig) -> tuple[str, ...]:
    """The fields of ``cfg`` a resumed run may change (:data:`NOT_BINDING`, less ``steps`` under a cosine schedule)."""
    return tuple(k for k in NOT_BINDING if not (k == "steps" and cfg.schedule == "cosine"))


DEFAULT_DATA_OPTIONS: dict[str, dict] = {"synthau": {"lighting": "flat"}}
"""Data options used when ``train_tcae`` is given none: SynthAU pairs under ambient light, where a warp
with the true motion explains the target (under the scenes' light, shading changes no warp explains)."""


def binding_config(cfg: TCAETrainConfig, data: str, data_options: Mapping[str, Any] | None = None) -> dict:
    """What a checkpoint of ``cfg`` records and a resumed run must match: the training configuration,
    the data's name and its options (``progress`` aside; ``None`` means :data:`DEFAULT_DATA_OPTIONS`)."""
    if data_options is None:
        data_options = DEFAULT_DATA_OPTIONS.get(data, {})
    opts = {k: v for k, v in sorted(data_options.items()) if k != "progress"}
    return json.loads(json.dumps({**cfg.to_dict(), "data": data, "data_options": opts}))


def default_run_dir(data: str, profile: str) -> Path:
    """``<cache>/tcae/<data>_<profile>``: where ``au-lib train-tcae`` and the TCAE chapter train by default."""
    from au_lib.cache import cache_dir

    return cache_dir("tcae", f"{data}_{profile}")


def checkpoint_paths(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of the numbered checkpoints ``ckpt_<step>.pt`` in ``run_dir``, by step."""
    out = []
    for p in Path(run_dir).glob("ckpt_*.pt"):
        try:
            out.append((int(p.stem.split("_")[1]), p))
        except ValueError:
            continue
    return sorted(out)


@dataclass
class TCAERun:
    """What :func:`train_tcae` returns."""

    model: TCAE
    run_dir: Path
    step: int
    history: list = field(default_factory=list)   # the JSONL log rows
    wall_time_s: float = 0.0                      # training time summed over resumed sessions

    @property
    def result(self) -> dict:
        """The run's result file (config, final losses, provenance), via :func:`au_lib.results.load_result`."""
        from au_lib.results import load_result

        return load_result(self.run_dir / "result.json")


def train_tcae(cfg: TCAETrainConfig, run_dir: str | Path, data: str | torch.utils.data.Dataset = "synthau",
               device: str | torch.device | None = None, progress: bool = True, resume: bool = True,
               data_options: Mapping[str, Any] | None = None, profile: str | None = None,
               compile: bool = False) -> TCAERun:
    """Train (or resume) a TCAE run in ``run_dir``; returns the trained model in eval mode.

    Writes ``config.json``, ``log.jsonl`` (one row per ``log_every`` steps: step and loss terms),
    ``ckpt_<step>.pt`` at step 0, every ``checkpoint_every`` steps and at the end, and ``last.pt``
    (the engine's checkpoint with the optimiser and history; atomic writes). If ``last.pt`` exists
    with the same configuration (except :data:`NOT_BINDING`) it resumes from it (``resume=True``); a
    different configuration is an error naming the file and the fields. In an initialised process
    group (the caller's, e.g. under ``torchrun``) it trains with DDP.
    """
    from au_lib.provenance import atomic_write_json

    t0 = time.perf_counter()
    dist = engine.dist_info()
    device = engine.process_device(device)
    run_dir = Path(run_dir)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    profile = profile or current_profile()
    data_name = data if isinstance(data, str) else type(data).__name__
    if data_options is None:
        data_options = DEFAULT_DATA_OPTIONS.get(data_name, {})
    cfg_dict = binding_config(cfg, data_name, data_options)

    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        model = TCAE(cfg.model).to(device)
    opt = _make_optimizer(model, cfg)
    scaler = engine.grad_scaler(device, cfg.amp)
    lr_sched = None
    if cfg.schedule == "cosine":
        lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, engine.cosine_after_warmup(cfg.steps, cfg.warmup_steps))
    official = OfficialSchedule(cfg, opt if cfg.schedule == "official" else None)
    state = engine.resume(run_dir / "last.pt", cfg_dict, ignore=not_binding(cfg), what="TCAE training", model=model,
                          optimizer=opt, scheduler=lr_sched, scaler=scaler, map_location=device) if resume else None
    step, wall_before, history = 0, 0.0, []
    meter = engine.Meter()
    if state is not None:
        step, wall_before = int(state["step"]), float(state.get("wall_s", 0.0))
        history = state.get("history")
        if history is None:  # written before the engine: the rows are in the log
            history = engine.JsonlLogger.read(run_dir / "log.jsonl")
        history = [dict(h) for h in history if h.get("step", 0) <= step]
        if state.get("official_schedule") is not None:
            official.load_state_dict(state["official_schedule"])
        if state.get("meter"):  # updates since the last log row: the next row averages them as if never stopped
            meter = engine.Meter(dict(state["meter"]["sums"]), dict(state["meter"]["counts"]),
                                 int(state["meter"]["batches"]))
    if dist.is_main:
        atomic_write_json(run_dir / "config.json", {"train_config": cfg_dict, "data": data_name, "profile": profile})
    logger = engine.JsonlLogger(run_dir / "log.jsonl")
    logger.rewrite(history)  # drop rows logged after the checkpoint we resume from

    def save(at: int) -> None:
        extra = {"model_config": cfg.model.to_dict(), "data": data_name, "profile": profile,
                 "wall_s": wall_before + time.perf_counter() - t0, "official_schedule": official.state_dict()}
        # the step's snapshot first: a kill between the two writes then resumes from the step before
        engine.save_checkpoint(run_dir / f"ckpt_{at:07d}.pt", model=model, step=at, config=cfg_dict, extra=extra)
        engine.save_checkpoint(run_dir / "last.pt", model=model, optimizer=opt, scheduler=lr_sched, scaler=scaler,
                               step=at, history=history, config=cfg_dict,
                               extra={**extra, "meter": {"sums": meter.sums, "counts": meter.counts,
                                                         "batches": meter.batches}})

    if step == 0:
        save(0)  # the untrained model: the start of every "over training" curve
    ran = step < cfg.steps
    if ran:
        ds = open_pair_data(data, cfg.model.image_size, profile, cfg.seed, **dict(data_options or {}))
        if cfg.pool_pairs and data in ("synthau", "synth"):  # rendered on the fly: too slow to stream on a CPU
            from au_lib.cache import cache_dir

            opts = "_".join(f"{k}{v}" for k, v in sorted((data_options or {}).items()) if k != "progress")
            n_pool = cfg.pool_pairs + cfg.val_pairs
            pool_path = cache_dir("tcae", "pools", f"{data}_{opts}_{cfg.model.image_size}px_{n_pool}_s{cfg.seed}_v3.pt")
            ds = pair_pool(ds, n_pool, pool_path if dist.is_main else None, cfg.seed, progress)
        val_set = None
        if cfg.val_pairs:
            if cfg.val_pairs >= len(ds):
                raise ValueError(f"TCAE training: val_pairs={cfg.val_pairs} leaves no training pairs of {len(ds)}")
            perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(cfg.seed + 17)).tolist()
            val_set = fixed_batch(ds, indices=sorted(perm[:cfg.val_pairs]))
            ds = torch.utils.data.Subset(ds, sorted(perm[cfg.val_pairs:]))
        # the batch of update k is a function of (seed, k): a resumed run sees the batches an
        # uninterrupted one would (and each DDP rank its share of the global batch)
        loader = torch.utils.data.DataLoader(
            ds, batch_sampler=StepBatches(len(ds), cfg.batch_size, cfg.seed, step, dist.rank, dist.world_size),
            num_workers=cfg.num_workers, collate_fn=collate_pairs)
        net = engine.wrap(_LossModule(model), device, compile=compile, broadcast_buffers=False)
        model.train()
        bar = engine.progress(total=cfg.steps, initial=step, desc="train-tcae", enabled=progress)
        batches = iter(loader)
        step_fn = tcae_step(cfg, device, official)
        while step < cfg.steps:
            # run to the next log, validation or checkpoint boundary; a log row averages the updates since the last row
            n = min(cfg.log_every - step % cfg.log_every, cfg.checkpoint_every - step % cfg.checkpoint_every,
                    cfg.steps - step)
            if cfg.validate_every:
                n = min(n, cfg.validate_every - step % cfg.validate_every)
            meter, step = engine.train_one_epoch(step_fn, net, batches, opt, device=device, step=step, max_batches=n,
                                                 amp=cfg.amp, scaler=scaler, meter=meter, bar=bar, scheduler=lr_sched,
                                                 desc=f"train-tcae in {run_dir}")
            row = None
            if step % cfg.log_every == 0 or step == cfg.steps:
                row = {"step": step, **{k: round(v, 6) for k, v in meter.means().items() if k != "loss"},
                       "lr": opt.param_groups[0]["lr"]}
                if official.window is not None:
                    row["window"] = list(official.window)
                meter = engine.Meter()
            if val_set is not None and cfg.validate_every and step % cfg.validate_every == 0:
                val = validation_loss(model, val_set, cfg, device)
                row = row if row is not None else {"step": step}
                row["val_total"], row["val_recon"] = round(val["total"], 6), round(val["recon"], 6)
                if cfg.schedule == "official":
                    acted = official.update(val["total"], step // cfg.validate_every)
                    if acted:
                        row["schedule"] = acted
            if row is not None:
                history.append(row)
                logger.log(**row)
                if "total" in row:
                    bar.set_postfix(loss=f"{row['total']:.3f}", recon=f"{row['recon']:.3f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save(step)
        bar.close()
    wall = wall_before + time.perf_counter() - t0
    result = run_dir / "result.json"
    if dist.is_main and (not result.exists() or ran):
        from au_lib.provenance import make_provenance
        from au_lib.results import save_result

        save_result(result, {"train_config": cfg_dict, "data": data_name},
                    {"step": step, **(history[-1] if history else {})},
                    make_provenance(profile, wall, device))
    engine.barrier()
    return TCAERun(model.eval(), run_dir, step, history, wall)


# ------------------------------------------------------------------------------------------------
# evaluation over training
# ------------------------------------------------------------------------------------------------

def fixed_batch(dataset: torch.utils.data.Dataset, n: int | None = None, start: int = 0,
                indices: list[int] | None = None) -> dict:
    """A fixed evaluation batch: items ``indices`` of ``dataset``, or the first ``n`` from ``start``."""
    if indices is None:
        if n is None:
            raise ValueError("fixed_batch: give n or indices")
        indices = list(range(start, start + min(n, len(dataset) - start)))
    if not indices:
        raise ValueError(f"fixed_batch: no items selected from a dataset of {len(dataset)}")
    return collate_pairs([dataset[i] for i in indices])


def showcase_indices(dataset: torch.utils.data.Dataset, n: int = 16, seed: int = 0) -> list[int]:
    """Indices of up to ``n`` pairs for a figure: one per subject when the dataset exposes
    ``subjects`` and ``per_subject`` (SynthAU pairs), else ``n`` evenly spread items (one random
    offset from ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    subjects = getattr(dataset, "subjects", None)
    per = getattr(dataset, "per_subject", None)
    if subjects is not None and per:
        k = min(n, len(subjects))
        offs = torch.randint(0, per, (k,), generator=g).tolist()
        return [i * per + o for i, o in enumerate(offs)]
    k = min(n, len(dataset))
    stride = len(dataset) / k
    off = float(torch.rand(1, generator=g)) * stride
    return [min(len(dataset) - 1, int(off + i * stride)) for i in range(k)]


__all__ = ["TCAETrainConfig", "TRAIN_PROFILES", "DEFAULT_DATA_OPTIONS", "binding_config", "OFFICIAL_SWITCHES", "OFFICIAL_TRAINING", "PAPER_TRAINING",
           "OfficialSchedule", "validation_loss", "train_config", "with_length", "pose_only", "ToyPairs", "open_pair_data",
           "jitter_pairs", "collate_pairs", "PairPool", "pair_pool", "showcase_indices", "train_tcae", "TCAERun", "default_run_dir", "checkpoint_paths", "fixed_batch"]

"""MCM pre-training (MAE recipe) on the engine: AdamW (0.9, 0.95), linear-scaled lr, warm-up + cosine
(timm), the MCM step (:func:`mcm_step`) run by :func:`au_lib.train.engine.train_one_epoch` with bf16
on CUDA, gradient accumulation, DDP in the caller's process group, checkpoints + resume, JSONL
metrics, progress bar.

```python
from au_lib.train.pretrain import PRETRAIN_PROFILES, pretrain, open_pretrain_dataset
cfg = pick(PRETRAIN_PROFILES)                       # profile row; override with pick(..., epochs=5)
ds = open_pretrain_dataset("synthau", cfg)          # any dataset yielding rgb (+ depth, thermal)
result = pretrain(cfg, ds, out_dir="runs/mcm")     # resumes from out_dir/last.pt if present
```

Augmentation (MAE's): a random resized crop (``cfg.crop_scale`` of the area, bicubic) and a
horizontal flip (``cfg.hflip``), the same for every modality of a sample (:class:`AlignedAugment`).

Determinism: the data order comes from a ``DistributedSampler`` seeded with ``cfg.seed`` (also in a
single process), each sample's crop and flip from (seed, epoch, index), and every step's channel
subsets and spatial masks from :func:`au_lib.train.engine.step_generator` (seed, rank, step), so a
resumed run reproduces the uninterrupted one exactly on the same device.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from au_lib.models.mcm import MCM, MCM_PROFILES, MODALITIES, MCMConfig
from au_lib.train import engine
from au_lib.train.engine import (JsonlLogger, all_reduce_mean, barrier, dist_info, grad_scaler, load_checkpoint, log0,
                                 process_device, progress, save_checkpoint, step_generator, train_one_epoch, unwrap,
                                 wrap)


@dataclass(frozen=True)
class PretrainConfig:
    """Pre-training hyper-parameters (MAE defaults unless stated in the chapter's table)."""

    model: MCMConfig = field(default_factory=MCMConfig)
    epochs: int = 100                      # MCM supplementary: 100 epochs
    batch_size: int = 64                   # per process, per micro-step
    accum_iter: int = 1
    blr: float = 1.5e-4                    # MAE: lr = blr * effective_batch / 256
    lr: float | None = None                # absolute lr overrides blr
    min_lr: float = 0.0
    warmup_epochs: float = 5.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    clip_grad: float | None = None
    save_every: int = 1                    # write last.pt every N epochs (and at the end)
    save_epochs: tuple[int, ...] = ()      # also keep epoch_XXXX.pt after these epochs (for sweeps)
    num_workers: int = 0
    amp: bool | str = True                 # True: bf16 on CUDA only; "bf16" also on CPU; "fp16"; False
    compile: bool = False
    seed: int = 0
    num_samples: int | None = None         # dataset size for synthetic data (None: dataset default)
    modalities: tuple[str, ...] = ("rgb", "depth", "thermal")
    # MAE's augmentation, the same for all modalities of a sample (:class:`AlignedAugment`). MCM's own
    # is not published: crop_scale=None gives FMAE's face recipe (resize only) with the flip.
    crop_scale: tuple[float, float] | None = (0.2, 1.0)  # RandomResizedCrop area fraction; None: no crop
    hflip: bool = True

    def effective_batch(self, world_size: int = 1) -> int:
        return self.batch_size * self.accum_iter * world_size

    def base_lr(self, world_size: int = 1) -> float:
        return self.lr if self.lr is not None else self.blr * self.effective_batch(world_size) / 256

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PretrainConfig":
        d = dict(d)
        d["model"] = MCMConfig.from_dict(d.get("model", {}))
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


PRETRAIN_PROFILES: dict[str, PretrainConfig] = {
    "smoke": PretrainConfig(model=MCM_PROFILES["smoke"], epochs=2, batch_size=16, blr=1.5e-3,
                            warmup_epochs=0.5, num_samples=64),
    # ~4 minutes per model on 2 idle CPU cores (23k images seen). A short run needs a larger base lr than MAE's 800-epoch recipe.
    "cpu": PretrainConfig(model=MCM_PROFILES["cpu"], epochs=10, batch_size=32, blr=1e-2, clip_grad=1.0,
                          warmup_epochs=1, num_samples=None, save_epochs=(5, 10)),
    # The paper's scale: ViT-B/16 at 224, effective batch 4096 (MAE), 100 epochs (MCM supplementary).
    "paper": PretrainConfig(model=MCM_PROFILES["paper"], epochs=100, batch_size=256, accum_iter=2,
                            blr=1.5e-4, warmup_epochs=10, num_workers=8, save_every=5,
                            save_epochs=(10, 20, 40, 60, 80, 100), num_samples=None),
}


# ---------------------------------------------------------------- data
def stack_rgbdt(sample: dict) -> tuple[Tensor, Tensor]:
    """One sample dict -> ``(x5 (5,H,W), available bool (5,))``; missing depth/thermal are zeros."""
    if "rgb" not in sample:
        raise KeyError(f"sample has no 'rgb' (keys: {sorted(sample)})")
    rgb = torch.as_tensor(sample["rgb"], dtype=torch.float32)
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"sample 'rgb' must be 3xHxW, got {tuple(rgb.shape)}")
    h, w = rgb.shape[-2:]
    chans, avail = [rgb], [True, True, True]
    for key in ("depth", "thermal"):
        v = sample.get(key)
        if v is None:
            chans.append(torch.zeros(1, h, w))
            avail.append(False)
        else:
            v = torch.as_tensor(v, dtype=torch.float32)
            if v.shape != (1, h, w):
                raise ValueError(f"sample '{key}' must be 1x{h}x{w}, got {tuple(v.shape)}")
            chans.append(v)
            avail.append(True)
    return torch.cat(chans, 0), torch.tensor(avail)


def collate_rgbdt(samples: Sequence[dict]) -> dict:
    """Collate sample dicts into ``{"x5": (B,5,H,W), "available": bool (B,5)}`` (mixing RGB-only and
    RGB-D-T samples is allowed)."""
    xs, av = zip(*(stack_rgbdt(s) for s in samples))
    return {"x5": torch.stack(xs), "available": torch.stack(av)}


class RandomRGBDT(Dataset):
    """Synthetic stand-in for tests and benchmarks: smooth random blobs with correlated depth/thermal.

    Each sample is a function of ``(seed, index)`` only. ``modalities`` picks which keys are present.
    """

    def __init__(self, n: int = 64, image_size: int = 32, seed: int = 0,
                 modalities: Sequence[str] = ("rgb", "depth", "thermal")):
        self.n, self.size, self.seed, self.modalities = int(n), int(image_size), int(seed), tuple(modalities)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.n:
            raise IndexError(i)
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)
        s = self.size
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
        c = torch.rand(2, generator=g) * 0.6 - 0.3
        r = 0.45 + 0.2 * torch.rand(1, generator=g)
        blob = torch.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * r ** 2))
        tint = 0.3 + 0.6 * torch.rand(3, 1, 1, generator=g)
        rgb = (0.15 + tint * blob + 0.05 * torch.rand(3, s, s, generator=g)).clamp(0, 1)
        out = {"rgb": rgb, "subject": f"R{i % 8:02d}", "sequence": "T1", "frame": i}
        if "depth" in self.modalities:
            out["depth"] = blob[None].clamp(0, 1)
        if "thermal" in self.modalities:
            out["thermal"] = (0.2 + 0.7 * blob ** 2 + 0.1 * (yy > c[1]).float())[None].clamp(0, 1)
        return out


class AlignedAugment(Dataset):
    """MAE's pre-training augmentation applied identically to all modalities of a sample.

    ``RandomResizedCrop(size, scale, ratio=(3/4, 4/3), bicubic)`` (torchvision's parameter draw) then
    a horizontal flip with probability 0.5, on the stacked ``rgb``/``depth``/``thermal`` channels at
    once, so the modalities stay pixel-aligned; values are clamped to [0, 1] (bicubic overshoots).

    The draw is a function of ``(seed, epoch, index)``: index it with ``(epoch, i)`` pairs (from
    :class:`EpochIndices`) so every epoch sees new crops and a resumed run the same ones; a plain
    ``i`` means epoch 0.
    """

    KEYS = ("rgb", "depth", "thermal")

    def __init__(self, dataset: Dataset, size: int, scale: tuple[float, float] | None = (0.2, 1.0),
                 hflip: bool = True, seed: int = 0, ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        if scale is not None and not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"crop scale must satisfy 0 < min <= max <= 1, got {scale}")
        self.dataset, self.size, self.scale, self.hflip = dataset, int(size), scale, bool(hflip)
        self.seed, self.ratio = int(seed), ratio

    def __len__(self) -> int:
        return len(self.dataset)

    def params(self, epoch: int, index: int, height: int, width: int) -> tuple[int, int, int, int, bool]:
        """``(top, left, h, w, flip)`` of sample ``index`` in ``epoch`` (deterministic)."""
        from torchvision.transforms import RandomResizedCrop

        with torch.random.fork_rng(devices=[]):  # torchvision draws from the global RNG
            torch.manual_seed((self.seed * 1_000_003 + int(epoch) * 104_729 + int(index) * 7_919) % (2**63 - 1))
            if self.scale is None:
                top, left, h, w = 0, 0, height, width
            else:
                top, left, h, w = RandomResizedCrop.get_params(torch.empty(1, height, width), list(self.scale),
                                                               list(self.ratio))
            flip = self.hflip and bool(torch.rand(()) < 0.5)
        return top, left, h, w, flip

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        epoch, index = item if isinstance(item, tuple) else (0, item)
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        sample = dict(self.dataset[index])
        keys = [k for k in self.KEYS if sample.get(k) is not None]
        if "rgb" not in keys:
            raise KeyError(f"sample {index} has no 'rgb' (keys: {sorted(sample)})")
        parts = [torch.as_tensor(sample[k], dtype=torch.float32) for k in keys]
        x = torch.cat(parts, 0)
        top, left, h, w, flip = self.params(epoch, index, x.shape[-2], x.shape[-1])
        if self.scale is not None or x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = TF.resized_crop(x, top, left, h, w, [self.size, self.size],
                                interpolation=InterpolationMode.BICUBIC, antialias=True).clamp_(0, 1)
        if flip:
            x = x.flip(-1)
        for k, part in zip(keys, torch.split(x, [p.shape[0] for p in parts])):
            sample[k] = part
        return sample


class EpochIndices(torch.utils.data.Sampler):
    """Wrap a sampler with ``set_epoch`` (a ``DistributedSampler``): yield ``(epoch, index)`` pairs
    for :class:`AlignedAugment`."""

    def __init__(self, sampler: DistributedSampler):
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        e = int(self.sampler.epoch)
        return ((e, int(i)) for i in self.sampler)


def open_pretrain_dataset(name: str, cfg: PretrainConfig, profile: str | None = None, **options) -> Dataset:
    """The pre-training pool: ``"random"`` (:class:`RandomRGBDT`) or a registry dataset opened with
    ``view="pretrain"``, ``modalities=cfg.modalities`` and ``image_size=cfg.model.img_size``."""
    if name == "random":
        return RandomRGBDT(cfg.num_samples or 256, cfg.model.img_size, cfg.seed, cfg.modalities)
    from au_lib.data.registry import open_dataset

    opts = {"modalities": tuple(cfg.modalities), "image_size": cfg.model.img_size, "profile": profile}
    if name == "synthau":
        opts["view"] = "pretrain"
    opts.update(options)
    ds = open_dataset(name, **opts)
    if cfg.num_samples is not None and len(ds) > cfg.num_samples:  # evenly spaced, deterministic subset
        step = len(ds) / cfg.num_samples
        ds = Subset(ds, [int(i * step) for i in range(cfg.num_samples)])
    return ds


# ---------------------------------------------------------------- optimisation
def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups as MAE's ``add_weight_decay`` (timm's ``param_groups_weight_decay``): no decay for
    biases, norms and the model's ``no_weight_decay()`` names (tokens, subset embedding)."""
    from timm.optim import param_groups_weight_decay

    skip = unwrap(model).no_weight_decay() if hasattr(unwrap(model), "no_weight_decay") else ()
    return param_groups_weight_decay(model, weight_decay, no_weight_decay_list=skip)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: PretrainConfig, updates_per_epoch: int):
    """timm ``CosineLRScheduler`` stepped per optimiser update: linear warm-up from 0 then cosine to
    ``min_lr`` over ``epochs`` (call ``step_update(num_updates)``)."""
    return engine.cosine_scheduler(optimizer, cfg.epochs * updates_per_epoch,
                                   int(round(cfg.warmup_epochs * updates_per_epoch)), cfg.min_lr)


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns."""

    checkpoint: Path
    history: list[dict]
    wall_time_s: float
    config: PretrainConfig
    resumed_from_epoch: int = 0
    epoch_checkpoints: dict[int, Path] = field(default_factory=dict)
    model: nn.Module | None = None  # the trained bare MCM (this process's copy)


NOT_BINDING = ("save_every", "save_epochs", "num_workers", "compile")
"""Config fields a resumed run may change: they do not change the result (checkpoint cadence, data
workers, compilation). Every other field does (``epochs`` sets the lr schedule, ``amp`` the precision)
and must match, or the resume is refused naming the file and the fields."""


def mcm_step(seed: int, micro_per_epoch: int, epoch: int, device: torch.device):
    """The MCM step for :func:`au_lib.train.engine.train_one_epoch`: batch ``{"x5", "available"}`` ->
    total loss and the per-modality terms; channel subsets and masks drawn from
    :func:`~au_lib.train.engine.step_generator` ``(seed, epoch * micro_per_epoch + micro, rank)``."""
    rank = dist_info().rank

    def step_fn(model: nn.Module, batch: dict, step: int, micro: int) -> dict:
        gen = step_generator(seed, epoch * micro_per_epoch + micro, rank)
        out = model(batch["x5"].to(device, non_blocking=True), batch["available"].to(device, non_blocking=True),
                    generator=gen)
        return {"loss": out.loss, **{m: out.losses[m] for m in MODALITIES}, "images": batch["x5"].shape[0]}
    return step_fn


def pretrain(cfg: PretrainConfig, dataset: Dataset, out_dir: str | Path, *, device: torch.device | str | None = None,
             show_progress: bool = True, resume: bool = True, stop_after_epochs: int | None = None,
             log_every: int = 0) -> PretrainResult:
    """Pre-train MCM on ``dataset`` (sample dicts with ``rgb`` and optionally ``depth``/``thermal``).

    Writes to ``out_dir``: ``last.pt`` (the engine's checkpoint: model, optimiser, scheduler, epoch,
    step, history, config), ``epoch_XXXX.pt`` for ``cfg.save_epochs``, ``log.jsonl`` (one record per
    epoch, plus every ``log_every`` updates; a copy of the checkpoint's history, rewritten from it on
    resume, so a kill between a checkpoint and its log line cannot make them disagree). Resumes from ``last.pt`` when ``resume`` (the config must
    match except :data:`NOT_BINDING`); a finished run returns at once. ``stop_after_epochs`` ends early
    (for tests of resuming). In an initialised process group (the caller's, e.g. under ``torchrun``)
    it trains with DDP.
    """
    from au_lib.provenance import timed

    info = dist_info()
    out = Path(out_dir)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        engine.remove_stale_temps(out)
    dev = process_device(device)
    if len(dataset) < cfg.batch_size * info.world_size:
        raise ValueError(f"dataset has {len(dataset)} samples, fewer than one global batch "
                         f"({cfg.batch_size} x {info.world_size} processes)")

    model = MCM(cfg.model, seed=cfg.seed).to(dev)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.base_lr(info.world_size),
                                  betas=cfg.betas)
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    if cfg.crop_scale is not None or cfg.hflip:
        dataset = AlignedAugment(dataset, cfg.model.img_size, cfg.crop_scale, cfg.hflip, seed=cfg.seed)
        sampler = EpochIndices(sampler)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=True,
                        num_workers=cfg.num_workers, collate_fn=collate_rgbdt,
                        pin_memory=dev.type == "cuda", persistent_workers=cfg.num_workers > 0)
    micro_per_epoch = len(loader)
    updates_per_epoch = micro_per_epoch // cfg.accum_iter
    if updates_per_epoch < 1:
        raise ValueError(f"accum_iter={cfg.accum_iter} exceeds the {micro_per_epoch} batches of an epoch")
    scheduler = make_scheduler(optimizer, cfg, updates_per_epoch)
    scaler = grad_scaler(dev, cfg.amp)

    last = out / "last.pt"
    cfg_d = cfg.to_dict()
    ckpt = engine.resume(last, cfg_d, ignore=NOT_BINDING, what="MCM pre-training", model=model, optimizer=optimizer,
                         scheduler=scheduler, scaler=scaler, map_location=dev) if resume else None
    start_epoch, step, history = 0, 0, []
    if ckpt is not None:
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        history = ckpt.get("history")
        if history is None:  # written before the engine: the epochs are in the log
            history = [r for r in JsonlLogger.read(out / "log.jsonl") if r.get("kind") == "epoch"]
        history = [dict(r) for r in history if r["epoch"] <= start_epoch]
        log0(f"reusing the finished run in {out}" if start_epoch >= cfg.epochs
             else f"resuming from {last} at epoch {start_epoch}")

    net = wrap(model, dev, compile=cfg.compile)
    logger = JsonlLogger(out / "log.jsonl")
    logger.rewrite(history)
    end_epoch = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)
    saved: dict[int, Path] = {e: out / f"epoch_{e:04d}.pt" for e in cfg.save_epochs if (out / f"epoch_{e:04d}.pt").is_file()}

    def on_update(at: int, values: dict) -> None:
        if log_every and at % log_every == 0:
            logger.log(kind="step", epoch=epoch + 1, step=at, loss=values["loss"], lr=optimizer.param_groups[0]["lr"])

    with timed() as t_all:
        for epoch in range(start_epoch, end_epoch):
            sampler.set_epoch(epoch)
            net.train()
            t0 = time.perf_counter()
            bar = progress(total=updates_per_epoch, desc=f"MCM epoch {epoch + 1}/{cfg.epochs}", enabled=show_progress)
            meter, step = train_one_epoch(
                mcm_step(cfg.seed, micro_per_epoch, epoch, dev), net, loader, optimizer, device=dev, step=step,
                accum_iter=cfg.accum_iter, max_batches=updates_per_epoch * cfg.accum_iter, scheduler=scheduler,
                clip_grad=cfg.clip_grad, amp=cfg.amp, scaler=scaler, bar=bar, on_update=on_update,
                desc=f"MCM epoch {epoch + 1}")
            bar.close()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            dt = time.perf_counter() - t0
            means = meter.means()
            rec = {"kind": "epoch", "epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
                   "loss": all_reduce_mean(means["loss"], dev),
                   "images_per_s": all_reduce_mean(meter.sums["images"] / dt, dev) * info.world_size,
                   "epoch_time_s": dt}
            for m in MODALITIES:
                rec[f"loss_{m}"] = all_reduce_mean(means[m], dev)
            history.append(rec)
            done = epoch + 1
            # the epoch checkpoint first: a kill between the two writes redoes this epoch from the
            # previous last.pt and rewrites it identically, instead of never writing it
            if done in cfg.save_epochs:
                p = out / f"epoch_{done:04d}.pt"
                save_checkpoint(p, model=model, epoch=done, step=step, history=history, config=cfg_d)
                saved[done] = p
            if done % cfg.save_every == 0 or done == end_epoch:
                save_checkpoint(last, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                epoch=done, step=step, history=history, config=cfg_d)
            logger.log(**rec)  # a copy for watching the run; the checkpoint's history is the record
            log0(f"epoch {done}/{cfg.epochs} loss {rec['loss']:.4f} "
                 + " ".join(f"{m} {rec[f'loss_{m}']:.4f}" for m in MODALITIES))
    barrier()
    return PretrainResult(last, history, t_all["seconds"], cfg, start_epoch, saved, model)


def load_pretrained_mcm(path: str | Path, map_location: Any = "cpu") -> tuple[MCM, PretrainConfig, dict]:
    """A full MCM (encoder and decoders) from a pre-training checkpoint: ``(model, config, checkpoint)``."""
    ckpt = load_checkpoint(path, map_location=map_location)
    cfg = PretrainConfig.from_dict(ckpt["config"])
    model = MCM(cfg.model)
    model.load_state_dict(ckpt["model"])
    return model.eval(), cfg, ckpt


def resolve_config(profile: str | None = None, **overrides) -> PretrainConfig:
    """The profile's :class:`PretrainConfig` with overrides; ``mask_ratio``/``subset_embedding`` etc.
    given here go to the model config."""
    from au_lib.profiles import pick

    model_fields = set(MCMConfig.__dataclass_fields__)
    m_over = {k: overrides.pop(k) for k in list(overrides) if k in model_fields}
    cfg = pick(PRETRAIN_PROFILES, profile)
    if m_over:
        cfg = replace(cfg, model=replace(cfg.model, **m_over))
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def run_pretraining(cfg: PretrainConfig, data: str | Dataset = "synthau", out_dir: str | Path | None = None, *,
                    profile: str | None = None, device: torch.device | str | None = None,
                    show_progress: bool = True, resume: bool = True) -> dict:
    """Open the data, pre-train (resuming), and write ``out_dir/summary.json`` (a result file with the
    last epoch's metrics, the history and provenance; rank 0). Returns the loaded result dict.

    ``out_dir`` defaults to ``<cache>/mcm/<profile>`` (:func:`au_lib.cache.cache_root`). A finished
    run is reused as is.
    """
    from au_lib.cache import cache_dir
    from au_lib.profiles import current_profile
    from au_lib.provenance import make_provenance
    from au_lib.results import load_result, save_result

    profile = profile or current_profile()
    out = Path(out_dir) if out_dir is not None else cache_dir("mcm", profile)
    ds = open_pretrain_dataset(data, cfg, profile) if isinstance(data, str) else data
    res = pretrain(cfg, ds, out, device=device, show_progress=show_progress, resume=resume)
    summary = out / "summary.json"
    if dist_info().is_main:
        wall = sum(r.get("epoch_time_s", 0.0) for r in res.history)
        last = res.history[-1] if res.history else {}
        metrics = {k: last.get(k) for k in ("loss", "loss_rgb", "loss_depth", "loss_thermal", "images_per_s")}
        save_result(summary, cfg.to_dict(), metrics, make_provenance(profile, wall, device),
                    extra={"history": res.history, "epochs_done": len(res.history),
                           "data": data if isinstance(data, str) else type(data).__name__,
                           "checkpoint": res.checkpoint.name,
                           "epoch_checkpoints": {str(k): v.name for k, v in res.epoch_checkpoints.items()}})
    barrier()
    return load_result(summary)

"""Training AU classifiers (linear probes, MCM fine-tuning, supervised baselines) with the engine.

:func:`fit` trains on in-memory tensors (a :class:`FrameTable` loaded once from any dataset of the
registry) through :func:`au_lib.train.engine.train_one_epoch`, with the masked, class-weighted BCE
of :func:`au_lib.models.heads.masked_bce_loss`, AdamW with per-group learning rates
(:func:`au_lib.models.heads.param_groups`: layer decay when the model has it), a linear warm-up then
cosine schedule, early stopping on the *validation* mean F1, a per-epoch checkpoint in the engine's
format that it resumes from, and a tqdm progress bar. The test fold never enters :func:`fit`; an
optional ``monitor`` callback receives each epoch's model so a protocol can *report* (never select
on) test-fold numbers.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from au_lib.metrics import f1_per_au
from au_lib.models.heads import masked_bce_loss, param_groups
from au_lib.train import engine


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one classifier fit. ``lr`` is the peak learning rate."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    layer_decay: float = 0.75  # MAE fine-tuning; 1.0 disables
    warmup_epochs: float = 1.0
    patience: int = 4  # early stopping: epochs without a better validation F1
    flip: bool = True  # random horizontal flip (images only)
    grad_clip: float | None = 5.0


@dataclass
class FrameTable:
    """A dataset loaded into memory: the frames, their labels and subjects.

    Attributes:
        x: ``(N, C, H, W)`` float32 input (RGB in [0,1], then any extra modality channels).
        au: ``(N, A)`` float32 labels 1/0/-1.
        subject: ``(N,)`` array of subject ids (str).
        aus: the FACS numbers of the A columns.
        au_intensity: ``(N, A)`` FACS intensity 0-5 (-1 unknown) where known, else None.
        sequence, frame: per-frame sequence id and frame number (for captions), may be None.
        channels: names of the C input channels, e.g. ``("r", "g", "b", "depth")``.
    """

    x: torch.Tensor
    au: torch.Tensor
    subject: np.ndarray
    aus: tuple[int, ...]
    au_intensity: torch.Tensor | None = None
    sequence: np.ndarray | None = None
    frame: np.ndarray | None = None
    channels: tuple[str, ...] = ("r", "g", "b")
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.au.shape[0] != n or len(self.subject) != n:
            raise ValueError(f"FrameTable: x has {n} rows, au {self.au.shape[0]}, subject {len(self.subject)}")
        if self.au.shape[1] != len(self.aus):
            raise ValueError(f"FrameTable: au has {self.au.shape[1]} columns for {len(self.aus)} AUs")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def rows(self, subjects: Sequence[str]) -> np.ndarray:
        """Indices of the frames of ``subjects``. Raises ValueError if a subject has no frame."""
        wanted = set(subjects)
        idx = np.flatnonzero(np.isin(self.subject, list(wanted)))
        missing = wanted - set(self.subject[idx].tolist())
        if missing:
            raise ValueError(f"subjects with no frames in the data: {sorted(missing)[:8]}")
        return idx


def materialize(dataset, modalities: Sequence[str] = ("rgb",), aus: Sequence[int] | None = None,
                batch_size: int = 64, progress: bool = False) -> FrameTable:
    """Read every sample of a registry dataset (the shared sample dict) into a :class:`FrameTable`.

    Extra ``modalities`` (``depth``, ``thermal``) are concatenated after the RGB channels.

    Raises:
        KeyError: naming the modality, if a sample lacks one that was asked for.
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    xs, labs, ints, subs, seqs, frames = [], [], [], [], [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    for batch in tqdm(loader, desc="loading frames", disable=not progress, leave=False):
        parts = []
        for m in modalities:
            if m not in batch:
                raise KeyError(f"dataset samples have no {m!r} (keys: {sorted(batch)}); "
                               f"open it with modalities including {m!r}")
            parts.append(batch[m].float())
        xs.append(torch.cat(parts, 1))
        labs.append(batch["au"].float())
        if "au_intensity" in batch:
            ints.append(batch["au_intensity"].float())
        subs.extend([str(s) for s in batch["subject"]])
        seqs.extend([str(s) for s in batch.get("sequence", [""] * len(batch["au"]))])
        fr = batch.get("frame")
        frames.extend([int(f) for f in fr] if fr is not None else [-1] * len(batch["au"]))
    if not xs:
        raise ValueError("dataset is empty")
    a = tuple(aus) if aus is not None else tuple(getattr(dataset, "aus", range(labs[0].shape[1])))
    chans: list[str] = []
    for m in modalities:
        chans += ["r", "g", "b"] if m == "rgb" else [m]
    return FrameTable(x=torch.cat(xs), au=torch.cat(labs), subject=np.asarray(subs), aus=a,
                      au_intensity=torch.cat(ints) if len(ints) == len(xs) else None,
                      sequence=np.asarray(seqs), frame=np.asarray(frames), channels=tuple(chans))


@torch.no_grad()
def extract_features(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 128,
                     device: torch.device | str = "cpu", progress: bool = False) -> torch.Tensor:
    """Apply a feature extractor ``(B,C,H,W) -> (B,D)`` to all of ``x`` in batches; returns ``(N, D)`` on CPU."""
    from tqdm.auto import tqdm

    if isinstance(fn, nn.Module):
        fn.eval()
    out = []
    for i in tqdm(range(0, len(x), batch_size), desc="features", disable=not progress, leave=False):
        out.append(fn(x[i:i + batch_size].to(device)).float().cpu())
    feats = torch.cat(out)
    if feats.ndim != 2:
        raise ValueError(f"feature extractor must return (B, D), got {tuple(feats.shape[1:])} per row")
    return feats


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256,
            device: torch.device | str = "cpu") -> np.ndarray:
    """Sigmoid probabilities ``(N, A)`` of ``model`` on ``x`` (evaluation mode)."""
    was = model.training
    model.eval()
    out = [torch.sigmoid(model(x[i:i + batch_size].to(device)).float()).cpu() for i in range(0, len(x), batch_size)]
    model.train(was)
    return torch.cat(out).numpy()


@dataclass
class FitResult:
    """What :func:`fit` returns: the model at its best validation epoch and the learning curves."""

    model: nn.Module
    best_epoch: int  # 1-based
    best_val_f1: float
    history: list[dict]


def fit(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
        cfg: TrainConfig, *, weights: Sequence[float] | None = None, seed: int = 0,
        device: torch.device | str = "cpu", checkpoint: str | os.PathLike | None = None,
        monitor: Callable[[nn.Module, int], dict] | None = None, progress: bool = False,
        desc: str = "train", amp: bool | str = False, compile: bool = False) -> FitResult:
    """Train ``model`` on ``train = (x, labels)``; keep the epoch with the best validation mean F1.

    Each epoch is one :func:`au_lib.train.engine.train_one_epoch` over shuffled batches of the
    in-memory tensors (masked, class-weighted BCE; AdamW with the model's parameter groups; linear
    warm-up then cosine per update; gradient clipping).

    Args:
        model: maps ``(B, ...)`` inputs to ``(B, A)`` logits.
        train, val: ``(x, labels)`` tensors; labels 1/0/-1. ``val`` selects the epoch (F1 at 0.5).
        weights: ``(A,)`` per-AU loss weights (compute them on ``train`` labels only).
        seed: seeds the shuffling and flips (a private ``torch.Generator``) and, per epoch, the global
            RNG that stochastic layers (drop path, dropout) draw from.
        checkpoint: file to save after every epoch (the engine's format) and resume from if it exists.
        monitor: called as ``monitor(model, epoch)`` after each epoch in eval mode; its dict is
            stored in the history (use it to *report* test-fold curves; it must not feed back).
        progress: show a tqdm bar over epochs.
        amp, compile: see :func:`au_lib.train.engine.autocast` and :func:`~au_lib.train.engine.wrap`.
            In a process group (the caller's) each batch is split over the ranks and trained with DDP.

    Returns:
        :class:`FitResult` with the best-validation model (weights restored) and per-epoch history
        (``epoch``, ``train_loss``, ``val_loss``, ``val_f1``, ``lr`` and the monitor's keys).
    """
    xt, yt = train
    xv, yv = val
    if len(xt) == 0 or len(xv) == 0:
        raise ValueError(f"empty split: {len(xt)} training and {len(xv)} validation rows")
    model.to(device)
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay, cfg.layer_decay), lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(xt) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, engine.cosine_after_warmup(cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)))
    w = torch.as_tensor(np.asarray(weights, dtype=np.float32)) if weights is not None else None
    w_dev = None if w is None else w.to(device)
    history: list[dict] = []
    best = {"epoch": 0, "f1": -1.0, "state": copy.deepcopy(model.state_dict())}
    start, step = 0, 0
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None:
        state = engine.resume(ckpt, asdict(cfg), what="training", model=model, optimizer=opt, scheduler=sched,
                              rng={"batches": gen})
        if state is not None:
            history, best, start, step = state["history"], state["best"], state["epoch"], state["step"]
    images = xt.ndim == 4
    net = engine.wrap(model, device, compile=compile)

    info = engine.dist_info()

    def batches():
        perm = torch.randperm(len(xt), generator=gen)  # the same on every rank (same seed)
        for i in range(0, len(xt), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size][info.rank::info.world_size]  # under DDP: this rank's share
            if len(idx) < 2 and len(xt) >= 2:  # BatchNorm needs 2 rows
                continue
            xb, yb = xt[idx], yt[idx]
            if images and cfg.flip:
                flip = torch.rand(len(idx), generator=gen) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            yield xb, yb

    def step_fn(net: nn.Module, batch, step: int, micro: int) -> dict:
        xb, yb = batch
        return {"loss": masked_bce_loss(net(xb.to(device)), yb.to(device), w_dev), "batch_size": len(yb)}

    bar = engine.progress(range(start, cfg.epochs), desc=desc, enabled=progress, initial=start, total=cfg.epochs)
    stale = len(history) - best["epoch"]
    for epoch in bar:
        if stale >= cfg.patience:
            break
        model.train()
        # stochastic layers (drop path, dropout) draw from the global RNG: seed it per epoch (and
        # restore the caller's), so a resumed run and another process reproduce this one exactly
        with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
            torch.manual_seed((int(seed) * 1_000_003 + epoch) % (2**63 - 1))
            meter, step = engine.train_one_epoch(step_fn, net, batches(), opt, device=device, step=step,
                                                 scheduler=sched, clip_grad=cfg.grad_clip, amp=amp, desc=desc)
        scores = predict(model, xv, device=device)
        logits_v = torch.logit(torch.as_tensor(scores).clamp(1e-6, 1 - 1e-6))
        val_loss = float(masked_bce_loss(logits_v, yv.float(), w))
        val_f1 = f1_per_au(yv.numpy(), scores).mean
        train_loss = meter.sums.get("loss", 0.0) / max(1, meter.counts.get("loss", 0))
        row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
               "val_f1": float(val_f1), "lr": float(opt.param_groups[-1]["lr"])}
        if monitor is not None:
            model.eval()
            row.update(monitor(model, epoch + 1))
        history.append(row)
        if val_f1 > best["f1"] + 1e-9:
            best = {"epoch": epoch + 1, "f1": float(val_f1), "state": copy.deepcopy(model.state_dict())}
            stale = 0
        else:
            stale += 1
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_f1=f"{val_f1:.3f}")
        if ckpt is not None:
            engine.save_checkpoint(ckpt, model=model, optimizer=opt, scheduler=sched, rng={"batches": gen},
                                   step=step, epoch=epoch + 1, history=history, config=asdict(cfg),
                                   extra={"best": best})
    model.load_state_dict(best["state"])
    model.eval()
    return FitResult(model=model, best_epoch=int(best["epoch"]), best_val_f1=float(best["f1"]), history=history)

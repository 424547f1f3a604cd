"""Training AU classifiers (linear probes, MCM fine-tuning, supervised baselines) with the engine.

:func:`fit` trains on in-memory tensors (a :class:`FrameTable` loaded once from any dataset of the
registry) through :func:`au_lib.train.engine.train_one_epoch`, with the masked, class-weighted BCE
of :func:`au_lib.models.heads.masked_bce_loss`, AdamW with per-group learning rates
(:func:`au_lib.models.heads.param_groups`: layer decay when the model has it), a linear warm-up then
cosine schedule (timm's, per update: :func:`au_lib.train.engine.cosine_scheduler`), early stopping
on the *validation* mean F1, a per-epoch checkpoint in the engine's format that it resumes from,
autocast (bf16) and DDP batch splitting as in pre-training, and a tqdm progress bar. The test fold never enters :func:`fit`; an
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

QUANTA = {"rgb": (np.uint8, 255.0), "depth": (np.uint16, 65535.0), "thermal": (np.uint16, 65535.0)}
"""How each modality is stored on disk when that is lossless: integer codes ``q`` read as ``q / scale``
(the datasets' own decoding: SynthAU and prepared crops are 8-bit RGB and 16-bit depth/thermal)."""


class FrameArray:
    """Frames ``(N, C, H, W)`` float32 streamed from memory-mapped arrays on disk (one per modality).

    Indexing is lazy: ``a[rows]``, ``a[:, channels]`` and ``a[rows, channels]`` return views (nothing
    is read), so a protocol can carve folds and channel subsets of a table larger than memory.
    :meth:`take` (or an integer row) reads rows as a float32 tensor, decoding integer codes with the
    array's scales exactly as the datasets do (``uint8 -> float / 255``); :meth:`read` reads the view.

    Args:
        parts: per modality ``(array (N, c, H, W), scale)``; ``scale`` None for float32 storage.
        rows: row indices of this view into the arrays (None: all).
        channels: channel indices of this view (None: all, in modality order).
    """

    ndim = 4

    def __init__(self, parts: Sequence[tuple[np.ndarray, float | None]], rows: np.ndarray | None = None,
                 channels: Sequence[int] | None = None):
        self.parts = list(parts)
        n = {len(a) for a, _ in self.parts}
        if len(n) != 1:
            raise ValueError(f"FrameArray: modality arrays have different lengths {sorted(n)}")
        self._n = n.pop()
        self._chan = [(k, c) for k, (a, _) in enumerate(self.parts) for c in range(a.shape[1])]
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.channels = list(range(len(self._chan))) if channels is None else [int(c) for c in channels]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        h, w = self.parts[0][0].shape[-2:]
        return (self._n if self.rows is None else len(self.rows), len(self.channels), int(h), int(w))

    def __len__(self) -> int:
        return self.shape[0]

    def _view(self, rows, channels) -> "FrameArray":
        base = np.arange(self._n) if self.rows is None else self.rows
        new_rows = self.rows if rows is None else base[rows]
        new_ch = self.channels if channels is None else list(np.asarray(self.channels)[channels].reshape(-1))
        return FrameArray(self.parts, new_rows, new_ch)

    def __getitem__(self, key):
        rows, channels = (key if isinstance(key, tuple) else (key, None))
        if isinstance(rows, slice) and rows == slice(None):
            rows = None
        if isinstance(rows, torch.Tensor):
            rows = rows.numpy()
        if isinstance(rows, (int, np.integer)):
            return self._view([int(rows)], channels).read()[0]
        if isinstance(channels, slice) and channels == slice(None):
            channels = None
        return self._view(rows, channels)

    def take(self, idx) -> torch.Tensor:
        """Rows ``idx`` (ints, a slice or a tensor) of this view as a float32 tensor ``(n, C, H, W)``."""
        return self[idx].read() if not isinstance(idx, (int, np.integer)) else self[idx][None]

    def read(self) -> torch.Tensor:
        """This view as a float32 tensor (rows read in increasing order, then put in view order)."""
        rows = np.arange(self._n) if self.rows is None else self.rows
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        out = torch.empty(self.shape, dtype=torch.float32)
        where = torch.from_numpy(order)
        for k, (arr, scale) in enumerate(self.parts):  # one read per modality file
            cols = [(j, c) for j, ch in enumerate(self.channels) for kk, c in [self._chan[ch]] if kk == k]
            if not cols:
                continue
            block = torch.from_numpy(np.ascontiguousarray(arr[srt]))[:, [c for _, c in cols]]
            block = block.float() / scale if scale is not None else block.float()
            out[where[:, None], torch.tensor([j for j, _ in cols])[None, :]] = block
        return out

    def channel_sum(self, chunk: int = 1024) -> float:
        """Sum of all values of the view in float64 (read in chunks of rows)."""
        return float(sum(float(self.take(slice(i, i + chunk)).double().sum()) for i in range(0, len(self), chunk)))


def take_rows(x: "torch.Tensor | FrameArray", idx) -> torch.Tensor:
    """Rows ``idx`` of an in-memory tensor or a :class:`FrameArray` as a tensor."""
    return x[idx] if isinstance(x, torch.Tensor) else x.take(idx)


@dataclass
class FrameTable:
    """A dataset loaded into memory: the frames, their labels and subjects.

    Attributes:
        x: ``(N, C, H, W)`` float32 input (RGB in [0,1], then any extra modality channels): a tensor in
            memory, or a :class:`FrameArray` streamed from disk (:func:`materialize_to_disk`).
        au: ``(N, A)`` float32 labels 1/0/-1.
        subject: ``(N,)`` array of subject ids (str).
        aus: the FACS numbers of the A columns.
        au_intensity: ``(N, A)`` FACS intensity 0-5 (-1 unknown) where known, else None.
        sequence, frame: per-frame sequence id and frame number (for captions), may be None.
        channels: names of the C input channels, e.g. ``("r", "g", "b", "depth")``.
    """

    x: "torch.Tensor | FrameArray"
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


def _batches(dataset, modalities: Sequence[str], batch_size: int, progress: bool):
    """Yield ``(parts {modality: (B, c, H, W) float}, batch)`` over a registry dataset, in order."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    for batch in tqdm(loader, desc="loading frames", disable=not progress, leave=False):
        parts = {}
        for m in modalities:
            if m not in batch:
                raise KeyError(f"dataset samples have no {m!r} (keys: {sorted(batch)}); "
                               f"open it with modalities including {m!r}")
            parts[m] = batch[m].float()
        yield parts, batch


def _table_fields(dataset, modalities: Sequence[str], aus, labs, ints, subs, seqs, frames, n_batches) -> dict:
    """The FrameTable fields other than ``x`` from the collected per-batch metadata."""
    if not labs:
        raise ValueError("dataset is empty")
    a = tuple(aus) if aus is not None else tuple(getattr(dataset, "aus", range(labs[0].shape[1])))
    chans: list[str] = []
    for m in modalities:
        chans += ["r", "g", "b"] if m == "rgb" else [m]
    return dict(au=torch.cat(labs), subject=np.asarray(subs), aus=a,
                au_intensity=torch.cat(ints) if len(ints) == n_batches else None,
                sequence=np.asarray(seqs), frame=np.asarray(frames), channels=tuple(chans))


def _collect(batch, labs, ints, subs, seqs, frames) -> None:
    labs.append(batch["au"].float())
    if "au_intensity" in batch:
        ints.append(batch["au_intensity"].float())
    subs.extend([str(s) for s in batch["subject"]])
    seqs.extend([str(s) for s in batch.get("sequence", [""] * len(batch["au"]))])
    fr = batch.get("frame")
    frames.extend([int(f) for f in fr] if fr is not None else [-1] * len(batch["au"]))


def materialize(dataset, modalities: Sequence[str] = ("rgb",), aus: Sequence[int] | None = None,
                batch_size: int = 64, progress: bool = False) -> FrameTable:
    """Read every sample of a registry dataset (the shared sample dict) into a :class:`FrameTable`.

    Extra ``modalities`` (``depth``, ``thermal``) are concatenated after the RGB channels.

    Raises:
        KeyError: naming the modality, if a sample lacks one that was asked for.
    """
    xs, labs, ints, subs, seqs, frames = [], [], [], [], [], []
    for parts, batch in _batches(dataset, modalities, batch_size, progress):
        xs.append(torch.cat([parts[m] for m in modalities], 1))
        _collect(batch, labs, ints, subs, seqs, frames)
    fields = _table_fields(dataset, modalities, aus, labs, ints, subs, seqs, frames, len(xs))
    return FrameTable(x=torch.cat(xs), **fields)


class _Lossy(Exception):
    """A batch is not exactly representable in the integer storage."""


def materialize_to_disk(dataset, folder: str | os.PathLike, modalities: Sequence[str] = ("rgb",),
                        aus: Sequence[int] | None = None, batch_size: int = 64,
                        progress: bool = False) -> FrameTable:
    """Stream every sample of a registry dataset into memory-mapped arrays in ``folder``; return a
    :class:`FrameTable` whose ``x`` is a :class:`FrameArray` over them (nothing large stays in memory).

    Each modality is stored as ``x_<modality>.npy`` with the integer codes of :data:`QUANTA` when that
    is lossless for every frame (the in-memory and the streamed table are then identical), else as
    float32. Labels and subjects go to ``meta.pt``. The folder is written beside and renamed into
    place when complete, so an interrupted write leaves nothing that :func:`open_frame_folder` reads.
    """
    import shutil

    from au_lib.provenance import atomic_torch_save

    folder = Path(folder)
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset is empty")
    tmp = folder.with_name(folder.name + f".part{os.getpid()}")
    for quantize in (True, False):
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        arrays: dict[str, np.ndarray] = {}
        labs, ints, subs, seqs, frames = [], [], [], [], []
        nb, at = 0, 0
        try:
            for parts, batch in _batches(dataset, modalities, batch_size, progress):
                for m, v in parts.items():
                    dtype, scale = QUANTA.get(m, (np.float32, None)) if quantize else (np.float32, None)
                    if m not in arrays:
                        arrays[m] = np.lib.format.open_memmap(tmp / f"x_{m}.npy", mode="w+", dtype=dtype,
                                                              shape=(n, *v.shape[1:]))
                    if scale is not None:
                        q = (v * scale).round()
                        if not torch.equal(q.float() / scale, v) or q.min() < 0 or q.max() > np.iinfo(dtype).max:
                            raise _Lossy(m)
                        arrays[m][at:at + len(v)] = q.numpy().astype(dtype)
                    else:
                        arrays[m][at:at + len(v)] = v.numpy()
                at += len(batch["au"])
                nb += 1
                _collect(batch, labs, ints, subs, seqs, frames)
        except _Lossy:
            continue
        if at != n:
            raise ValueError(f"dataset yielded {at} samples but has length {n}")
        for a in arrays.values():
            a.flush()
        fields = _table_fields(dataset, modalities, aus, labs, ints, subs, seqs, frames, nb)
        scales = {m: (QUANTA.get(m, (None, None))[1] if quantize else None) for m in modalities}
        atomic_torch_save({**fields, "modalities": list(modalities), "scales": scales}, tmp / "meta.pt")
        del arrays
        if (folder / "meta.pt").is_file():  # another process finished the same table first: use its copy
            shutil.rmtree(tmp, ignore_errors=True)
            return open_frame_folder(folder)
        shutil.rmtree(folder, ignore_errors=True)  # a stale, incomplete folder
        try:
            tmp.rename(folder)
        except OSError:  # lost a race to another writer
            shutil.rmtree(tmp, ignore_errors=True)
        return open_frame_folder(folder)
    raise AssertionError("unreachable")  # pragma: no cover


def open_frame_folder(folder: str | os.PathLike) -> FrameTable:
    """The :class:`FrameTable` written by :func:`materialize_to_disk` (frames memory-mapped, read-only).

    Raises:
        FileNotFoundError / ValueError: naming the folder and the missing or inconsistent file.
    """
    folder = Path(folder)
    meta_path = folder / "meta.pt"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: no meta.pt, not a streamed frame table")
    meta = torch.load(meta_path, weights_only=False)
    parts = []
    for m in meta.pop("modalities"):
        f = folder / f"x_{m}.npy"
        if not f.is_file():
            raise FileNotFoundError(f"{folder}: frame array {f.name} is missing")
        parts.append((np.load(f, mmap_mode="r"), meta["scales"][m]))
    meta.pop("scales")
    x = FrameArray(parts)
    if len(x) != len(meta["au"]):
        raise ValueError(f"{folder}: {len(x)} frames but {len(meta['au'])} label rows")
    return FrameTable(x=x, **meta)


@torch.no_grad()
def extract_features(fn: Callable[[torch.Tensor], torch.Tensor], x: "torch.Tensor | FrameArray", batch_size: int = 128,
                     device: torch.device | str = "cpu", progress: bool = False) -> torch.Tensor:
    """Apply a feature extractor ``(B,C,H,W) -> (B,D)`` to all of ``x`` in batches; returns ``(N, D)`` on CPU."""
    from tqdm.auto import tqdm

    if isinstance(fn, nn.Module):
        fn.eval()
    out = []
    for i in tqdm(range(0, len(x), batch_size), desc="features", disable=not progress, leave=False):
        out.append(fn(take_rows(x, slice(i, i + batch_size)).to(device)).float().cpu())
    feats = torch.cat(out)
    if feats.ndim != 2:
        raise ValueError(f"feature extractor must return (B, D), got {tuple(feats.shape[1:])} per row")
    return feats


@torch.no_grad()
def predict(model: nn.Module, x: "torch.Tensor | FrameArray", batch_size: int = 256,
            device: torch.device | str = "cpu") -> np.ndarray:
    """Sigmoid probabilities ``(N, A)`` of ``model`` on ``x`` (evaluation mode)."""
    was = model.training
    model.eval()
    out = [torch.sigmoid(model(take_rows(x, slice(i, i + batch_size)).to(device)).float()).cpu()
           for i in range(0, len(x), batch_size)]
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
    warm-up from 0 then cosine per update, timm's scheduler; gradient clipping).

    Args:
        model: maps ``(B, ...)`` inputs to ``(B, A)`` logits.
        train, val: ``(x, labels)`` tensors; labels 1/0/-1. ``val`` selects the epoch (F1 at 0.5).
        weights: ``(A,)`` per-AU loss weights (compute them on ``train`` labels only).
        seed: seeds the shuffling and flips (a private ``torch.Generator``) and the global RNG that
            dropout and stochastic depth draw from: forked for the duration of the fit (the caller's
            RNG is untouched) and re-seeded from ``(seed, epoch)`` at every epoch, so two fits with
            the same seed, data and device are identical and a resumed fit continues the same stream.
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
    dev = torch.device(device)
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        # dropout / drop path draw from the global RNG: seed it (per rank) for this fit only; only the
        # generators of this device (CPU, and the fit's CUDA device), so no other device's RNG moves
        for g in _global_generators(dev).values():
            g.manual_seed(int(seed) * 1_000_003 + engine.dist_info().rank)
        return _fit(model, xt, yt, xv, yv, cfg, weights=weights, seed=seed, device=device, checkpoint=checkpoint,
                    monitor=monitor, progress=progress, desc=desc, amp=amp, compile=compile)


def _global_generators(device: torch.device | str) -> dict[str, torch.Generator]:
    """The global generators dropout and drop path draw from on ``device`` (CPU, and CUDA's if used)."""
    gens = {"global_cpu": torch.default_generator}
    dev = torch.device(device)
    if dev.type == "cuda":
        gens["global_cuda"] = torch.cuda.default_generators[dev.index if dev.index is not None
                                                            else torch.cuda.current_device()]
    return gens


def _fit(model, xt, yt, xv, yv, cfg: TrainConfig, *, weights, seed, device, checkpoint, monitor, progress, desc,
         amp, compile) -> FitResult:
    """The body of :func:`fit` (run inside its forked, seeded global RNG)."""
    model.to(device)
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay, cfg.layer_decay), lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(xt) / cfg.batch_size))
    sched = engine.cosine_scheduler(opt, cfg.epochs * steps_per_epoch, int(round(cfg.warmup_epochs * steps_per_epoch)))
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
            for name, g in _global_generators(device).items():  # absent in checkpoints of older versions
                if name in state.get("rng", {}):
                    g.set_state(state["rng"][name])
    images = xt.ndim == 4
    net = engine.wrap(model, device, compile=compile)

    info = engine.dist_info()

    def batches():
        perm = torch.randperm(len(xt), generator=gen)  # the same on every rank (same seed)
        for i in range(0, len(xt), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size][info.rank::info.world_size]  # under DDP: this rank's share
            if len(idx) < 2 and len(xt) >= 2:  # BatchNorm needs 2 rows
                continue
            xb, yb = take_rows(xt, idx), yt[idx]
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
            engine.save_checkpoint(ckpt, model=model, optimizer=opt, scheduler=sched,
                                   rng={"batches": gen, **_global_generators(device)},
                                   step=step, epoch=epoch + 1, history=history, config=asdict(cfg),
                                   extra={"best": best})
    model.load_state_dict(best["state"])
    model.eval()
    return FitResult(model=model, best_epoch=int(best["epoch"]), best_val_f1=float(best["f1"]), history=history)

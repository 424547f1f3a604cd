"""The training engine: one loop and one checkpoint format for every model in the package.

Each model contributes only its *step*, a function ``step_fn(model, batch, step, micro) -> losses``
(a dict whose ``"loss"`` entry is the scalar to minimise; other entries are logged). The engine owns
the rest, once:

- :func:`train_one_epoch` (the shape of MAE's ``engine_pretrain.train_one_epoch``): forward under
  autocast, backward, gradient accumulation (``no_sync`` under DDP), clipping, AMP grad scaling,
  the lr schedule (a timm scheduler's ``step_update`` before the update, or a torch scheduler's
  ``step`` after it), the non-finite-loss check, loss averaging and the tqdm bar.
- :func:`save_checkpoint` / :func:`resume`: one checkpoint format holding the model, optimiser,
  scheduler, grad scaler, generator states, step, epoch, history and the run's config; a resume is
  refused with a message naming the file and the differing config fields.
- :func:`autocast` / :func:`grad_scaler`: ``amp=True`` means bf16 on CUDA and fp32 on CPU (the
  stored CPU results are fp32), ``amp="bf16"`` bf16 on any device (CPU included), ``amp="fp16"`` fp16
  with a grad scaler on CUDA, ``amp=False`` fp32.
- :func:`wrap`: DDP when a process group is initialised, then optional ``torch.compile``. The process
  group is set up and torn down by the *caller* (:func:`init_distributed` / :func:`cleanup_distributed`,
  as ``torchrun`` expects), never inside a training function.
- Logging goes to the ``logging`` logger ``au_lib`` (rank 0 only, see :func:`log0`); per-run metrics
  to a JSONL file (:class:`JsonlLogger`).
- :func:`step_generator`: a generator seeded from (seed, rank, step), so a resumed run draws exactly
  what the uninterrupted run would have drawn.

Checkpoint file (``torch.save`` of a dict, written atomically by rank 0)::

    {"format": 1, "model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ...,
     "rng": {name: generator state}, "step": int, "epoch": int, "history": [dict, ...],
     "config": dict, "torch": version, **extra}
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from au_lib.provenance import atomic_torch_save

log = logging.getLogger("au_lib")

CHECKPOINT_FORMAT = 1

StepFn = Callable[..., Mapping[str, Any]]
"""``step_fn(model, batch, step=, micro=) -> {"loss": scalar tensor, other: float or tensor, ...}``.
An optional ``"batch_size"`` entry weights this batch in the logged means (default 1)."""


# ------------------------------------------------------------------------------------ distributed
@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """The current process group's rank and size (single process if none is initialised)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
                        dist.get_backend())
    return DistInfo()


def init_distributed(backend: str | None = None, timeout_s: float = 1800) -> DistInfo:
    """Initialise the default process group from torchrun's variables (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); for commands, not library functions.

    Without ``WORLD_SIZE`` > 1 this is a no-op returning a single-process :class:`DistInfo`.
    ``backend`` defaults to ``nccl`` with CUDA, else ``gloo``; on CUDA the device is ``cuda:LOCAL_RANK``.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist_info()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={world} but ${var} is not set: launch with torchrun")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, timeout=_dt.timedelta(seconds=timeout_s))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, backend)


def cleanup_distributed() -> None:
    """Destroy the default process group if one exists."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed(backend: str | None = None) -> Iterator[DistInfo]:
    """``with distributed() as info:`` set up the process group for a command and always tear it down."""
    info = init_distributed(backend)
    try:
        yield info
    finally:
        cleanup_distributed()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist_info().distributed:
        torch.distributed.barrier()


def process_device(prefer: torch.device | str | None = None) -> torch.device:
    """``prefer`` / ``$AU_DEVICE`` / CUDA if available, else CPU; ``cuda:LOCAL_RANK`` under DDP with CUDA."""
    from au_lib.provenance import choose_device

    info = dist_info()
    dev = choose_device(None if prefer is None else str(prefer))
    if dev.type == "cuda" and info.distributed:
        return torch.device("cuda", info.local_rank)
    return dev


def all_reduce_mean(value: float | torch.Tensor, device: torch.device | str = "cpu") -> float:
    """Mean of a scalar over all ranks (the value itself when not distributed)."""
    info = dist_info()
    t = torch.as_tensor(float(value), dtype=torch.float64, device=device)
    if info.distributed:
        torch.distributed.all_reduce(t)
        t /= info.world_size
    return float(t)


# ------------------------------------------------------------------------------------ logging
def log0(msg: str, *args: Any) -> None:
    """``logging.info`` on the ``au_lib`` logger, on rank 0 only."""
    if dist_info().is_main:
        log.info(msg, *args)


class JsonlLogger:
    """Append one JSON object per line to ``path`` (rank 0 only; others write nothing), flushed per record."""

    def __init__(self, path: str | os.PathLike | None, enabled: bool | None = None):
        self.path = Path(path) if path is not None else None
        self.enabled = (dist_info().is_main if enabled is None else enabled) and self.path is not None
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, **record: Any) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=_jsonable) + "\n")

    def rewrite(self, records: Sequence[Mapping]) -> None:
        """Replace the file's content by ``records`` (after resuming from an earlier checkpoint)."""
        if self.enabled:
            self.path.write_text("".join(json.dumps(dict(r), default=_jsonable) + "\n" for r in records))

    @staticmethod
    def read(path: str | os.PathLike) -> list[dict]:
        """All records of a JSONL log (missing file -> empty list; a torn last line is skipped)."""
        path = Path(path)
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


def _jsonable(o: Any):
    if isinstance(o, torch.Tensor):
        return o.item() if o.numel() == 1 else o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             enabled: bool = True, **kw) -> Iterator:
    """tqdm progress bar; disabled under ``$CI``, on ranks other than 0, or with ``enabled=False``."""
    from tqdm.auto import tqdm

    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    disable = (not enabled) or ci or not dist_info().is_main
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, leave=False, **kw)


def step_generator(seed: int, step: int, rank: int = 0, stream: int = 0) -> torch.Generator:
    """A CPU generator for one optimisation step, seeded from (seed, rank, step, stream)."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(rank) * 7_919 + int(step) * 104_729 + stream * 15_485_863) % (2**63 - 1))
    return g


# ------------------------------------------------------------------------------------ AMP, wrapping
def amp_dtype(device: torch.device | str, amp: bool | str | None) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (``None``: full precision).

    ``True``/``"auto"``: bf16 on CUDA, fp32 on CPU. ``"bf16"``: bf16 on any device. ``"fp16"``: fp16
    (CUDA only). ``False``/``None``/``"off"``: fp32.
    """
    dev = torch.device(device)
    key = {True: "auto", False: "off", None: "off"}.get(amp, amp) if isinstance(amp, (bool, type(None))) else str(amp).lower()
    if key == "off":
        return None
    if key == "auto":
        return torch.bfloat16 if dev.type == "cuda" else None
    if key == "bf16":
        return torch.bfloat16
    if key == "fp16":
        if dev.type != "cuda":
            raise ValueError("amp='fp16' needs a CUDA device; use amp='bf16' on CPU")
        return torch.float16
    raise ValueError(f"amp must be True, False, 'auto', 'bf16', 'fp16' or 'off', got {amp!r}")


def autocast(device: torch.device | str, amp: bool | str | None = True):
    """The autocast context for ``amp`` (see :func:`amp_dtype`); a null context in full precision."""
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def grad_scaler(device: torch.device | str, amp: bool | str | None):
    """A ``torch.amp.GradScaler`` for fp16 autocast, else ``None`` (bf16 and fp32 need none)."""
    if amp_dtype(device, amp) is torch.float16:
        return torch.amp.GradScaler(torch.device(device).type)
    return None


def wrap(model: nn.Module, device: torch.device | str, *, compile: bool = False, **ddp_kwargs) -> nn.Module:
    """``model`` in DDP when a process group is initialised, then ``torch.compile``d if asked.

    Returns the module to *call* in the steps; checkpoints always hold :func:`unwrap`'s bare weights.
    """
    dev = torch.device(device)
    net = model
    if dist_info().distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None, **ddp_kwargs)
    if compile:
        net = torch.compile(net)
    return net


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside DDP / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


# ------------------------------------------------------------------------------------ checkpoints
class ResumeError(ValueError):
    """A checkpoint exists but the run cannot continue from it (another config, unreadable file)."""


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, scaler: Any = None, rng: Mapping[str, torch.Generator] | None = None,
                    step: int = 0, epoch: int = 0, history: Sequence[Mapping] = (), config: Mapping | None = None,
                    extra: Mapping | None = None) -> Path | None:
    """Atomically write a checkpoint (rank 0 only; returns the path there, ``None`` elsewhere).

    ``epoch`` counts *completed* epochs and ``step`` completed optimiser updates. Without an optimiser
    the file is a weights snapshot (e.g. ``epoch_0010.pt``), readable by the same loaders.
    """
    if not dist_info().is_main:
        return None
    obj: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "model": unwrap(model).state_dict(), "step": int(step),
                           "epoch": int(epoch), "history": [dict(h) for h in history],
                           "config": dict(config or {}), "torch": str(torch.__version__)}
    if optimizer is not None:
        obj["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        obj["scheduler"] = scheduler.state_dict()
    if scaler is not None:
        obj["scaler"] = scaler.state_dict()
    if rng:
        obj["rng"] = {k: g.get_state() for k, g in rng.items()}
    if extra:
        obj.update(extra)
    return atomic_torch_save(obj, path)


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files an atomic write killed mid-way left in ``folder`` (``.NAME.*.tmp``,
    see :func:`au_lib.provenance.atomic_write_bytes`); returns them. For the start of a run (rank 0),
    when no other process writes into ``folder``."""
    gone = []
    for p in Path(folder).glob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """The checkpoint dict at ``path`` (read with ``weights_only=True`` by :func:`au_lib.cache.load_torch_file`).

    Raises FileNotFoundError, or :class:`au_lib.cache.DamagedFileError` (a ValueError) naming the file
    when it is empty, truncated or not a checkpoint.
    """
    from au_lib.cache import DamagedFileError, load_torch_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = load_torch_file(path, what="checkpoint", map_location=map_location,
                           advice="delete it (or pass --restart) to start over, or restore it from a backup")
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise DamagedFileError(path, f"{path}: not a training checkpoint (no 'model' entry)")
    return ckpt


def load_checkpoint(path: str | os.PathLike, *, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None, scaler: Any = None,
                    rng: Mapping[str, torch.Generator] | None = None, map_location: Any = "cpu") -> dict:
    """Read a checkpoint and load the given objects' states from it; return the dict."""
    ckpt = read_checkpoint(path, map_location)
    if model is not None:
        unwrap(model).load_state_dict(ckpt["model"])
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None and name in ckpt:
            obj.load_state_dict(ckpt[name])
    for name, g in (rng or {}).items():
        state = ckpt.get("rng", {}).get(name)
        if state is None:
            raise ResumeError(f"{path}: holds no state of generator {name!r}; use another folder or restart")
        g.set_state(state)
    return ckpt


def config_differences(saved: Mapping, current: Mapping, ignore: Iterable[str] = ()) -> list[str]:
    """``["key: saved -> current", ...]`` for the fields (nested dicts flattened with dots) that differ,
    leaving out ``ignore`` (top-level names)."""
    skip = set(ignore)
    saved = json.loads(json.dumps(dict(saved), default=str))
    current = json.loads(json.dumps(dict(current), default=str))

    def flat(d: Mapping, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            if not prefix and k in skip:
                continue
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(saved), flat(current)
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in sorted(set(a) | set(b))
            if a.get(k, "<absent>") != b.get(k, "<absent>")]


def resume(path: str | os.PathLike, config: Mapping, *, ignore: Iterable[str] = (), what: str = "run",
           model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
           scaler: Any = None, rng: Mapping[str, torch.Generator] | None = None,
           map_location: Any = "cpu") -> dict | None:
    """Continue from the checkpoint at ``path`` if there is one: ``None`` when absent, else the loaded dict.

    The checkpoint's config must equal ``config`` except the fields in ``ignore`` (run length, logging
    cadence, workers...); otherwise :class:`ResumeError` names the file and every differing field.
    """
    path = Path(path)
    if not path.is_file():
        return None
    ckpt = read_checkpoint(path, map_location)
    diffs = config_differences(ckpt.get("config", {}), config, ignore)
    if diffs:
        raise ResumeError(f"{path}: cannot resume, written with a different {what} config "
                          f"({'; '.join(diffs[:6])}{'; ...' if len(diffs) > 6 else ''}); "
                          f"use another folder or restart")
    return load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, rng=rng,
                           map_location=map_location)


# ------------------------------------------------------------------------------------ the loop
@dataclass
class Meter:
    """Weighted running means of logged values; NaN values (a loss term absent from a batch) are skipped."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    batches: int = 0

    def add(self, values: Mapping[str, float], weight: float = 1.0) -> None:
        for k, v in values.items():
            self.sums.setdefault(k, 0.0)
            self.counts.setdefault(k, 0)
            if v == v:
                self.sums[k] += v * weight
                self.counts[k] += weight
        self.batches += 1

    def means(self) -> dict[str, float]:
        return {k: (self.sums[k] / self.counts[k] if self.counts[k] else float("nan")) for k in self.sums}


def train_one_epoch(step_fn: StepFn, model: nn.Module, batches: Iterable, optimizer: torch.optim.Optimizer, *,
                    device: torch.device | str, step: int = 0, accum_iter: int = 1, max_batches: int | None = None,
                    scheduler: Any = None, clip_grad: float | None = None, amp: bool | str | None = False,
                    scaler: Any = None, meter: Meter | None = None, bar: Any = None,
                    on_update: Callable[[int, Mapping[str, float]], None] | None = None,
                    desc: str = "train") -> tuple[Meter, int]:
    """Run ``step_fn`` over ``batches`` and update ``model``; return ``(meter, step)``.

    Args:
        step_fn: ``step_fn(model, batch, step=, micro=)`` -> losses; ``model`` is the module to call
            (DDP / compiled wrapper from :func:`wrap`), ``step`` the updates done so far, ``micro``
            the batch's index in this call.
        batches: any iterable; at most ``max_batches`` are drawn (none beyond, so an infinite
            iterator keeps its position).
        step: optimiser updates done before this call (the scheduler's clock).
        accum_iter: batches per update (the loss is divided by it; DDP syncs on the last only).
        scheduler: a timm scheduler (``step_update(step)`` before each update) or a torch one
            (``step()`` after each update).
        amp / scaler: see :func:`autocast` and :func:`grad_scaler`.
        meter: accumulate into this :class:`Meter` (to average over several calls).
        bar: a tqdm bar advanced once per update, with the loss and lr as postfix.
        on_update: called as ``on_update(step, values)`` after each update with the batch's values.
    """
    bare = unwrap(model)
    meter = meter if meter is not None else Meter()
    it = batches if max_batches is None else itertools.islice(batches, max_batches)
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(it):
        boundary = (i + 1) % accum_iter == 0
        sync = contextlib.nullcontext()
        if not boundary and hasattr(model, "no_sync"):
            sync = model.no_sync()
        with sync:
            with autocast(device, amp):
                out = step_fn(model, batch, step=step, micro=i)
            loss = out["loss"]
            if not torch.isfinite(loss.detach()):
                raise FloatingPointError(f"{desc}: loss is {float(loss.detach())} at update {step}; lower the learning rate")
            scaled = loss / accum_iter
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        values = {k: float(v.detach() if isinstance(v, torch.Tensor) else v) for k, v in out.items()
                  if k != "batch_size" and not k.startswith("_")}
        meter.add(values, float(out.get("batch_size", 1)))
        if boundary:
            if scaler is not None:
                scaler.unscale_(optimizer)
            if clip_grad:
                nn.utils.clip_grad_norm_(bare.parameters(), clip_grad)
            if scheduler is not None and hasattr(scheduler, "step_update"):
                scheduler.step_update(step)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if scheduler is not None and not hasattr(scheduler, "step_update"):
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            if on_update is not None:
                on_update(step, values)
    return meter, step


def cosine_after_warmup(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """``LambdaLR`` factor of update ``k``: ``(k+1)/warmup`` during the warm-up, then a half cosine to 0.

    (Fine-tuning now uses timm's scheduler, :func:`cosine_scheduler`; this stays for the callers
    that keep a torch ``LambdaLR``, e.g. TCAE training.)
    """
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        prog = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, prog)))
    return f


def cosine_scheduler(optimizer: torch.optim.Optimizer, total_updates: int, warmup_updates: int,
                     min_lr: float = 0.0):
    """timm ``CosineLRScheduler`` stepped per optimiser update (``step_update(k)`` before update ``k``,
    as :func:`train_one_epoch` does): linear warm-up from 0 over ``warmup_updates``, then a half cosine
    to ``min_lr`` by ``total_updates`` (MAE's pre-training and fine-tuning schedule).

    Groups with an ``lr_scale`` (layer decay) keep it: timm multiplies each group's scheduled value by
    its ``lr_scale``, so their base value is set to the unscaled lr (``lr / lr_scale``) first, or the
    scale would be applied twice.
    """
    from timm.scheduler import CosineLRScheduler

    for g in optimizer.param_groups:
        g.setdefault("initial_lr", g["lr"] / g.get("lr_scale", 1.0))
    total, warm = max(1, int(total_updates)), max(0, int(warmup_updates))
    return CosineLRScheduler(optimizer, t_initial=max(1, total - warm), lr_min=min_lr, warmup_t=warm,
                             warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False)


__all__ = ["DistInfo", "dist_info", "init_distributed", "cleanup_distributed", "distributed", "barrier",
           "process_device", "all_reduce_mean", "log", "log0", "JsonlLogger", "progress", "step_generator",
           "amp_dtype", "autocast", "grad_scaler", "wrap", "unwrap", "ResumeError", "save_checkpoint", "remove_stale_temps",
           "read_checkpoint", "load_checkpoint", "config_differences", "resume", "Meter", "train_one_epoch",
           "cosine_after_warmup", "cosine_scheduler"]

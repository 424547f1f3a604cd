"""Pieces every training loop shares: distributed set-up, logging, checkpoints, AMP, progress bars.

- :func:`init_distributed` / :func:`cleanup_distributed`: DDP from ``torchrun`` environment variables
  (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); a plain single process
  when they are absent. NCCL on CUDA, gloo on CPU.
- :func:`log0`: print on rank 0 only. :class:`JsonlLogger`: one JSON object per line, rank 0 only,
  flushed every write so a crashed run keeps its log.
- :func:`save_checkpoint` (atomic) / :func:`load_checkpoint` / :func:`latest_checkpoint`: resumable runs.
- :func:`autocast`: bf16 autocast on CUDA, a no-op elsewhere (CPU runs stay fp32).
- :func:`progress`: a tqdm bar, disabled when ``$CI`` is set, on non-zero ranks, or on request.
- :func:`step_generator`: a generator seeded from (seed, rank, step), so a resumed run draws exactly
  what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from au_lib.provenance import atomic_torch_save


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
    """Initialise the default process group from torchrun's environment variables.

    Without ``WORLD_SIZE`` > 1 in the environment this is a no-op returning a single-process
    :class:`DistInfo`. ``backend`` defaults to ``nccl`` when CUDA is available, else ``gloo``. On CUDA the
    process's device is set to ``cuda:LOCAL_RANK``.
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


def process_device(info: DistInfo, prefer: str | None = None) -> torch.device:
    """``cuda:LOCAL_RANK`` under DDP with CUDA, else ``prefer`` / the default device."""
    from au_lib.provenance import choose_device

    dev = choose_device(prefer)
    if dev.type == "cuda" and info.distributed:
        return torch.device("cuda", info.local_rank)
    return dev


def log0(*args, **kwargs) -> None:
    """``print`` on rank 0 only."""
    if dist_info().is_main:
        print(*args, **kwargs, flush=True)


def all_reduce_mean(value: float | torch.Tensor, device: torch.device | str = "cpu") -> float:
    """Mean of a scalar over all ranks (the value itself when not distributed)."""
    import torch.distributed as dist

    info = dist_info()
    t = torch.as_tensor(float(value), dtype=torch.float64, device=device)
    if info.distributed:
        dist.all_reduce(t)
        t /= info.world_size
    return float(t)


class JsonlLogger:
    """Append one JSON object per line to ``path`` (rank 0 only; others write nothing)."""

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
            fh.flush()

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


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside DDP / ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    epoch: int, step: int, config: dict | None = None, scaler: Any = None,
                    extra: dict | None = None) -> Path | None:
    """Atomically write ``{"model", "optimizer", "epoch", "step", "config", ...}`` (rank 0 only).

    ``epoch`` is the number of *completed* epochs; resuming starts at that epoch. Returns the path on
    rank 0, ``None`` elsewhere.
    """
    if not dist_info().is_main:
        return None
    obj = {"model": unwrap(model).state_dict(), "epoch": int(epoch), "step": int(step),
           "config": config or {}, "torch": torch.__version__}
    if optimizer is not None:
        obj["optimizer"] = optimizer.state_dict()
    if scaler is not None:
        obj["scaler"] = scaler.state_dict()
    if extra:
        obj.update(extra)
    return atomic_torch_save(obj, path)


def load_checkpoint(path: str | os.PathLike, *, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scaler: Any = None,
                    map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model``/``optimizer``; return the dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated or foreign file
        raise ValueError(f"{path}: cannot read checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path}: not a training checkpoint (no 'model' entry)")
    if model is not None:
        unwrap(model).load_state_dict(ckpt["model"])
    if optimizer is not None and "optimizer" in ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scaler is not None and "scaler" in ckpt:
        scaler.load_state_dict(ckpt["scaler"])
    return ckpt


def latest_checkpoint(folder: str | os.PathLike, name: str = "last.pt") -> Path | None:
    """``folder/name`` if it exists, else ``None``."""
    p = Path(folder) / name
    return p if p.is_file() else None


def autocast(device: torch.device | str, enabled: bool = True, dtype: torch.dtype = torch.bfloat16):
    """bf16 autocast on CUDA when ``enabled``; a null context on CPU or when disabled."""
    dev = torch.device(device)
    if enabled and dev.type == "cuda":
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             enabled: bool = True, **kw) -> Iterator:
    """tqdm progress bar; disabled under ``$CI``, on ranks other than 0, or with ``enabled=False``."""
    from tqdm.auto import tqdm

    disable = (not enabled) or in_ci() or not dist_info().is_main
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, leave=False, **kw)


def step_generator(seed: int, step: int, rank: int = 0, stream: int = 0) -> torch.Generator:
    """A CPU generator for one optimisation step, seeded from (seed, rank, step, stream)."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(rank) * 7_919 + int(step) * 104_729 + stream * 15_485_863) % (2**63 - 1))
    return g


def set_threads(n: int | None) -> None:
    """Set torch's intra-op threads when ``n`` is given."""
    if n:
        torch.set_num_threads(int(n))

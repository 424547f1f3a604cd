#!/usr/bin/env python3
"""Speed of the displacement warp (forward + backward) against TCAE's official grid_sample path.

For each size it times, on the same inputs in one run:

* ``official``: what the released TCAE code does: identity grid (``linspace`` meshgrid) + flow,
  clamp to [-1, 1], ``F.grid_sample(align_corners=True)``, autograd backward;
* ``grid_sample``: our pixel displacement -> :func:`displacement_to_grid` -> ``F.grid_sample``;
* ``ours``: :func:`au_lib.ops.warp.warp` (the fused C kernel of :mod:`au_lib.ops.warp_cpu` on CPU,
  the Triton kernel on CUDA);
* ``ours_torch``: the same operator through its PyTorch implementation (``backend="torch"``);
* ``mixed_ours`` vs ``mixed_unfused`` (TCAE's attention mix of two fields followed by the warp).

Two gradient settings: ``disp`` (only the displacement needs a gradient, as in TCAE, whose source
is detached) and ``both``. Reports median milliseconds and the ratio ``ours / official`` (< 1 is
faster). Target: ratio <= 1 on GPU, <= 1.5 on CPU.

Usage: ``python bench/bench_warp.py [--out DIR] [--quick] [--device cpu|cuda] [--reps N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from au_lib.ops.warp import (  # noqa: E402
    displacement_to_grid,
    displacement_to_official_flow,
    mix_displacements,
    warp,
    warp_mixed,
)
from au_lib.provenance import atomic_write_json, make_provenance  # noqa: E402

SIZES = [(64, 3, 256, 256), (16, 3, 128, 128), (32, 3, 64, 64)]


def official_warp(source: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """The released TCAE code's warp: flow N x 2 x H x W in normalised units, x̂ = x + flow."""
    N, _, H, W = source.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, H, device=flow.device, dtype=flow.dtype),
                            torch.linspace(-1, 1, W, device=flow.device, dtype=flow.dtype), indexing="ij")
    grid = torch.stack([xs, ys], -1).unsqueeze(0).expand(N, H, W, 2)
    grid = (grid + flow.permute(0, 2, 3, 1)).clamp(-1, 1)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_fn(fn, reps: int, warmup: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` (forward + backward) over ``reps`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_size(shape, device, reps, warmup, grads):
    N, C, H, W = shape
    g = torch.Generator(device="cpu").manual_seed(0)
    src = torch.rand(N, C, H, W, generator=g).to(device)
    disp = (torch.randn(N, 2, H, W, generator=g) * 4).to(device)
    gout = torch.randn(N, C, H, W, generator=g).to(device)
    need_src = grads == "both"
    flow = displacement_to_official_flow(disp)

    def make(kind):
        def fn():
            s = src.detach().requires_grad_(need_src)
            if kind == "official":
                f = flow.detach().requires_grad_()
                out = official_warp(s, f)
            elif kind == "grid_sample":
                d = disp.detach().requires_grad_()
                out = F.grid_sample(s, displacement_to_grid(d), mode="bilinear", align_corners=True)
            elif kind == "ours":
                d = disp.detach().requires_grad_()
                out = warp(s, d)
            elif kind == "ours_torch":
                d = disp.detach().requires_grad_()
                out = warp(s, d, backend="torch")
            out.backward(gout)
        return fn

    kinds = ["official", "grid_sample", "ours", "ours_torch"]
    row = {"shape": list(shape), "grads": grads}
    for k in kinds:
        row[f"{k}_ms"] = 1e3 * time_fn(make(k), reps, warmup, device)
    row["ratio_ours_vs_official"] = row["ours_ms"] / row["official_ms"]
    row["ratio_ours_vs_grid_sample"] = row["ours_ms"] / row["grid_sample_ms"]
    row["ratio_ours_torch_vs_official"] = row["ours_torch_ms"] / row["official_ms"]
    return row


def bench_mixed(shape, device, reps, warmup):
    """TCAE's mixed warp: fused kernel vs mix_displacements + grid_sample (both with autograd)."""
    N, C, H, W = shape
    g = torch.Generator(device="cpu").manual_seed(1)
    src = torch.rand(N, C, H, W, generator=g).to(device)
    fields = [(torch.randn(N, 2, H, W, generator=g) * 4).to(device) for _ in range(2)]
    logits = [torch.randn(N, 1, H, W, generator=g).to(device) for _ in range(2)]
    gout = torch.randn(N, C, H, W, generator=g).to(device)

    def fused():
        xs = [t.detach().requires_grad_() for t in fields + logits]
        out, _ = warp_mixed(src, *xs)
        out.backward(gout)

    def unfused():
        xs = [t.detach().requires_grad_() for t in fields + logits]
        d, _ = mix_displacements(*xs)
        out = F.grid_sample(src, displacement_to_grid(d), mode="bilinear", align_corners=True)
        out.backward(gout)

    row = {"shape": list(shape), "grads": "mixed"}
    row["mixed_unfused_grid_sample_ms"] = 1e3 * time_fn(unfused, reps, warmup, device)
    row["mixed_ours_ms"] = 1e3 * time_fn(fused, reps, warmup, device)
    row["ratio_mixed_ours_vs_unfused"] = row["mixed_ours_ms"] / row["mixed_unfused_grid_sample_ms"]
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="folder for bench_warp.json")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (1 for the 256x256x64 case)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per case")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_warp: --device cuda requested but CUDA is not available")
    t0 = time.perf_counter()
    rows = []
    for shape in SIZES:
        big = shape[0] * shape[2] * shape[3] >= 64 * 256 * 256
        if args.reps is not None:
            reps = args.reps
        elif device.type == "cuda":
            reps = 20
        else:
            reps = 1 if (args.quick and big) else (2 if args.quick else 5)
        warmup = 1 if device.type == "cpu" else 3
        for grads in ("disp", "both"):
            row = bench_size(shape, device, reps, warmup, grads)
            rows.append(row)
            print(f"{str(tuple(shape)):>20} grads={grads:<5} official {row['official_ms']:9.1f} ms  "
                  f"grid_sample {row['grid_sample_ms']:9.1f} ms  ours {row['ours_ms']:9.1f} ms  "
                  f"(torch path {row['ours_torch_ms']:9.1f} ms)  ours/official {row['ratio_ours_vs_official']:.2f}",
                  flush=True)
        row = bench_mixed(shape, device, reps, warmup)
        rows.append(row)
        print(f"{str(tuple(shape)):>20} mixed       unfused {row['mixed_unfused_grid_sample_ms']:9.1f} ms  "
              f"ours {row['mixed_ours_ms']:9.1f} ms  ours/unfused {row['ratio_mixed_ours_vs_unfused']:.2f}",
              flush=True)
    target = 1.0 if device.type == "cuda" else 1.5
    worst = max(r.get("ratio_ours_vs_official", r.get("ratio_mixed_ours_vs_unfused")) for r in rows)
    print(f"worst ratio {worst:.2f} (target <= {target}); {'met' if worst <= target else 'MISSED'}")
    prov = make_provenance("bench", time.perf_counter() - t0, device)
    if args.out:
        path = atomic_write_json(Path(args.out) / "bench_warp.json",
                                 {"rows": rows, "target": target, "worst_ratio": worst,
                                  "threads": torch.get_num_threads(), "provenance": prov})
        print(f"wrote {path}")
    print(prov.short())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

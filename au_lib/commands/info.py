"""``au-lib info``: the active profile, device, versions, which warp kernels run, and the AU lists."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Only the common options."""


def run(args: argparse.Namespace) -> int:
    import torch

    from au_lib import __version__
    from au_lib.facs import DATASET_AUS
    from au_lib.provenance import device_name, git_commit

    profile = args.profile
    print(f"au_lib {__version__} · torch {torch.__version__} · commit {git_commit()}")
    print(f"profile: {profile}")
    print(f"device:  {device_name(args.device)}")
    print(f"warp:    {_warp_backends()}")
    for name, aus in DATASET_AUS.items():
        print(f"{name:13s} {len(aus):2d} AUs: {', '.join(map(str, aus))}")
    return 0


def _warp_backends() -> str:
    """Which implementation ``au_lib.ops.warp.warp`` uses on CPU and on CUDA here (builds the CPU kernel)."""
    import os

    import torch

    from au_lib.ops import warp_cpu

    forced = os.environ.get("AU_WARP_BACKEND", "auto")
    if warp_cpu.available():
        cpu = f"fused C kernel ({'OpenMP' if warp_cpu.uses_openmp() else 'single-threaded'}, {warp_cpu.library_path()})"
    else:
        cpu = f"PyTorch path (kernel not built: {warp_cpu.build_error()})"
    if torch.cuda.is_available():
        from au_lib.ops import warp_triton

        cuda = "Triton kernels" if warp_triton.available() else "PyTorch path (Triton unavailable)"
    else:
        cuda = "no CUDA device"
    note = f"; AU_WARP_BACKEND={forced} overrides" if forced != "auto" else ""
    return f"CPU: {cpu}; CUDA: {cuda}{note}"

"""``au-lib data synth``: generate (or verify) SynthAU views in the cache."""

from __future__ import annotations

import argparse

HELP = "generate the synthetic SynthAU dataset (views pretrain, bp4d, disfa) into the cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--view", action="append", choices=("pretrain", "bp4d", "disfa"),
                        help="view(s) to generate (repeatable; default: all three)")
    parser.add_argument("--profile", default=None, help="smoke|cpu|paper (default: $AU_PROFILE or cpu)")
    parser.add_argument("--size", type=int, default=None, help="image size in pixels (32-512; default: profile's)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--root", default=None, help="cache folder (default $AU_CACHE/synthau or .cache/synthau)")
    parser.add_argument("--device", default="cpu", help="torch device for rendering (default cpu)")
    parser.add_argument("--workers", type=int, default=2, help="CPU processes for generation (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from au_lib.data.synth.dataset import open_dataset
    from au_lib.profiles import check_profile, current_profile

    profile = check_profile(args.profile) if args.profile else current_profile()
    for view in args.view or ("pretrain", "bp4d", "disfa"):
        mods = ("rgb", "depth", "thermal")
        ds = open_dataset(view=view, profile=profile, image_size=args.size, seed=args.seed, root=args.root,
                          modalities=mods, progress=not args.no_progress, device=args.device,
                          workers=args.workers)
        print(f"{view:8s} {len(ds.subjects):3d} subjects {len(ds):6d} frames {ds.image_size}px -> {ds.folder}")
    return 0

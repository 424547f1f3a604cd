"""``au-lib info``: the active profile, device, versions and the AU lists."""

from __future__ import annotations

import argparse

HELP = "show the active profile, device, versions and dataset AU lists"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default=None, help="smoke|cpu|paper (default: $AU_PROFILE or cpu)")


def run(args: argparse.Namespace) -> int:
    import torch

    from au_lib import __version__
    from au_lib.facs import DATASET_AUS
    from au_lib.profiles import check_profile, current_profile
    from au_lib.provenance import device_name, git_commit

    profile = check_profile(args.profile) if args.profile else current_profile()
    print(f"au_lib {__version__} · torch {torch.__version__} · commit {git_commit()}")
    print(f"profile: {profile}")
    print(f"device:  {device_name()}")
    for name, aus in DATASET_AUS.items():
        print(f"{name:13s} {len(aus):2d} AUs: {', '.join(map(str, aus))}")
    return 0

"""Pilot for issue 14, diagnostic (not a chapter result): the same linear probe as
``bench/pilot_label_scarce.py`` on MCM patch tokens average-pooled to a ``G x G`` grid (spatial
layout kept) instead of the global mean, for the pre-trained and the initial encoder.

    AU_PROFILE=cpu python bench/pilot_grid_probe.py --run <cache>/pilot14/mcm-cpu-e3 --grid 2 4

Reuses the checkpoints the label-scarce pilot wrote. Prints mean F1 (%) with spreads. Synthetic data.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch


def grid_features(ckpt: Path, x, grid: int, batch: int = 128) -> torch.Tensor:
    """``(N, G*G*D)``: patch tokens of the RGB encoder average-pooled to a G x G grid."""
    from au_lib.models.mcm import load_pretrained_encoder
    from au_lib.train.finetune import extract_features

    enc = load_pretrained_encoder(str(ckpt)).eval()

    def fn(xb: torch.Tensor) -> torch.Tensor:
        tok = enc.forward_tokens(xb)[:, 1:]
        side = int(math.isqrt(tok.shape[1]))
        t = tok.transpose(1, 2).reshape(len(xb), -1, side, side)
        return torch.nn.functional.adaptive_avg_pool2d(t, grid).flatten(1)
    return extract_features(fn, x, batch)


def main() -> None:
    from au_lib.data.registry import dataset_folds
    from au_lib.experiments.methods import Method
    from au_lib.experiments.protocol import aggregate, load_table, protocol_settings, run_fold

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--grid", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--profile", default="cpu")
    args = ap.parse_args()
    base = protocol_settings(args.profile, seeds=tuple(args.seeds), report_test_tuned=False)
    table = load_table("synthau", {"view": "bp4d"}, ("rgb",), base.image_size, args.profile, base.max_frames_per_subject)
    folds = dataset_folds("synthau", profile=args.profile, view="bp4d")
    ckpts = {"pre-trained": args.run / "last.pt", "at init": args.run / "epoch_0000.pt"}
    for g in args.grid:
        for name, ck in ckpts.items():
            feats = grid_features(ck, table.x[:, :3], g)
            for frac in args.fractions:
                t0 = time.time()
                s = replace(base, label_fraction=None if frac >= 1 else frac)
                outs = [run_fold(table, f, Method("probe", "pixels"), s, seed=seed, features=feats)
                        for seed in s.seeds for f in folds]
                h = aggregate(outs, table.aus)["honest"]
                print(json.dumps({"grid": g, "encoder": name, "fraction": frac, "dim": int(feats.shape[1]),
                                  "mean_f1": round(100 * h["mean"], 2), "std_over_folds": round(100 * h["std_over_folds"], 2),
                                  "std_over_seeds": None if h["std_over_seeds"] is None else round(100 * h["std_over_seeds"], 2),
                                  "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""SynthAU's learnability bar: a small ResNet from scratch and a pixel probe on the BP4D-like and DISFA-like
views (fold 1), thresholds from validation subjects, F1 on held-out subjects, beside "every AU present".

Targets (SynthAU v3): mean F1 >= 80 on BP4D-like (every AU >= 50) and >= 75 on DISFA-like, a small
train/test gap, the pixel probe clearly above the all-present baseline, within 20 minutes on 2 cores.
Writes ``<out>/<profile>-<view>.json`` result files (atomically; reused when the settings and the
generator version are unchanged, so the data chapter can show them) and prints a summary. The book's
stored results come from ``python bench/bench_learnability.py --out book/results/learnability``.

Usage: ``python bench/bench_learnability.py [--out DIR] [--profile cpu] [--views bp4d disfa] [--threads 2]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from au_lib.experiments.learnability import learnability_result  # noqa: E402

TARGETS = {"bp4d": 80.0, "disfa": 75.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench", help="output folder")
    ap.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "paper"))
    ap.add_argument("--views", nargs="+", default=["bp4d", "disfa"], choices=("bp4d", "disfa"))
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = Path(args.out)
    for view in args.views:
        res = learnability_result(view, out / f"{args.profile}-{view}.json", profile=args.profile,
                                  progress=not args.no_progress)
        r = res["metrics"]
        cnn, probe, base = 100 * r["cnn"]["test"]["mean"], 100 * r["probe"]["test"]["mean"], 100 * r["all_present"]["mean"]
        train = 100 * r["cnn"]["train"]["mean"]
        worst = min(zip(r["cnn"]["test"]["per_au"], r["aus"]))
        ok = cnn >= TARGETS[view] and (view != "bp4d" or 100 * worst[0] >= 50)
        print(f"{view}: {r['settings']['arch']} {cnn:.1f} (train {train:.1f}; worst AU{worst[1]} {100 * worst[0]:.1f}) | "
              f"pixel probe {probe:.1f} | all present {base:.1f} | target {TARGETS[view]:.0f}: "
              f"{'met' if ok else 'MISSED'} | {r['wall_s'] / 60:.1f} min")
    wall = time.perf_counter() - t0
    print(f"total {wall / 60:.1f} min on {args.threads} threads (0 if reused); results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Pilot for issue 14 (not a chapter result): does MCM pre-training give a linear probe that beats the
same probe on the randomly initialised encoder when labels are scarce?

    AU_PROFILE=cpu python bench/pilot_label_scarce.py --epochs 4 --fractions 0.1 1.0 --seeds 0 1 2
    AU_PROFILE=cpu python bench/pilot_label_scarce.py --chapter-run --fractions 0.1 1.0 --seeds 0 1 2
    AU_PROFILE=cpu python bench/pilot_label_scarce.py --chapter-run --grid --fractions 0.1 1.0 --seeds 0 1 2

``--chapter-run`` probes the MCM chapter's pre-trained encoder (:func:`au_lib.experiments.pretrained.pretrained_mcm`,
trained if missing) and that run's initial weights instead of pre-training a pilot run. ``--grid`` probes
the encoders' tokens pooled onto a 4 x 4 grid of the face (``probe:mcm-grid``) instead of their mean.

Pre-trains the ``cpu`` MCM (:data:`au_lib.train.pretrain.PRETRAIN_PROFILES`, augmentation on) for
``--epochs`` on the whole SynthAU pre-training pool into ``<cache>/pilot14/``, keeps its initial
weights as ``epoch_0000.pt``, then runs the ``cpu`` protocol's linear probe (``probe:mcm``) on both
checkpoints and the pixel probe on the BP4D-like view (``--view disfa``: the DISFA-like one), at each label fraction (``label_fraction``:
seeded subject-exclusive subsets of each fold's training subjects), and prints mean F1 (%) with the
spread over folds and seeds, and the all-present baseline on the same test frames. Synthetic data.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from types import SimpleNamespace

import torch


def main() -> None:
    from au_lib.cache import cache_root
    from au_lib.experiments.ablations import initial_checkpoint
    from au_lib.experiments.methods import Method
    from au_lib.experiments.protocol import load_table, protocol_settings, run_protocol
    from au_lib.experiments.analysis import all_present_f1
    from au_lib.train.pretrain import open_pretrain_dataset, pretrain, resolve_config

    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--chapter-run", action="store_true", help="probe the MCM chapter's run instead of a pilot run")
    ap.add_argument("--grid", action="store_true", help="probe a 4 x 4 grid of pooled tokens (probe:mcm-grid)")
    ap.add_argument("--view", default="bp4d", choices=("bp4d", "disfa"), help="SynthAU view to probe (default bp4d)")
    args = ap.parse_args()

    root = cache_root() / "pilot14"
    prof = args.profile
    if args.chapter_run:
        from au_lib.experiments.pretrained import pretrained_mcm

        cfg = resolve_config(prof)
        ckpt, run = pretrained_mcm(prof)
        run_dir = root / f"mcm-{prof}-chapter"
        initial_checkpoint(cfg, run_dir / "epoch_0000.pt")
        args.epochs = run["extra"]["epochs_done"]
        ds = open_pretrain_dataset("synthau", cfg, prof)
        res = SimpleNamespace(checkpoint=ckpt)
    else:
        cfg = resolve_config(prof, epochs=args.epochs, save_epochs=())
        run_dir = root / f"mcm-{prof}-e{args.epochs}"
        t0 = time.time()
        ds = open_pretrain_dataset("synthau", cfg, prof)
        print(f"pre-training pool: {len(ds)} frames (opened in {time.time() - t0:.0f} s)", flush=True)
        initial_checkpoint(cfg, run_dir / "epoch_0000.pt")
        t0 = time.time()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            res = pretrain(cfg, ds, run_dir, device="cpu", show_progress=False)
        print(f"pre-training: {args.epochs} epochs, loss {[round(h['loss'], 4) for h in res.history]}, "
              f"{time.time() - t0:.0f} s", flush=True)

    base = protocol_settings(prof, seeds=tuple(args.seeds), report_test_tuned=False)
    mcm = "mcm-grid" if args.grid else "mcm"
    methods = {f"probe:{mcm} pre-trained": Method("probe", mcm, checkpoint=str(res.checkpoint)),
               f"probe:{mcm} at init": Method("probe", mcm, checkpoint=str(run_dir / "epoch_0000.pt")),
               "probe:pixels": Method("probe", "pixels")}
    out: dict = {"profile": prof, "epochs": args.epochs, "pool": len(ds), "rows": []}
    table = load_table("synthau", {"view": args.view}, ("rgb",), base.image_size, prof, base.max_frames_per_subject)
    for frac in args.fractions:
        s = replace(base, label_fraction=None if frac >= 1 else frac)
        for label, m in methods.items():
            t0 = time.time()
            r = run_protocol(m, "synthau", {"view": args.view}, profile=prof, settings=s, device="cpu", progress=False,
                             out=root / "results" / f"{prof}-{args.view}-{run_dir.name}-f{frac:g}-{label.replace(' ', '_').replace(':', '_')}.json")
            h = r["metrics"]["honest"]
            row = {"fraction": frac, "method": label, "mean_f1": round(100 * h["mean"], 2),
                   "std_over_folds": round(100 * h["std_over_folds"], 2),
                   "std_over_seeds": None if h["std_over_seeds"] is None else round(100 * h["std_over_seeds"], 2),
                   "runs": len(h["per_fold_mean"]), "seconds": round(time.time() - t0)}
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
    out["all_present"] = round(100 * all_present_f1(table, r), 2)  # same test frames in every run
    print(json.dumps({"all_present_mean_f1": out["all_present"]}))
    (root / "results").mkdir(parents=True, exist_ok=True)
    (root / "results" / f"summary-{prof}-{args.view}-e{args.epochs}{'-grid' if args.grid else ''}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

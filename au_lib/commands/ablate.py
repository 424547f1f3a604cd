"""``au-lib ablate {epochs,mask-ratio,nomix,all}``: the MCM supplementary's Fig. 1 sweeps.

Pre-trains MCM once per run (checkpoints at the sweep's epochs), fine-tunes every checkpoint with the
3-fold AU protocol and writes one result file per point. Re-running resumes: finished points are
reused, interrupted pre-training and fine-tuning continue from their checkpoints. Spread a sweep over
several GPUs by starting one process per GPU, e.g.::

    for i in 0 1 2 3; do CUDA_VISIBLE_DEVICES=$i au-lib ablate all --profile paper & done   # file locks
    CUDA_VISIBLE_DEVICES=1 au-lib ablate mask-ratio --profile paper --shard 1/4             # static
"""

from __future__ import annotations

import argparse

from au_lib.commands import comma_list, fraction, nonnegative_int, output_dir

CHOICES = ("epochs", "mask-ratio", "nomix", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", choices=CHOICES, help="which sweep (all: the three, sharing runs)")
    parser.add_argument("--results", default=None, type=output_dir,
                        help="result folder (default: $AU_RESULTS/ablations/cpu for cpu when set, else the cache)")
    parser.add_argument("--work", default=None, type=output_dir, help="checkpoint folder (default <cache>/ablations/work/<profile>)")
    parser.add_argument("--shard", default=None, help="i/n: this process computes points i, i+n, ... (0-based)")
    parser.add_argument("--epochs", default=None, type=comma_list(nonnegative_int, "epochs"), help="override the epoch sweep's checkpoints, e.g. 0,10,50,100")
    parser.add_argument("--mask-ratios", default=None, type=comma_list(fraction, "ratios"), help="override the ratios, e.g. 0.25,0.5,0.75")
    parser.add_argument("--list", action="store_true", help="list the points and whether they are done; compute nothing")
    parser.add_argument("--no-reuse", action="store_true", help="recompute points even if valid results exist")


def run(args: argparse.Namespace) -> int:
    from au_lib.experiments.ablations import SWEEPS, all_points, ablation_settings, default_dirs, run_ablations
    from au_lib.experiments.sweep import load_sweep, parse_shard

    profile = args.profile
    over = {}
    if args.epochs:
        over["epochs"] = args.epochs
    if args.mask_ratios:
        over["mask_ratios"] = args.mask_ratios
    settings = ablation_settings(profile, **over)
    sweeps = SWEEPS if args.sweep == "all" else (args.sweep,)
    res_d, work_d = default_dirs(profile)
    results = args.results or res_d
    if args.list:
        pts = all_points(sweeps, settings, profile)
        done = load_sweep(pts, results)
        for p in pts:
            mark = f"F1 {100 * done[p.name]['metrics']['mean']:5.1f}" if p.name in done else "todo    "
            print(f"{mark}  {p.name}")
        print(f"{len(done)}/{len(pts)} points done in {results}")
        return 0
    pts, rep = run_ablations(sweeps, profile, settings=settings, results_dir=results, work_dir=args.work or work_d,
                             device=args.device, shard=parse_shard(args.shard), reuse=not args.no_reuse,
                             progress=not args.no_progress, log=print)
    print(rep.summary())
    for name, r in rep.results.items():
        m = r["metrics"]
        print(f"{name:34s} F1 {100 * m['mean']:5.1f} ± {100 * m['std_over_folds']:4.1f} (folds)   "
              f"held-out recon MSE {m['recon_heldout']['mean']:.4f}")
    print(f"results: {results}")
    return 0

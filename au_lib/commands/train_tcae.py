"""``au-lib train-tcae``: train the twin-cycle autoencoder on frame pairs (resumable; DDP via torchrun).

Examples::

    au-lib train-tcae --data synthau --out runs/tcae_synth            # profile from $AU_PROFILE
    au-lib train-tcae --data video --profile paper --steps 20000 --out runs/tcae_video
    torchrun --nproc_per_node 4 -m au_lib train-tcae --data synthau --profile paper --out runs/tcae
    au-lib train-tcae --data synthau --official --out runs/tcae_official   # the released code's switches
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="synthau", choices=("synthau", "video", "toy"),
                        help="pair source (default synthau)")
    parser.add_argument("--out", default=None,
                        help="run folder (checkpoints, log.jsonl; default <cache>/tcae/<data>_<profile>, the "
                             "TCAE chapter's run for synthau); resumed if it has last.pt")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the profile's)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per step and process")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default=None)
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-jitter", action="store_true", help="turn off the independent random crops")
    parser.add_argument("--official", action="store_true",
                        help="the released code's switches: tanh-bounded attention, detached cycle input, "
                             "extra output-consistency terms, curriculum over the easiest 50%%")
    parser.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default=None,
                        help="mixed precision: auto = bf16 on CUDA, fp32 on CPU (the profile's default); "
                             "bf16 also on CPU; fp16 with a grad scaler (CUDA); off = fp32")
    parser.add_argument("--no-amp", dest="amp", action="store_const", const="off", help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--restart", action="store_true", help="ignore an existing last.pt (no resume)")


def run(args: argparse.Namespace) -> int:
    from au_lib.train.engine import distributed, log0
    from au_lib.train.tcae import OFFICIAL_SWITCHES, default_run_dir, train_config, train_tcae

    profile = args.profile
    overrides = {k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                                   "optimizer": args.optimizer, "checkpoint_every": args.checkpoint_every,
                                   "num_workers": args.num_workers, "seed": args.seed}.items() if v is not None}
    if args.no_jitter:
        overrides["jitter"] = False
    if args.amp is not None:
        overrides["amp"] = {"auto": True, "off": False}.get(args.amp, args.amp)
    cfg = train_config(profile, model_overrides=OFFICIAL_SWITCHES if args.official else None, **overrides)
    out = args.out or default_run_dir(args.data, profile)
    with distributed():
        res = train_tcae(cfg, out, data=args.data, device=args.device, progress=not args.no_progress,
                         resume=not args.restart, profile=profile, compile=args.compile)
        last = res.history[-1] if res.history else {}
        log0(f"train-tcae: {res.step} steps in {res.run_dir} "
             f"(recon L1 {last.get('recon', float('nan')):.4f}, total {last.get('total', float('nan')):.4f})")
    return 0

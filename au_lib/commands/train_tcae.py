"""``au-lib train-tcae``: train the twin-cycle autoencoder on frame pairs (resumable; DDP via torchrun).

Examples::

    au-lib train-tcae --data synthau --out runs/tcae_synth            # profile from $AU_PROFILE
    au-lib train-tcae --data video --profile paper --steps 20000 --out runs/tcae_video
    torchrun --nproc_per_node 4 -m au_lib train-tcae --data synthau --profile paper --out runs/tcae
    au-lib train-tcae --data synthau --official --out runs/tcae_official   # the released code's switches
"""

from __future__ import annotations

import argparse

from au_lib.commands import nonnegative_int, output_dir, positive_float, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="synthau", choices=("synthau", "video", "toy"),
                        help="pair source (default synthau)")
    parser.add_argument("--out", default=None, type=output_dir,
                        help="run folder (checkpoints, log.jsonl; default <cache>/tcae/<data>_<profile>, the "
                             "TCAE chapter's run for synthau); resumed if it has last.pt")
    parser.add_argument("--steps", type=positive_int, default=None, help="optimiser steps (default: the profile's)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="pairs per step and process")
    parser.add_argument("--lr", type=positive_float, default=None)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default=None)
    parser.add_argument("--checkpoint-every", type=positive_int, default=None)
    parser.add_argument("--num-workers", type=nonnegative_int, default=None)
    parser.add_argument("--seed", type=nonnegative_int, default=None)
    parser.add_argument("--jitter", choices=("independent", "shared", "off"), default=None,
                        help="random crops: independent in source and target (the paper's), the same crop in "
                             "both, or none (default: the profile's)")
    parser.add_argument("--no-jitter", dest="jitter", action="store_const", const="off", help=argparse.SUPPRESS)
    parser.add_argument("--lighting", choices=("scene", "flat"), default=None,
                        help="SynthAU pairs: each video's light (shading changes as the head turns, which no "
                             "warp explains) or ambient light only (default: flat)")
    parser.add_argument("--schedule", choices=("none", "cosine", "official"), default=None,
                        help="learning-rate schedule (official: curriculum moves and ReduceLROnPlateau on a "
                             "validation loss; needs --validate-every)")
    parser.add_argument("--validate-every", type=positive_int, default=None, help="updates between validations")
    parser.add_argument("--val-pairs", type=positive_int, default=None, help="held-out pairs for validation")
    parser.add_argument("--paper-settings", action="store_true",
                        help="the paper's values of the settings the cpu profile changes: fields bounded to "
                             "half the image, random initialisation, plain squared-L2 code terms, the attention "
                             "mix of the two fields, an L1 reconstruction, independent crops, SGD at a constant "
                             "lr 1e-3, every term from the first update")
    parser.add_argument("--official", action="store_true",
                        help="the released code exactly: tanh-bounded attention, detached cycle input, "
                             "output-consistency terms, five encoder calls, the curriculum window and its "
                             "plateau schedule with validation, SGD, independent crops, the paper's settings")
    parser.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default=None,
                        help="mixed precision: auto = bf16 on CUDA, fp32 on CPU (the profile's default); "
                             "bf16 also on CPU; fp16 with a grad scaler (CUDA); off = fp32")
    parser.add_argument("--no-amp", dest="amp", action="store_const", const="off", help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--restart", action="store_true", help="ignore an existing last.pt (no resume)")


def run(args: argparse.Namespace) -> int:
    from au_lib.train.engine import distributed, log0
    from au_lib.models.tcae import PAPER_SETTINGS
    from au_lib.train.tcae import PAPER_TRAINING, default_run_dir, train_config, train_tcae

    profile = args.profile
    overrides = dict(PAPER_TRAINING) if args.paper_settings else {}
    overrides.update({k: v for k, v in {
        "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "optimizer": args.optimizer,
        "checkpoint_every": args.checkpoint_every, "num_workers": args.num_workers, "seed": args.seed,
        "jitter": args.jitter, "schedule": args.schedule, "validate_every": args.validate_every,
        "val_pairs": args.val_pairs}.items() if v is not None})
    if args.amp is not None:
        overrides["amp"] = {"auto": True, "off": False}.get(args.amp, args.amp)
    try:
        cfg = train_config(profile, model_overrides=PAPER_SETTINGS if args.paper_settings else None,
                           official=args.official, **overrides)
    except ValueError as exc:  # a setting that makes no sense: one line, exit code 2
        import sys

        print(f"train-tcae: {exc}", file=sys.stderr)
        return 2
    out = args.out or default_run_dir(args.data, profile)
    with distributed():
        options = {"lighting": args.lighting} if args.lighting and args.data == "synthau" else None
        res = train_tcae(cfg, out, data=args.data, device=args.device, progress=not args.no_progress,
                         resume=not args.restart, profile=profile, compile=args.compile, data_options=options)
        last = res.history[-1] if res.history else {}
        log0(f"train-tcae: {res.step} steps in {res.run_dir} "
             f"(recon L1 {last.get('recon', float('nan')):.4f}, total {last.get('total', float('nan')):.4f})")
    return 0

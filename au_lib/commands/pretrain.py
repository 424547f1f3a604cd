"""``au-lib pretrain``: MCM pre-training (channel-mixing masked autoencoder) on a dataset's pre-training pool.

Single process: ``python -m au_lib pretrain --data synthau --profile cpu``.
Multi-GPU / multi-node: ``torchrun --nproc_per_node 8 -m au_lib pretrain --data bp4dplus --profile paper``
(the batch size is per process; the lr scales with the effective batch as in MAE).
"""

from __future__ import annotations

import argparse

from au_lib.commands import (comma_list, fraction, nonnegative_float, nonnegative_int, output_dir, positive_float,
                             positive_int)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="synthau",
                        help="synthau | bp4dplus | bp4d | disfa | random (pre-training pool; default synthau)")
    parser.add_argument("--out", default=None, type=output_dir, help="run folder (default <cache>/mcm/<profile>)")
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument("--batch-size", type=positive_int, default=None, help="per process and micro-step")
    parser.add_argument("--accum-iter", type=positive_int, default=None, help="gradient accumulation steps")
    parser.add_argument("--blr", type=positive_float, default=None, help="base lr: lr = blr * effective batch / 256")
    parser.add_argument("--lr", type=positive_float, default=None, help="absolute lr (overrides --blr)")
    parser.add_argument("--warmup-epochs", type=nonnegative_float, default=None)
    parser.add_argument("--mask-ratio", type=fraction, default=None, help="spatial mask ratio (paper: 0.5)")
    parser.add_argument("--norm-pix-loss", action="store_true", default=None, help="MAE per-patch normalised targets")
    parser.add_argument("--no-subset-embedding", action="store_true",
                        help="do not tell the encoder which channels it was given")
    parser.add_argument("--save-epochs", default=None, type=comma_list(positive_int, "epochs"), help="keep checkpoints after these epochs, e.g. 10,20,50")
    parser.add_argument("--save-every", type=positive_int, default=None, help="write last.pt every N epochs")
    parser.add_argument("--num-samples", type=positive_int, default=None, help="size of a synthetic pool")
    parser.add_argument("--num-workers", type=nonnegative_int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default=None,
                        help="mixed precision: auto = bf16 on CUDA, fp32 on CPU (the profile's default); "
                             "bf16 also on CPU; fp16 with a grad scaler (CUDA); off = fp32")
    parser.add_argument("--no-amp", dest="amp", action="store_const", const="off", help=argparse.SUPPRESS)
    parser.add_argument("--crop-scale", default=None,
                        help="RandomResizedCrop area range MIN,MAX applied to all modalities (default 0.2,1.0, MAE)")
    parser.add_argument("--no-crop", action="store_true", help="no random crop (FMAE's face recipe: resize only)")
    parser.add_argument("--no-hflip", action="store_true", help="no random horizontal flip")
    parser.add_argument("--restart", action="store_true", help="start over even if OUT/last.pt exists")
    parser.add_argument("--no-resume", dest="restart", action="store_true", help=argparse.SUPPRESS)  # former name


def run(args: argparse.Namespace) -> int:
    from au_lib.train.engine import distributed, log0
    from au_lib.train.pretrain import resolve_config, run_pretraining

    profile = args.profile
    over = dict(epochs=args.epochs, batch_size=args.batch_size, accum_iter=args.accum_iter, blr=args.blr,
                lr=args.lr, warmup_epochs=args.warmup_epochs, save_every=args.save_every,
                num_samples=args.num_samples, num_workers=args.num_workers, seed=args.seed)
    if args.save_epochs is not None:
        over["save_epochs"] = args.save_epochs
    if args.compile:
        over["compile"] = True
    if args.amp is not None:
        over["amp"] = {"auto": True, "off": False}.get(args.amp, args.amp)
    if args.mask_ratio is not None:
        over["mask_ratio"] = args.mask_ratio
    if args.norm_pix_loss:
        over["norm_pix_loss"] = True
    if args.no_subset_embedding:
        over["subset_embedding"] = False
    if args.lr is None:
        over.pop("lr")
    if args.crop_scale is not None:
        try:
            lo, hi = (float(v) for v in args.crop_scale.split(","))
        except ValueError:
            raise ValueError(f"--crop-scale {args.crop_scale!r}: expected MIN,MAX, e.g. 0.2,1.0") from None
        over["crop_scale"] = (lo, hi)
    if args.no_hflip:
        over["hflip"] = False
    cfg = resolve_config(profile, **over)
    if args.no_crop:
        from dataclasses import replace

        cfg = replace(cfg, crop_scale=None)
    with distributed() as info:
        res = run_pretraining(cfg, args.data, args.out, profile=profile, device=args.device,
                              show_progress=not args.no_progress, resume=not args.restart)
        m = res["metrics"]
        log0(f"done: {res['extra']['epochs_done']} epochs, loss {m['loss']:.4f} "
             f"(rgb {m['loss_rgb']:.4f}, depth {m['loss_depth']:.4f}, thermal {m['loss_thermal']:.4f}); "
             f"{res['path']} [{info.world_size} process(es)]")
    return 0

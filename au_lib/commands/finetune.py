"""``au-lib finetune``: the 3-fold AU detection protocol for a trained network (MCM fine-tuning or a
supervised baseline from scratch). Writes a result file (per-AU F1, mean, config, provenance)."""

from __future__ import annotations

import argparse

from au_lib.commands import comma_list, nonnegative_int, output_file, positive_float, positive_int

KINDS = ("scratch", "finetune")
EXAMPLES = "scratch:resnet18, scratch:vit, finetune:mcm, finetune:mcm:fusion"


def add_arguments(parser: argparse.ArgumentParser, examples: str = EXAMPLES) -> None:
    parser.add_argument("--method", required=True, help=f"what to train: {examples}")
    parser.add_argument("--checkpoint", default=None, help="pre-trained weights (MCM, TCAE)")
    parser.add_argument("--data", default=None, help="synthau|bp4d|disfa|bp4dplus (default $AU_DATA or synthau)")
    parser.add_argument("--dataset", dest="data", help=argparse.SUPPRESS)  # the former name
    parser.add_argument("--view", default=None, help="synthau only: bp4d (12 AUs) or disfa (8 AUs)")
    parser.add_argument("--root", default=None, help="dataset root (licensed datasets)")
    parser.add_argument("--seeds", default=None, type=comma_list(nonnegative_int, "seeds"),
                        help="comma-separated seeds (default: the profile's)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="override the profile's epochs")
    parser.add_argument("--label-fraction", type=positive_float, default=None,
                        help="label-scarce: train on this seeded fraction of each fold's training subjects")
    parser.add_argument("--stream-frames", action="store_true", default=None,
                        help="read frames memory-mapped from disk instead of memory (the paper profile does)")
    parser.add_argument("--amp", choices=("auto", "bf16", "off"), default=None,
                        help="training autocast: auto = bf16 on CUDA, fp32 on CPU (default); bf16 also on CPU")
    parser.add_argument("--out", default=None, type=output_file,
                        help="result file (default <cache>/results/detection/<profile>/...)")
    parser.add_argument("--no-reuse", action="store_true", help="recompute even if a result with this config exists")
    parser.add_argument("--save-detector", default=None, metavar="FILE",
                        help="also save the first fold's classifier with its validation thresholds as a detector "
                             "file for 'au-lib detect' (RGB methods)")


def run_protocol_command(args: argparse.Namespace, kinds: tuple[str, ...]) -> int:
    """Shared body of ``finetune`` and ``evaluate``."""
    from dataclasses import replace

    from au_lib.data.registry import dataset_name
    from au_lib.experiments.analysis import results_table
    from au_lib.experiments.methods import Method
    from au_lib.experiments.protocol import protocol_settings, run_protocol

    profile = args.profile
    method = Method.parse(args.method, args.checkpoint)
    if method.kind not in kinds:
        raise ValueError(f"--method {args.method!r}: this command runs {' / '.join(kinds)} methods")
    if args.save_detector and method.modality != "rgb":
        raise ValueError(f"--save-detector: {method.name} reads depth and thermal too; detectors read RGB only")
    settings = protocol_settings(profile)
    if args.seeds:
        settings = replace(settings, seeds=tuple(args.seeds))
    if args.epochs is not None:
        key = {"probe": "probe", "scratch": "scratch", "finetune": "finetune"}[method.kind]
        settings = replace(settings, **{key: replace(getattr(settings, key), epochs=args.epochs)})
    if args.label_fraction is not None:
        if not 0 < args.label_fraction <= 1:
            raise ValueError(f"--label-fraction must be in (0, 1], got {args.label_fraction}")
        settings = replace(settings, label_fraction=args.label_fraction)
    if args.stream_frames:
        settings = replace(settings, stream_frames=True)
    if args.amp is not None:
        settings = replace(settings, amp={"auto": True, "off": False}.get(args.amp, args.amp))
    name = dataset_name(args.data)
    options = {}
    if args.view:
        options["view"] = args.view
    if args.root:
        options["root"] = args.root
    res = run_protocol(method, name, options, profile=profile, settings=settings, out=args.out,
                       device=args.device, progress=not args.no_progress, reuse=not args.no_reuse,
                       save_detector=args.save_detector)
    met = res["metrics"]
    print(f"{method.name} on {name}{' (' + args.view + ')' if args.view else ''}, profile {profile}: "
          f"mean F1 {100 * met['honest']['mean']:.1f} "
          f"(+/- {100 * met['honest']['std_over_folds']:.1f} over folds; at 0.5: "
          f"{100 * met['fixed_threshold']['mean']:.1f})")
    print(results_table({method.name: res}).round(1).to_string())
    print(f"result: {res['path']}")
    if args.save_detector:
        print(f"detector: {args.save_detector}")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_protocol_command(args, KINDS)

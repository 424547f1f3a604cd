"""Command line: ``python -m au_lib`` (installed as ``au-lib``).

Each subcommand lives in its own module under ``au_lib.commands`` exposing
``add_arguments(parser)`` and ``run(args) -> int``; its one-line help is in :data:`SUBCOMMANDS`, so
``au-lib --help`` imports no subcommand (and no torch). Only the chosen subcommand's module is
imported, and its heavy imports happen inside ``run``.

The options every training/evaluation command shares are declared once (:func:`common_options`):
``--profile`` (validated here; commands receive the resolved name), ``--device``, ``--no-progress``.
Names are the same across commands: ``--data`` (the dataset), ``--out`` (the run folder or result
file; always optional, defaulting to the cache), ``--restart`` (ignore a checkpoint to resume from).
Messages go to the ``logging`` logger ``au_lib`` (INFO, stderr).

Errors are one line on stderr and exit status 2: option values that make no sense are refused while
parsing by the types in :mod:`au_lib.commands` (``--epochs 0``, ``--lr nan``, ``--device cuda:7``
without that GPU, an ``--out`` that is a file), before anything is written; a bad input found later
(a damaged or mismatched checkpoint, a missing file, a full disk) ends the run with the message
naming the file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from au_lib.commands import check_device, device

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "data": ("au_lib.commands.data", "generate the synthetic dataset, describe a dataset, or prepare BP4D/BP4D+/DISFA"),
    "pretrain": ("au_lib.commands.pretrain", "pre-train MCM (multimodal channel-mixing MAE); resumable, DDP under torchrun"),
    "finetune": ("au_lib.commands.finetune",
                 "fine-tune MCM or train a supervised baseline under the 3-fold AU protocol; write a result file"),
    "probe": ("au_lib.commands.probe",
              "linear-probe frozen features (TCAE, MCM, pixels) under the 3-fold AU protocol; write a result file"),
    "ablate": ("au_lib.commands.ablate",
               "MCM ablations (supplementary Fig. 1): F1 vs pre-training epochs and vs mask ratio; resumable"),
    "train-tcae": ("au_lib.commands.train_tcae", "train TCAE (twin-cycle autoencoder) on frame pairs: synthau | video | toy"),
    "detect": ("au_lib.commands.detect",
               "detect AUs in an image, a folder of images or a video with a detector file; write a CSV per frame"),
    "displace": ("au_lib.commands.displace",
                 "TCAE's AU and pose displacements between frames of any video (or two images): a figure"),
    "bench": ("au_lib.commands.bench", "run speed benchmarks from bench/ (warp, mcm, synth, ...) and print ratios"),
    "info": ("au_lib.commands.info", "show the active profile, device, versions, warp kernels and dataset AU lists"),
}
ALIASES: dict[str, str] = {"evaluate": "probe"}
"""Former names still accepted."""

WITHOUT_COMMON = ("data", "bench")
"""Subcommands that take none of the common options (``data``'s actions declare their own)."""


class Parser(argparse.ArgumentParser):
    """``argparse`` with one-line errors (``au-lib pretrain: error: argument --epochs: ...``), status 2."""

    def error(self, message: str):  # noqa: D401 (argparse's signature)
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def common_options() -> argparse.ArgumentParser:
    """The options shared by the training and evaluation subcommands (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument("--profile", default=None, help="smoke | cpu | paper (default: $AU_PROFILE or cpu)")
    group.add_argument("--device", default=None, type=device,
                       help="cpu | cuda | cuda:N (default: $AU_DEVICE, else CUDA if available)")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")
    return common


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first argument not starting with ``-``), if known."""
    for a in argv:
        if not a.startswith("-"):
            name = ALIASES.get(a, a)
            return name if name in SUBCOMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only ``command``'s module is imported (every module when ``"*"``)."""
    from au_lib import __version__

    parser = Parser(
        prog="au-lib",
        description="Self-supervised facial Action Unit detection (MCM, TCAE): data, training, evaluation.",
        epilog="The profile (smoke|cpu|paper) comes from --profile or $AU_PROFILE (default cpu); "
               "caches live in $AU_CACHE (default: the platform cache directory).")
    parser.add_argument("--version", action="version", version=f"au_lib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = common_options()
    for name, (modname, help_) in SUBCOMMANDS.items():
        aliases = [a for a, n in ALIASES.items() if n == name]
        if command not in (name, "*"):
            sub.add_parser(name, help=help_, aliases=aliases, add_help=False)
            continue
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip(), aliases=aliases,
                           parents=[] if name in WITHOUT_COMMON else [common],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_chosen(argv))
    try:  # a refused option value (or --help) ends here with argparse's status, returned not raised
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "_passes_through", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    args.extra = extra
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("au_lib").setLevel(logging.INFO)
    if hasattr(args, "device") and args.device is None and os.environ.get("AU_DEVICE", "").strip():
        try:
            check_device(os.environ["AU_DEVICE"].strip())
        except ValueError as exc:
            print(f"au-lib {args.command}: error: $AU_DEVICE={exc}", file=sys.stderr)
            return 2
    try:
        if hasattr(args, "profile"):
            from au_lib.profiles import check_profile, current_profile

            args.profile = check_profile(args.profile) if args.profile else current_profile()
        return int(args._run(args) or 0)
    except (ValueError, KeyError, OSError) as exc:  # OSError: missing file, full disk, permission
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"au-lib {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

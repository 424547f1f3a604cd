"""Command line: ``python -m au_lib`` (installed as ``au-lib``).

Each subcommand lives in its own module under ``au_lib.commands`` exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their subcommand
is built, so ``au-lib --help`` stays quick.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

SUBCOMMANDS: dict[str, str] = {
    "data": "au_lib.commands.data",
    "pretrain": "au_lib.commands.pretrain",
    "finetune": "au_lib.commands.finetune",
    "evaluate": "au_lib.commands.evaluate",
    "ablate": "au_lib.commands.ablate",
    "train-tcae": "au_lib.commands.train_tcae",
    "bench": "au_lib.commands.bench",
    "info": "au_lib.commands.info",
}


def _available() -> dict[str, object]:
    mods = {}
    for name, modname in SUBCOMMANDS.items():
        try:
            mods[name] = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if not (exc.name and (modname == exc.name or modname.startswith(exc.name + "."))):  # a real missing dependency inside the module: surface it
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (imports every available subcommand module)."""
    from au_lib import __version__

    parser = argparse.ArgumentParser(
        prog="au-lib",
        description="Self-supervised facial Action Unit detection (MCM, TCAE): data, training, evaluation.",
        epilog="The profile (smoke|cpu|paper) comes from --profile or $AU_PROFILE (default cpu).")
    parser.add_argument("--version", action="version", version=f"au_lib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _available().items():
        p = sub.add_parser(name, help=getattr(mod, "HELP", ""), description=getattr(mod, "HELP", ""))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"au-lib {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

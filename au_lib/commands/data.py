"""``au-lib data {synth,info,prepare}``: generate SynthAU, describe a dataset folder, prepare licensed data.

An action's module (``add_arguments(parser)``, ``run(args)``) is imported only when that action runs,
with the action's own arguments (``args.extra``), so ``au-lib data --help`` stays quick.
"""

from __future__ import annotations

import argparse
import importlib

# action -> (module implementing add_arguments(parser) / run(args), one-line help)
ACTIONS: dict[str, tuple[str, str]] = {
    "synth": ("au_lib.data.synth.command", "generate the synthetic SynthAU dataset (views pretrain, bp4d, disfa)"),
    "info": ("au_lib.commands.data_info", "describe a generated dataset folder (counts, AU statistics, modalities)"),
    "prepare": ("au_lib.commands.data_prepare", "align the faces of a licensed dataset (BP4D, BP4D+, DISFA)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, (_, help_) in ACTIONS.items():
        sub.add_parser(name, help=help_, add_help=False).set_defaults(_passes_through=True)


def run(args: argparse.Namespace) -> int:
    modname, help_ = ACTIONS[args.action]
    mod = importlib.import_module(modname)
    parser = argparse.ArgumentParser(prog=f"au-lib data {args.action}", description=help_)
    mod.add_arguments(parser)
    return int(mod.run(parser.parse_args(args.extra)) or 0)

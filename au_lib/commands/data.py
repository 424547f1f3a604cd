"""``au-lib data {synth,info,prepare}``: generate SynthAU, describe a dataset folder, prepare licensed data."""

from __future__ import annotations

import argparse
import importlib

HELP = "generate the synthetic dataset, describe a dataset, or prepare BP4D/BP4D+/DISFA"

# action -> module implementing HELP / add_arguments(parser) / run(args)
ACTIONS: dict[str, str] = {
    "synth": "au_lib.data.synth.command",
    "info": "au_lib.data.info_command",
    "prepare": "au_lib.data.prepare_command",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, modname in ACTIONS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if not (exc.name and (modname == exc.name or modname.startswith(exc.name + "."))):
                raise
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_action=mod.run)


def run(args: argparse.Namespace) -> int:
    return int(args._action(args) or 0)

"""``au-lib probe`` (formerly ``evaluate``): linear probes (BatchNorm + Linear) on frozen features under
the 3-fold AU protocol, e.g. TCAE's AU vs pose embedding, or the MCM encoder. Writes a result file."""

from __future__ import annotations

import argparse

from au_lib.commands import finetune as _ft


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _ft.add_arguments(parser, examples="probe:tcae-au, probe:tcae-pose, probe:mcm, probe:pixels, probe:random-vit")


def run(args: argparse.Namespace) -> int:
    return _ft.run_protocol_command(args, ("probe",))

"""``au-lib bench [NAME ...]``: run the speed benchmarks in ``bench/`` (all by default)."""

from __future__ import annotations

import argparse
import runpy
import sys

from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="benchmarks to run (bench/bench_NAME.py); default all")
    parser.add_argument("--out", default=None, help="write JSON results to this folder")
    parser.add_argument("--bench-dir", default="bench",
                        help="folder of bench_*.py scripts (default ./bench: run from a source checkout)")


def run(args: argparse.Namespace) -> int:
    folder = Path(args.bench_dir)
    scripts = sorted(folder.glob("bench_*.py"))
    if not scripts:
        raise FileNotFoundError(f"no bench_*.py in {folder.resolve()}: run from a source checkout or pass --bench-dir")
    if args.names:
        wanted = {f"bench_{n}.py" for n in args.names}
        unknown = wanted - {s.name for s in scripts}
        if unknown:
            raise ValueError(f"no such benchmark: {sorted(unknown)}; have {[s.stem[6:] for s in scripts]}")
        scripts = [s for s in scripts if s.name in wanted]
    for script in scripts:
        print(f"== {script.name}")
        argv = [str(script)] + (["--out", args.out] if args.out else [])
        old, sys.argv = sys.argv, argv
        try:
            runpy.run_path(str(script), run_name="__main__")
        finally:
            sys.argv = old
    return 0

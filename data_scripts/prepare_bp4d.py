#!/usr/bin/env python3
"""Prepare BP4D aligned face crops: a thin wrapper of `python -m au_lib data prepare bp4d`.

Usage: `python data_scripts/prepare_bp4d.py --root /path/to/raw --out /path/to/prepared [options]`
(all options: `python -m au_lib data prepare bp4d --help`; see the book appendix "Using your own licensed data").
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from au_lib.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["data", "prepare", "bp4d", *sys.argv[1:]]))

#!/usr/bin/env python3
"""Prepare BP4D+ aligned face crops: a thin wrapper of `python -m au_lib data prepare bp4dplus`.

Usage: `python data_scripts/prepare_bp4dplus.py --root /path/to/raw --out /path/to/prepared [options]`
(all options: `python -m au_lib data prepare bp4dplus --help`; see the book appendix "Using your own licensed data").
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from au_lib.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["data", "prepare", "bp4dplus", *sys.argv[1:]]))

"""Unit-test settings: in a checkout, the package's cache is the checkout's ``.cache`` (where
``make assets`` puts the face-model assets) unless ``$AU_CACHE`` says otherwise."""

import os
from pathlib import Path

os.environ.setdefault("AU_CACHE", str(Path(__file__).resolve().parent.parent / ".cache"))

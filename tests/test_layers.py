"""The package's layers: no module imports from a layer above its own (see ``au_lib/__init__.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

import au_lib

ORDER = {"__init__": 0, "facs": 0, "metrics": 0, "profiles": 0, "provenance": 0, "results": 0, "cache": 0, "cext": 0,
         "gpu_check": 0, "ops": 1, "data": 2,
         "models": 3, "train": 4, "detect": 4, "experiments": 5, "viz": 6, "book": 6, "commands": 7, "cli": 8, "__main__": 9}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return ORDER.get(parts[1]) if len(parts) > 1 else 0


def test_imports_point_downwards_only():
    root = Path(au_lib.__file__).parent
    upward = []
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        mine = _layer(name)
        assert mine is not None, f"{name}: not in a layer; add it to ORDER and to au_lib/__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("au_lib"):
                targets = ([node.module] if node.module != "au_lib"
                           else [f"au_lib.{a.name}" for a in node.names])
                upward += [f"{name} -> {t}" for t in targets if (_layer(t) or 0) > mine]
    assert not upward, upward


def test_library_code_names_no_checkout_folder():
    """No module builds paths into the book or a checkout's .cache (the build passes folders in)."""
    root = Path(au_lib.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert '"book"' not in text and "'book'" not in text, path
        assert '/ ".cache"' not in text, path

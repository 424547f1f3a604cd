"""The book shows the library's own code where it explains it, and is ready to publish.

- Every ``{literalinclude}`` in the chapters names a file that exists and a ``:pyobject:`` defined in
  it, so the page and the package cannot drift apart (a renamed function fails here, not silently
  in the rendered book).
- Each chapter that explains a key piece of the library includes that piece's source (:data:`REQUIRED`).
- The repository URL is written in one place (``_config.yml``); every chapter's install cell for
  Colab is the one generated from it (``tests/install_cell.py``).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from install_cell import find_install_cell, install_cell_source, repository_url

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
INCLUDE_RE = re.compile(r"```\{literalinclude\}\s+(\S+)\s*\n((?::[\w-]+:.*\n)*)")

# chapter -> (source file, pyobject) that the chapter explains and must show
REQUIRED: dict[str, set[tuple[str, str]]] = {
    "data": {("au_lib/data/synth/render.py", "align_crop"), ("au_lib/data/synth/calibration.py", "intensity_curve"),
             ("au_lib/data/synth/facemodel.py", "FaceModel._calibrated_motion"),
             ("au_lib/data/synth/appearance.py", "furrow_textures"),
             ("au_lib/experiments/learnability.py", "run_learnability")},
    "metrics": {("au_lib/metrics.py", "f1_per_au"), ("au_lib/metrics.py", "class_weights"),
                ("au_lib/metrics.py", "choose_thresholds"), ("au_lib/data/folds.py", "standard_folds"),
                ("au_lib/data/folds.py", "validation_split")},
    "warp": {("au_lib/ops/warp.py", "_warp_backward"), ("au_lib/ops/warp.py", "_sample_geometry")},
    "mcm": {("au_lib/ops/masking.py", "channel_mix"), ("au_lib/ops/masking.py", "random_masking"),
            ("au_lib/ops/masking.py", "sample_subsets"), ("au_lib/models/mcm.py", "mcm_loss"),
            ("au_lib/models/mcm.py", "MCM.forward")},
    "tcae": {("au_lib/models/tcae.py", "TCAE.forward"), ("au_lib/models/tcae.py", "TCAE.losses"),
             ("au_lib/models/tcae.py", "TCAE.mix"), ("au_lib/ops/warp.py", "mix_displacements"),
             ("au_lib/models/tcae.py", "curriculum_mean"), ("au_lib/train/tcae.py", "OfficialSchedule.update"),
             ("au_lib/experiments/tcae_settings.py", "setting_effects"), ("au_lib/models/tcae.py", "TCAE.photometric_error")},
    "detection": {("au_lib/models/heads.py", "masked_bce_loss"), ("au_lib/experiments/protocol.py", "run_fold"),
                  ("au_lib/experiments/analysis.py", "paired_difference"),
                  ("au_lib/data/align.py", "eye_mouth_crop_matrix"), ("au_lib/detect/run.py", "face_crop")},
    "ablations": {("au_lib/experiments/ablations.py", "hidden_fraction"),
                  ("au_lib/experiments/ablations.py", "paper_epoch")},
}


def chapters() -> list[Path]:
    import yaml

    files = re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text())
    root = yaml.safe_load((ROOT / "_toc.yml").read_text())["root"]
    out = []
    for f in [root, *files]:
        for suffix in (".ipynb", ".md"):
            if (ROOT / (f + suffix)).exists():
                out.append(ROOT / (f + suffix))
    return out


def markdown_of(path: Path) -> str:
    if path.suffix == ".md":
        return path.read_text()
    nb = json.loads(path.read_text())
    return "\n\n".join("".join(c["source"]) + "\n" for c in nb["cells"] if c["cell_type"] == "markdown")


def includes(path: Path) -> list[tuple[Path, dict[str, str]]]:
    """(resolved file, options) of every literalinclude in a chapter's markdown."""
    found = []
    for m in INCLUDE_RE.finditer(markdown_of(path)):
        options = dict(re.findall(r":([\w-]+):[ \t]*(.*)", m.group(2)))
        found.append(((path.parent / m.group(1)).resolve(), options))
    return found


def defines(source: Path, dotted: str) -> bool:
    """Whether ``source`` defines the function or class ``dotted`` (``name`` or ``Class.method``)."""
    body = ast.parse(source.read_text()).body
    for part in dotted.split("."):
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            return False
        body = node.body
    return True


def test_chapters_are_found():
    names = {p.stem for p in chapters()}
    assert set(REQUIRED) <= names


@pytest.mark.parametrize("path", chapters(), ids=lambda p: p.name)
def test_every_include_resolves(path: Path):
    for file, options in includes(path):
        assert file.is_file(), f"{path.name}: literalinclude of a missing file {file}"
        assert ROOT in file.parents, f"{path.name}: literalinclude outside the repository: {file}"
        if "pyobject" in options:
            assert defines(file, options["pyobject"].strip()), \
                f"{path.name}: {file.relative_to(ROOT)} defines no {options['pyobject']!r}"


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_chapter_shows_the_source_it_explains(name: str):
    path = next(p for p in chapters() if p.stem == name)
    shown = {(f.relative_to(ROOT).as_posix(), o.get("pyobject", "").strip()) for f, o in includes(path)}
    missing = REQUIRED[name] - shown
    assert not missing, f"{path.name} explains but does not show (literalinclude + :pyobject:): {sorted(missing)}"


def test_include_parser_and_resolver_detect_drift(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("text\n\n```{literalinclude} ../au_lib/metrics.py\n:language: python\n:pyobject: nope\n```\n")
    (found,) = includes(md)
    assert found[1]["pyobject"] == "nope"
    assert not defines(ROOT / "au_lib/metrics.py", "nope")
    assert defines(ROOT / "au_lib/models/tcae.py", "TCAE.losses")
    assert not defines(ROOT / "au_lib/models/tcae.py", "TCAE.nope")


def test_repository_url_is_written_once():
    url = repository_url()
    hits = []
    for path in [*ROOT.glob("*.md"), *ROOT.glob("*.yml"), *ROOT.glob("*.toml"), *BOOK.glob("*.md"), *BOOK.glob("*.ipynb")]:
        text = path.read_text()
        if path.suffix == ".ipynb":  # the generated install cells are checked below
            nb = json.loads(text)
            at = find_install_cell(nb)
            text = "\n".join("".join(c["source"]) for i, c in enumerate(nb["cells"]) if i != at)
        hits += [(path.name, m) for m in re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", text)
                 if m.rstrip(".").removesuffix(".git") == url]
    assert hits == [("_config.yml", url)], f"the repository URL should appear only in _config.yml: {hits}"


@pytest.mark.parametrize("path", [p for p in chapters() if p.suffix == ".ipynb"], ids=lambda p: p.name)
def test_chapter_starts_with_the_generated_install_cell(path: Path):
    nb = json.loads(path.read_text())
    at = find_install_cell(nb)
    hint = f"run `python tests/install_cell.py {path.relative_to(ROOT)}`"
    assert at is not None, f"{path.name} has no install cell for Colab; {hint}"
    first_code = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code")
    assert at == first_code, f"{path.name}: the install cell must be the first code cell"
    cell = nb["cells"][at]
    assert "".join(cell["source"]) == install_cell_source(repository_url()), f"{path.name}: install cell out of date; {hint}"
    assert not cell["outputs"] and "remove-cell" in cell["metadata"]["tags"]


def test_install_cell_is_a_no_op_inside_a_checkout(tmp_path, monkeypatch):
    """Executed here (au_lib importable), the cell must neither clone, install nor change directory."""
    import subprocess

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.chdir(tmp_path)
    exec(compile(install_cell_source("https://github.com/example/book"), "<install cell>", "exec"), {})
    assert calls == [] and Path.cwd() == tmp_path

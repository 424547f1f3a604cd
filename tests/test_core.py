"""Profiles, FACS table, folds, result files, provenance and the command line."""

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest

from au_lib import facs
from au_lib.data.folds import BP4D_PARTS, DISFA_PARTS, Fold, split_subjects, standard_folds, validation_split
from au_lib.profiles import current_profile, pick
from au_lib.results import CorruptResultError, load_result, reusable, save_result


@dataclass(frozen=True)
class Cfg:
    size: int


TABLE = {"smoke": Cfg(8), "cpu": Cfg(64), "paper": Cfg(224)}


def test_profile_switch(monkeypatch):
    monkeypatch.delenv("AU_PROFILE", raising=False)
    assert current_profile() == "cpu" and pick(TABLE).size == 64
    monkeypatch.setenv("AU_PROFILE", "smoke")
    assert pick(TABLE).size == 8 and pick(TABLE, "paper").size == 224
    assert pick(TABLE, size=3).size == 3
    monkeypatch.setenv("AU_PROFILE", "gpu")
    with pytest.raises(ValueError, match="unknown profile 'gpu'"):
        current_profile()
    with pytest.raises(KeyError, match="lacks rows"):
        pick({"cpu": Cfg(1)}, "cpu")


def test_facs_lists_and_lookup():
    assert facs.BP4D_AUS == (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
    assert facs.DISFA_AUS == (1, 2, 4, 6, 9, 12, 25, 26)
    assert len(facs.BP4DPLUS_AUS) == 34
    for aus in list(facs.DATASET_AUS.values()) + [facs.PYFEAT_MESH_AUS, facs.DISFA_ANNOTATED_AUS]:
        assert all(a in facs.FACS for a in aus)
    assert facs.au("AU12").name == "Lip corner puller" and facs.au(12).code == "AU12"
    with pytest.raises(KeyError, match="unknown AU"):
        facs.parse_au(3)
    with pytest.raises(KeyError, match="not an AU code"):
        facs.parse_au("smile")


@pytest.mark.parametrize("name,parts,n", [("bp4d", BP4D_PARTS, 41), ("disfa", DISFA_PARTS, 27)])
def test_standard_folds_are_subject_exclusive_and_cover_everyone(name, parts, n):
    folds = standard_folds(name)
    everyone = {s for p in parts for s in p}
    assert len(everyone) == n
    for f in folds:
        assert not set(f.train) & set(f.test)
        assert set(f.train) | set(f.test) == everyone
    assert folds[0].test == parts[2] and folds[2].test == parts[0]  # ME-GraphAU numbering
    assert {s for f in folds for s in f.test} == everyone


def test_fold_rejects_overlap_and_split_helpers():
    with pytest.raises(ValueError, match="both train and test"):
        Fold(1, ("a", "b"), ("b",))
    parts = split_subjects([f"S{i}" for i in range(10)], 3, seed=1)
    assert sorted(s for p in parts for s in p) == sorted(f"S{i}" for i in range(10))
    assert parts == split_subjects([f"S{i}" for i in range(10)], 3, seed=1)
    train, val = validation_split([f"S{i}" for i in range(10)], 0.2)
    assert len(val) == 2 and not set(train) & set(val)
    with pytest.raises(ValueError):
        validation_split(["only"])


def test_result_files_roundtrip_reuse_and_corruption(tmp_path):
    path = tmp_path / "r.json"
    cfg = {"lr": 0.1, "epochs": [1, 2]}
    save_result(path, cfg, {"mean_f1": 0.5}, {"profile": "smoke", "commit": "x", "device": "cpu",
                                              "wall_time_s": 1.0, "date": "d"})
    res = load_result(path)
    assert res["metrics"]["mean_f1"] == 0.5 and res["config"] == cfg
    assert reusable(path, cfg) is not None and reusable(path, {"lr": 0.2, "epochs": [1, 2]}) is None
    text = path.read_text()
    path.write_text(text.replace("0.5", "0.9"))
    with pytest.raises(CorruptResultError, match="checksum"):
        load_result(path)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(CorruptResultError, match="not valid JSON"):
        load_result(path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CorruptResultError, match="not text"):
        load_result(path)
    with pytest.warns(UserWarning, match="recomputing"):
        assert reusable(path, cfg) is None
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_cli_help_and_info():
    out = subprocess.run([sys.executable, "-m", "au_lib", "--help"], capture_output=True, text=True, check=True)
    assert "info" in out.stdout and "data" in out.stdout
    out = subprocess.run([sys.executable, "-m", "au_lib", "info", "--profile", "smoke"], capture_output=True,
                         text=True, check=True)
    assert "profile: smoke" in out.stdout and "bp4d" in out.stdout and "warp:    CPU: " in out.stdout
    bad = subprocess.run([sys.executable, "-m", "au_lib", "info", "--profile", "huge"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown profile" in bad.stderr


def test_git_commit_marks_untracked_code_as_dirty(tmp_path):
    from au_lib.provenance import git_commit

    repo = tmp_path / "r"
    (repo / "au_lib").mkdir(parents=True)
    run = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (repo / "au_lib" / "a.py").write_text("x = 1\n")
    run("add", "-A")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    assert not git_commit(repo).endswith("+dirty")
    (repo / "au_lib" / "new.py").write_text("y = 2\n")
    assert git_commit(repo).endswith("+dirty")
    # a folder inside some other repository (an installed package in site-packages) has no commit of ours
    assert git_commit(repo / "au_lib") == "unknown"

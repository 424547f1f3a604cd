"""The label-scarce setting: a seeded, subject-exclusive fraction of each fold's training subjects."""

from __future__ import annotations

import importlib
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
fake = importlib.import_module("_fake_au")

from au_lib.data import registry  # noqa: E402
from au_lib.data.folds import labelled_subset  # noqa: E402
from au_lib.experiments import protocol as P  # noqa: E402
from au_lib.train.finetune import materialize  # noqa: E402

SUBJ = [f"F{i:03d}" for i in range(27)]


def test_labelled_subset_fraction_and_seeding():
    a = labelled_subset(SUBJ, 0.1, seed=(0, 1))
    assert len(a) == 3 and set(a) < set(SUBJ) and list(a) == sorted(a)
    assert len(labelled_subset(SUBJ, 0.5, seed=0)) == 14 and len(labelled_subset(SUBJ, 0.01, seed=0)) == 2
    assert labelled_subset(SUBJ, 0.1, seed=(0, 1)) == a  # same seed, same subset
    assert labelled_subset(list(reversed(SUBJ)), 0.1, seed=(0, 1)) == a  # input order does not matter
    draws = {labelled_subset(SUBJ, 0.1, seed=(s, 1)) for s in range(10)}
    assert len(draws) >= 8  # different seeds, different subsets
    assert labelled_subset(SUBJ, 0.1, seed=(0, 2)) != a  # and another fold, another subset
    assert labelled_subset(SUBJ, None) == labelled_subset(SUBJ, 1.0) == tuple(SUBJ)
    with pytest.raises(ValueError, match=r"label fraction must be in \(0, 1\]"):
        labelled_subset(SUBJ, 1.5)
    with pytest.raises(ValueError, match="at least 2"):
        labelled_subset(SUBJ[:1], 0.5)


@pytest.fixture(autouse=True)
def _fake_registry(monkeypatch, tmp_path):
    monkeypatch.setitem(registry.DATASET_MODULES, "fakeau", "_fake_au")
    monkeypatch.setenv("AU_CACHE", str(tmp_path / "cache"))


def test_protocol_trains_on_the_fraction_only_and_stays_subject_exclusive():
    import torch

    table = materialize(fake.open_dataset(modalities=("rgb",)), aus=fake.AUS)
    feats = table.au.clamp_min(0) + 0.3 * torch.randn(len(table), 4, generator=torch.Generator().manual_seed(0))
    s = replace(P.protocol_settings("smoke", max_frames_per_subject=None), label_fraction=0.5)
    m = P.Method("probe", "pixels")
    seen = []
    for fold in registry.dataset_folds("fakeau"):
        out = P.run_fold(table, fold, m, s, features=feats, seed=0)
        labelled = set(out.train_subjects) | set(out.val_subjects)
        assert len(labelled) == round(0.5 * len(fold.train))  # 3 of 6
        assert labelled < set(fold.train) and not set(out.train_subjects) & set(out.val_subjects)
        assert not labelled & set(fold.test)
        assert set(table.subject[out.test_rows]) == set(fold.test)  # the test fold is whole
        again = P.run_fold(table, fold, m, s, features=feats, seed=0)
        assert again.train_subjects == out.train_subjects and np.array_equal(again.test_scores, out.test_scores)
        draws = {tuple(sorted(labelled))}
        for k in (1, 2, 3):
            o = P.run_fold(table, fold, m, s, features=feats, seed=k)
            draws.add(tuple(sorted(set(o.train_subjects) | set(o.val_subjects))))
        seen.append(draws)
    assert any(len(v) > 1 for v in seen)  # other seeds draw other subsets
    full = P.run_fold(table, registry.dataset_folds("fakeau")[0], m, replace(s, label_fraction=None), features=feats)
    assert len(full.train_subjects) + len(full.val_subjects) == 6


def test_cli_label_fraction_and_streaming(tmp_path, capsys):
    import json

    from au_lib.cli import main

    out = tmp_path / "p.json"
    rc = main(["probe", "--method", "probe:pixels", "--data", "fakeau", "--profile", "smoke", "--out", str(out),
               "--no-progress", "--device", "cpu", "--label-fraction", "0.5", "--stream-frames", "--amp", "bf16"])
    assert rc == 0
    res = json.loads(out.read_text())
    s = res["config"]["settings"]
    assert s["label_fraction"] == 0.5 and s["stream_frames"] is True and s["amp"] == "bf16"
    assert all(len(r["train_subjects"]) + len(r["val_subjects"]) == 3 for r in res["metrics"]["runs"])
    assert main(["probe", "--method", "probe:pixels", "--data", "fakeau", "--profile", "smoke",
                 "--label-fraction", "2"]) == 2
    assert "--label-fraction" in capsys.readouterr().err

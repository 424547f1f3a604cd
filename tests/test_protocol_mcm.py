"""MCM fine-tuning (RGB and fusion) and TCAE probes through the protocol, on the in-test fake dataset."""

import importlib
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
fake = importlib.import_module("_fake_au")

from au_lib.experiments import protocol as P  # noqa: E402
from au_lib.experiments.methods import make_network  # noqa: E402
from au_lib.train.finetune import TrainConfig, materialize  # noqa: E402

mcm = pytest.importorskip("au_lib.models.mcm")


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path):
    monkeypatch.setenv("AU_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def table5():
    return materialize(fake.open_dataset(modalities=("rgb", "depth", "thermal")),
                       modalities=("rgb", "depth", "thermal"), aus=fake.AUS)


@pytest.fixture()
def mcm_ckpt(tmp_path):
    torch.manual_seed(0)
    model = mcm.MCM(mcm.MCM_PROFILES["smoke"])
    path = tmp_path / "mcm.pt"
    torch.save({"config": {"model": model.cfg.to_dict()}, "model": model.state_dict()}, path)
    return str(path)


def _settings():
    s = P.protocol_settings("smoke", max_frames_per_subject=None, fusion_subsets=("RGB", "RDT"))
    return replace(s, finetune=TrainConfig(epochs=1, batch_size=32, lr=1e-3, layer_decay=0.75, patience=1))


@pytest.mark.parametrize("method", ["finetune:mcm", "finetune:mcm:fusion"])
def test_mcm_finetune_fold(table5, mcm_ckpt, method):
    m = P.Method.parse(method, mcm_ckpt)
    fold = fake.folds()[0]
    out = P.run_fold(table5, fold, m, _settings(), seed=0)
    assert out.f1.shape == (len(fake.AUS),) and np.isfinite(out.test_scores).all()
    assert out.history[0]["epoch"] == 1


def test_fusion_needs_depth_and_thermal(mcm_ckpt):
    rgb_only = materialize(fake.open_dataset(), aus=fake.AUS)
    with pytest.raises(ValueError, match="fusion needs depth and thermal"):
        P.run_fold(rgb_only, fake.folds()[0], P.Method.parse("finetune:mcm:fusion", mcm_ckpt), _settings())


def test_mcm_image_size_mismatch_is_explained(table5, mcm_ckpt):
    with pytest.raises(ValueError, match="takes 32px images"):
        make_network(P.Method.parse("finetune:mcm", mcm_ckpt), 4, replace(_settings(), image_size=64))


def test_tcae_probe_features_au_and_pose(table5, tmp_path):
    tcae = pytest.importorskip("au_lib.models.tcae")
    torch.manual_seed(0)
    model = tcae.TCAE(tcae.tcae_config("smoke"))
    path = tmp_path / "tcae.pt"
    torch.save({"model_config": model.cfg.to_dict(), "model": model.state_dict()}, path)
    s = _settings()
    au = P.probe_features(table5, P.Method.parse("probe:tcae-au", str(path)), s)
    pose = P.probe_features(table5, P.Method.parse("probe:tcae-pose", str(path)), s)
    assert au.shape == pose.shape == (len(table5), 256)
    assert not torch.allclose(au, pose)
    with torch.no_grad():
        ref = model.eval().encode(table5.x[:4, :3])[0]
    torch.testing.assert_close(au[:4], ref)

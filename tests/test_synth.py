"""Tests of SynthAU: shapes, determinism, labels, ground-truth displacements, folds, errors, cache repair."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from au_lib.data.synth import AUS, folds, open_dataset, open_pairs, view_subjects
from au_lib.data.synth.assets import load_face_assets
from au_lib.data.synth.facemodel import au_vector, detector_to_facs, facs_to_detector
from au_lib.data.synth.raster import rasterize
from au_lib.data.synth.sequences import facs_level, occurrence
from au_lib.facs import BP4D_AUS, DISFA_AUS

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthau")


@pytest.fixture(scope="module")
def bp4d(root):
    return open_dataset(root=root, view="bp4d", profile="smoke", progress=False)


def test_sample_shapes_and_dtypes(root, bp4d):
    assert AUS == BP4D_AUS and bp4d.aus == BP4D_AUS
    x = bp4d[0]
    assert x["rgb"].shape == (3, 64, 64) and x["rgb"].dtype == torch.float32
    assert 0 <= float(x["rgb"].min()) and float(x["rgb"].max()) <= 1
    assert x["au"].shape == (12,) and set(x["au"].tolist()) <= {0.0, 1.0}
    assert x["au_intensity"].shape == (12,) and float(x["au_intensity"].max()) <= 5
    assert x["pose"].shape == (3,) and isinstance(x["subject"], str) and isinstance(x["frame"], int)
    mm = open_dataset(root=root, view="pretrain", modalities=("rgb", "depth", "thermal"), profile="smoke",
                      progress=False)
    y = mm[len(mm) - 1]
    for k in ("depth", "thermal"):
        assert y[k].shape == (1, 64, 64) and y[k].dtype == torch.float32
        assert 0 <= float(y[k].min()) and float(y[k].max()) <= 1
    # background is far in depth; the face is nearer
    assert float(y["depth"][0, 0, 0]) == 1.0 and float(y["depth"].min()) < 0.8
    d = open_dataset(root=root, view="disfa", profile="smoke", progress=False)
    assert d.aus == DISFA_AUS and d[0]["au"].shape == (8,)
    assert not set(d.subjects) & set(bp4d.subjects) and not set(mm.subjects) & set(bp4d.subjects)


def test_thermal_physiology(root):
    """Inner canthi/periorbital warmer than the nose tip, on the rendered frontal face."""
    from au_lib.data.synth.generate import face_model, identity
    from au_lib.data.synth.render import SubjectRenderer
    from au_lib.data.synth.sequences import make_scene

    m = face_model()
    r = SubjectRenderer(m, identity("bp4d", "B001", 0, m))
    out = r.render(torch.zeros(1, 20), torch.tensor([[0, 0, 0, 0, 0, 1.0]]), make_scene(np.random.default_rng(0)), 96,
                   ("thermal",))
    scr = r.geometry(torch.zeros(1, 20), torch.tensor([[0, 0, 0, 0, 0, 1.0]]), 96)[0][0]
    t = out.images["thermal"][0, 0]

    def at(v):
        x, y = scr[v, :2].round().long().tolist()
        return float(t[y, x])

    assert at(133) > at(1) + 0.02 and at(362) > at(1) + 0.02  # canthi vs nose tip (0.02 = 0.4 C)


def test_determinism(root, bp4d, tmp_path):
    other = open_dataset(root=tmp_path, view="bp4d", profile="smoke", progress=False)
    a = sorted(p.name for p in bp4d.folder.glob("*.npz"))
    assert a == sorted(p.name for p in other.folder.glob("*.npz"))
    for name in a:
        assert (bp4d.folder / name).read_bytes() == (other.folder / name).read_bytes()
    third = open_dataset(root=tmp_path, view="bp4d", profile="smoke", seed=1, progress=False)
    assert not torch.equal(third[0]["rgb"], bp4d[0]["rgb"])


def test_label_thresholds():
    x = np.array([0.0, 0.49, 0.5, 1.4, 1.5, 2.6, 5.0])
    assert facs_level(x).tolist() == [0, 0, 1, 1, 2, 3, 5]
    assert occurrence(x, 1).tolist() == [0, 0, 1, 1, 1, 1, 1]
    assert occurrence(x, 2).tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert float(facs_to_detector(torch.tensor(3.0))) == pytest.approx(0.6)
    assert detector_to_facs(0.2) == pytest.approx(1.0)


def test_view_labels_follow_protocols(root, bp4d):
    d = open_dataset(root=root, view="disfa", profile="smoke", progress=False)
    assert np.array_equal(d.labels, (d.intensity >= 2).astype(np.int64))
    assert np.array_equal(bp4d.labels, (bp4d.intensity >= 1).astype(np.int64))
    assert bp4d.labels.sum() > 0


def test_folds_subject_exclusive():
    for view in ("bp4d", "disfa", "pretrain"):
        fs = folds(view=view, profile="cpu")
        assert len(fs) == 3
        tests = [set(f.test) for f in fs]
        assert set().union(*tests) == set(view_subjects(view, "cpu"))
        for f in fs:
            assert not set(f.train) & set(f.test)
    assert len(view_subjects("bp4d", "cpu")) >= 41


def test_split_restricts_subjects(root):
    f = folds(view="bp4d", profile="smoke")[1]
    tr = open_dataset(root=root, view="bp4d", profile="smoke", split="train", fold=2, progress=False)
    te = open_dataset(root=root, view="bp4d", profile="smoke", split="test", fold=2, progress=False)
    assert set(tr.subjects) == set(f.train) and set(te.subjects) == set(f.test)
    assert {tr[i]["subject"] for i in range(len(tr))} == set(f.train)


def _warp(img: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """out(x, y) = img(x - dx, y - dy) via grid_sample (pixel centres at integer coordinates)."""
    C, H, W = img.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    sx, sy = xs - disp[0], ys - disp[1]
    grid = torch.stack([(2 * sx + 1) / W - 1, (2 * sy + 1) / H - 1], -1)[None]
    return F.grid_sample(img[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]


def test_ground_truth_displacement_matches_renders():
    # flat lighting: a turning surface changes its shading, which no warp explains; the geometry is what
    # the ground truth claims, and under ambient light it must explain the output
    pairs = open_pairs(view="bp4d", profile="smoke", image_size=96, lighting="flat")
    errs_gt, errs_id, moved = [], [], 0
    for i in range(0, len(pairs), 9)[:8]:
        p = pairs[i]
        for img, d, v in ((p["au_changed"], p["disp_au"], p["vis_au"]), (p["pose_changed"], p["disp_pose"], p["vis_pose"]),
                          (p["target"], p["disp_target"], p["vis_target"])):
            assert d.shape == (2, 96, 96) and v.shape == (1, 96, 96)
            m = v[0] > 0
            # erode the mask: bilinear sampling mixes across depth edges
            m = m & (F.max_pool2d((~m).float()[None, None], 3, 1, 1)[0, 0] == 0)
            if m.sum() < 500:
                continue
            warped = _warp(p["source"], d)
            errs_gt.append(float((warped - img).abs().mean(0)[m].mean()))
            errs_id.append(float((p["source"] - img).abs().mean(0)[m].mean()))
            moved += float(d.norm(dim=0).max()) > 1.0
    assert moved > 0
    assert np.mean(errs_gt) < 0.03, errs_gt
    assert np.mean(errs_gt) < 0.5 * np.mean(errs_id), (errs_gt, errs_id)


def test_rasteriser_depth_test():
    """Two overlapping triangles: the nearer one wins, barycentrics sum to 1, background is -1."""
    v = torch.tensor([[[2.0, 2, 0], [14, 2, 0], [2, 14, 0], [4, 4, 1], [15, 4, 1], [4, 15, 1]]])
    f = torch.tensor([[0, 1, 2], [3, 4, 5]])
    fr = rasterize(v, f, 16, 16)
    assert int(fr.tri[0, 5, 5]) == 1 and int(fr.tri[0, 3, 3]) == 0 and int(fr.tri[0, 15, 0]) == -1
    assert torch.allclose(fr.bary[0][fr.mask[0]].sum(-1), torch.ones(int(fr.mask.sum())), atol=1e-5)
    # area of a right triangle with legs 12: pixel count close to 12*12/2
    fr0 = rasterize(v[:, :3], f[:1], 16, 16)
    assert abs(int(fr0.mask.sum()) - 78) <= 13


def test_bad_parameters(root, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="image_size=0"):
        open_dataset(root=root, view="bp4d", profile="smoke", image_size=0)
    with pytest.raises(ValueError, match="modalities"):
        open_dataset(root=root, view="bp4d", profile="smoke", modalities=("rgb", "sonar"))
    with pytest.raises(KeyError, match="view"):
        open_dataset(root=root, view="ck+", profile="smoke")
    with pytest.raises(KeyError, match="unknown AU"):
        au_vector({"AU12": 3, "AU99": 2})
    with pytest.raises(KeyError, match="not driven"):
        au_vector({"AU13": 3})
    with pytest.raises(ValueError, match="0-5"):
        au_vector({"AU12": 7})
    with pytest.raises(KeyError, match="not in SynthAU view"):
        open_dataset(root=root, view="bp4d", profile="smoke", subjects=["Z999"])
    with pytest.raises(ValueError, match="split"):
        open_dataset(root=root, view="bp4d", profile="smoke", split="validation")
    with pytest.raises(FileNotFoundError, match="fetch_pyfeat_assets"):
        load_face_assets(tmp_path / "nowhere")


def test_corrupt_shard_is_regenerated(tmp_path):
    ds = open_dataset(root=tmp_path, view="disfa", profile="smoke", progress=False)
    shard = ds.folder / "D002.npz"
    good = shard.read_bytes()
    ref = ds[ds.subjects.index("D002") * 0 + 12]["rgb"]  # frame 12 = first frame of D002 (12 frames/subject)
    shard.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.warns(RuntimeWarning, match="D002.npz"):
        again = open_dataset(root=tmp_path, view="disfa", profile="smoke", progress=False)
    assert shard.read_bytes() == good
    assert torch.equal(again[12]["rgb"], ref)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF  # same size, altered byte
    shard.write_bytes(bytes(flipped))
    with pytest.warns(RuntimeWarning, match="corrupt"):
        open_dataset(root=tmp_path, view="disfa", profile="smoke", progress=False)
    assert shard.read_bytes() == good


def test_parallel_generation_is_byte_identical(bp4d, tmp_path):
    par = open_dataset(root=tmp_path, view="bp4d", profile="smoke", progress=False, workers=2)
    for p in sorted(bp4d.folder.glob("*.npz")):
        assert (par.folder / p.name).read_bytes() == p.read_bytes(), p.name

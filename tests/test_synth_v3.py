"""SynthAU v3: aligned framing, calibrated and visible AUs, furrows, label statistics, the C rasteriser,
thread/worker independence, and clean-up of older cache versions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from au_lib.data.synth import cache, open_dataset
from au_lib.data.synth.calibration import BP4D_RATES, TARGET_E_IOD, intensity_curve, visibility
from au_lib.data.synth.config import GENERATOR_VERSION, SYNTH_PROFILES
from au_lib.data.synth.generate import face_model, identity, project_vertices, render_face, render_subject, sequences
from au_lib.data.synth.raster import interpolate, rasterize
from au_lib.data.synth.raster_cpu import kernel
from au_lib.data.synth.render import SubjectRenderer
from au_lib.data.synth.sequences import TASK_NAMES, au_events, occurrence
from au_lib.facs import BP4D_AUS, DISFA_AUS, PYFEAT_MESH_AUS

SIZE = 64  # the cpu profile's size


def _eyes(subject: str, pose) -> tuple[np.ndarray, np.ndarray]:
    xy = project_vertices(subject, pose=pose, image_size=SIZE).numpy()
    return xy[468], xy[473]


@pytest.mark.parametrize("pose", [(0, 0, 0), (0, 0, 14), (20, 0, -10), (-25, 12, 8), (10, -15, 0)])
def test_crop_is_aligned_eye_line_level_and_size_fixed(pose):
    a, b = _eyes("B003", pose)
    angle = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))
    assert abs(angle) < 2.0 or abs(abs(angle) - 180) < 2.0, f"eye line tilted by {angle:.1f} deg at pose {pose}"
    mid = 0.5 * (a + b)
    assert abs(mid[0] - SIZE / 2) < 0.08 * SIZE and 0.3 * SIZE < mid[1] < 0.5 * SIZE, mid
    if pose[0] == 0 and pose[1] == 0:  # frontal: the inter-ocular distance is a fixed share of the crop
        assert 0.30 * SIZE < np.linalg.norm(b - a) < 0.42 * SIZE


def test_face_fills_the_crop_with_margins():
    for s in ("B001", "B002", "B009"):
        img = render_face(s, image_size=SIZE, modalities=("depth",))["depth"][0]
        face = img < 1.0  # background depth is 1
        frac = float(face.float().mean())
        assert 0.45 < frac < 0.9, (s, frac)
        rows = face.any(1).nonzero()
        cols = face.any(0).nonzero()
        assert rows.min() <= 0.12 * SIZE and rows.max() >= 0.88 * SIZE  # forehead and chin reach the margins
        assert cols.min() > 0 and cols.max() < SIZE - 1  # background shows at the sides


def test_roll_does_not_show_but_yaw_does():
    base = render_face("B004", image_size=SIZE, modalities=("rgb",))["rgb"]
    roll = render_face("B004", pose=(0, 0, 12), image_size=SIZE, modalities=("rgb",))["rgb"]
    yaw = render_face("B004", pose=(12, 0, 0), image_size=SIZE, modalities=("rgb",))["rgb"]
    assert float((roll - base).abs().mean()) < 0.5 * float((yaw - base).abs().mean())


def test_calibrated_motion_matches_targets():
    m = face_model()
    iod = float((m.neutral[468] - m.neutral[473]).norm())
    peak = m.au_motion.norm(dim=-1).amax(-1) / iod
    for k, au in enumerate(m.au_columns):
        assert float(peak[k]) == pytest.approx(TARGET_E_IOD[au], rel=1e-4), au
    x = torch.tensor([0.0, 1.0, 3.0, 5.0])
    c = intensity_curve(x)
    assert c[0] == 0 and c[-1] == pytest.approx(1.0) and bool((c.diff() > 0).all())
    assert float(c[1]) > 0.3  # a trace (A) shows a third of the apex motion: visible


def test_every_au_is_visible_at_level_a():
    """At level A and 64 px, every BP4D/DISFA AU moves its most-moving vertex >= 0.45 px and changes its
    own image region (pixels its apex changes by > 4/255) by >= 1.5/255 on average, and the apex moves
    more than the trace."""
    aus = tuple(sorted(set(BP4D_AUS) | set(DISFA_AUS)))
    vis = visibility(aus, subjects=("B002", "B005"), levels=(1, 5), image_size=SIZE)
    rows = vis.loc[[f"AU{a}" for a in aus]]
    assert (rows["motion_1_px"] >= 0.45).all(), rows["motion_1_px"]
    assert (rows["region_1"] >= 1.5).all(), rows["region_1"]
    assert (rows["motion_5_px"] > rows["motion_1_px"]).all()
    assert vis.loc["identity", "image_1"] > rows["image_1"].max()  # AUs are local, identity is global


def test_furrows_darken_skin_and_dent_depth():
    rest = render_face("B001", image_size=128, modalities=("rgb", "depth"))
    brow = render_face("B001", au={"AU4": 5}, image_size=128, modalities=("rgb", "depth"))
    diff = brow["rgb"].mean(0) - rest["rgb"].mean(0)
    assert float(diff.min()) < -0.08  # a dark furrow
    assert float((brow["depth"] - rest["depth"]).abs().max()) > 0


def test_bp4d_like_occurrence_rates_match_bp4d():
    cols = [PYFEAT_MESH_AUS.index(a) for a in BP4D_AUS]
    occ = []
    for i in range(1200):
        rng = np.random.default_rng([99, i])
        occ.append(occurrence(au_events(rng, TASK_NAMES[i % len(TASK_NAMES)], 24)[:, cols]))
    rates = np.concatenate(occ).mean(0)
    for au, r in zip(BP4D_AUS, rates):
        assert abs(r - BP4D_RATES[au]) < 0.05, f"AU{au}: {r:.3f} vs BP4D {BP4D_RATES[au]:.3f}"
    y = np.concatenate(occ).astype(float)
    corr = np.corrcoef(y.T)
    i = {a: k for k, a in enumerate(BP4D_AUS)}
    assert corr[i[1], i[2]] > 0.4 and corr[i[6], i[12]] > 0.1  # co-occurrence as in BP4D


def test_bp4d_rates_follow_the_published_class_weights():
    # r_i ∝ 1 / w_i (ME-GraphAU / JAA-Net weight files): AU24 rarest, AU7 and AU10 most frequent
    assert max(BP4D_RATES, key=BP4D_RATES.get) in (7, 10) and min(BP4D_RATES, key=BP4D_RATES.get) in (2, 24)
    assert BP4D_RATES[12] == pytest.approx(0.56)


def test_pairs_move_visibly():
    m = face_model()
    ident = identity("bp4d", "B001", 0, m)
    seqs = sequences("bp4d", "B001", 0, 8, 24, ident)
    d = [np.abs(s.pose[:, :2][:, None] - s.pose[:, :2][None]).max(-1) for s in seqs]
    gaps = np.concatenate([x[np.triu_indices(24, 1)] for x in d])
    assert np.median(gaps) > 2.5, np.median(gaps)  # a few degrees between two frames of a video


@pytest.mark.skipif(not kernel.available(), reason=f"no C compiler: {kernel.error}")
def test_c_rasteriser_equals_torch():
    m = face_model()
    ident = identity("bp4d", "B002", 0, m)
    seq = sequences("bp4d", "B002", 0, 1, 12, ident)[0]
    r = SubjectRenderer(m, ident)
    screen, normals = r.geometry(torch.tensor(seq.au, dtype=torch.float32),
                                 torch.tensor(seq.pose, dtype=torch.float32), 48)
    faces = m.topology.faces
    a = rasterize(screen, faces, 48, 40, backend="torch")
    b = rasterize(screen, faces, 48, 40, backend="c")
    assert torch.equal(a.tri, b.tri) and torch.equal(a.bary, b.bary) and torch.equal(a.zbuf, b.zbuf)
    ia = interpolate(normals, faces, a, background=-2.0)
    import os
    os.environ["AU_RASTER_BACKEND"] = "torch"
    try:
        ib = interpolate(normals, faces, a, background=-2.0)
    finally:
        del os.environ["AU_RASTER_BACKEND"]
    torch.testing.assert_close(ia, ib, rtol=1e-6, atol=1e-6)


def test_raster_backend_errors(monkeypatch):
    v = torch.zeros(1, 3, 3, dtype=torch.float64)
    f = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="float32 CPU"):
        rasterize(v, f, 4, 4, backend="c")
    monkeypatch.setenv("AU_RASTER_BACKEND", "gpu")
    with pytest.raises(ValueError, match="AU_RASTER_BACKEND"):
        rasterize(v.float(), f, 4, 4)


def test_bytes_do_not_depend_on_threads():
    cfg = SYNTH_PROFILES["smoke"]
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = render_subject("bp4d", "B003", 0, cfg, SIZE)
        torch.set_num_threads(2)
        b = render_subject("bp4d", "B003", 0, cfg, SIZE)
    finally:
        torch.set_num_threads(old)
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_older_generator_caches_are_removed(tmp_path):
    stale = tmp_path / "bp4d-64px-0123456789ab"
    stale.mkdir()
    cache.write_json(stale / "manifest.json", {"key": {"generator": "synthau-2"}, "shards": {}})
    other = tmp_path / "not-synthau"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.warns(RuntimeWarning, match="older generator"):
        ds = open_dataset(root=tmp_path, view="bp4d", profile="smoke", progress=False)
    assert not stale.exists() and other.exists() and ds.folder.exists()
    assert cache.read_json(ds.folder / "manifest.json")["key"]["generator"] == GENERATOR_VERSION

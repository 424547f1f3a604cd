"""`python -m au_lib data prepare {bp4d,bp4dplus,disfa}` on fixture trees; reports, resumption, loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from au_lib.cli import main
from au_lib.data import bp4d, bp4dplus, disfa
from au_lib.data.sources import MissingFrame, VideoSource
from au_lib.facs import BP4D_AUS, DISFA_ANNOTATED_AUS, DISFA_AUS

import real_fixtures as fx

SIZE = 64


def prepare(dataset, root, out, *extra, capsys=None):
    rc = main(["data", "prepare", dataset, "--root", str(root), "--out", str(out), "--size", str(SIZE),
               "--workers", "1", "--no-progress", *extra])
    return rc


def failures(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "failures.csv", dtype={"subject": str, "sequence": str})


@pytest.fixture(scope="module")
def bp4d_prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("bp4d")
    expect = fx.make_bp4d(root)
    out = root.parent / (root.name + "_out")
    assert prepare("bp4d", root, out) == 0
    return root, out, expect


def test_bp4d_index_labels_and_unknown_mask(bp4d_prepared):
    root, out, expect = bp4d_prepared
    idx = pd.read_csv(out / "index.csv", dtype={"subject": str, "sequence": str, "unknown_aus": str})
    # F001/T1: 712, 713, 716 aligned; M001/T2 (unpadded names 5.jpg ...): 5, 6, 7
    assert list(zip(idx.subject, idx.frame)) == [("F001", 712), ("F001", 713), ("F001", 716),
                                                 ("M001", 5), ("M001", 6), ("M001", 7)]
    rows = {r[0]: r for r in expect["F001_T1"]}
    for _, r in idx[idx.subject == "F001"].iterrows():
        raw = rows[r.frame]
        for a in BP4D_AUS:
            v = raw[fx.BP4D_HEADER.index(a)]
            assert r[f"au_{a}"] == (-1 if v == 9 else v)
    r712 = idx[idx.frame == 712].iloc[0]
    assert r712["au_1"] == -1 and r712["unknown_aus"] == "1" and r712["au_12"] == 1
    assert idx[idx.frame == 713].iloc[0]["unknown_aus"] == "24"
    assert (idx["int_6"][idx.subject == "F001"].tolist() == [(712 + 6) % 6, -1, (716 + 6) % 6])
    assert (idx["int_10"] == -1).all()  # no AU10 intensity file -> unknown
    assert all((out / p).is_file() for p in idx.path)


def test_bp4d_report_lists_every_failure(bp4d_prepared):
    _, out, _ = bp4d_prepared
    f = failures(out)
    got = {(r.frame, r.kind) for r in f.itertuples()}
    assert got == {(714, "unreadable_frame"), (715, "no_face"), (717, "label_without_frame"),
                   (711, "frame_without_label")}
    assert "0714.jpg" in f[f.kind == "unreadable_frame"].detail.iloc[0]
    rep = json.loads((out / "report.json").read_text())["summary"]
    assert rep["aligned_frames"] == 6 and rep["labelled_frames"] == 9
    assert rep["failures"] == {"no_face": 1, "unreadable_frame": 1, "label_without_frame": 1, "modality_missing": 0,
                               "unreadable_modality": 0, "part_damaged": 0}
    text = (out / "report.txt").read_text()
    assert "6 of 9 labelled frames" in text and "no_face" in text
    meta = json.loads((out / "prepare.json").read_text())
    assert meta["complete"] and meta["aligner"]["size"] == SIZE and meta["aus"] == list(BP4D_AUS)


def test_bp4d_resume_skips_verified_and_redoes_damaged(bp4d_prepared, tmp_path, capsys):
    root, out, _ = bp4d_prepared
    import shutil

    work = tmp_path / "out"
    shutil.copytree(out, work)
    before = (work / "index.csv").read_bytes()
    capsys.readouterr()
    assert prepare("bp4d", root, work) == 0
    assert "2 sequences (2 reused" in capsys.readouterr().out
    assert (work / "index.csv").read_bytes() == before
    # a lost crop and a truncated crop: only their sequences are redone, and they are repaired
    (work / "crops" / "M001" / "T2" / "00006.jpg").unlink()
    (work / "parts" / "F001_T1.json").write_text("{ truncated")
    assert prepare("bp4d", root, work) == 0
    assert "2 sequences (0 reused" in capsys.readouterr().out
    assert (work / "crops" / "M001" / "T2" / "00006.jpg").is_file()
    assert (work / "index.csv").read_bytes() == before
    p = work / "crops" / "M001" / "T2" / "00005.jpg"
    p.write_bytes(p.read_bytes()[:100])
    assert prepare("bp4d", root, work, "--verify", "full") == 0
    assert "(1 reused" in capsys.readouterr().out
    # other settings into the same folder are refused
    assert main(["data", "prepare", "bp4d", "--root", str(root), "--out", str(work), "--size", "32",
                 "--workers", "1", "--no-progress"]) == 2
    assert "different settings" in capsys.readouterr().err


def test_bp4d_open_dataset_samples(bp4d_prepared):
    _, out, _ = bp4d_prepared
    ds = bp4d.open_dataset(prepared=out, profile="smoke", frame_stride=1)
    assert len(ds) == 6
    s = ds[0]
    assert s["rgb"].shape == (3, 64, 64) and s["rgb"].dtype.is_floating_point
    assert 0 <= float(s["rgb"].min()) and float(s["rgb"].max()) <= 1
    assert s["au"].shape == (12,) and s["au"][0] == -1  # AU1 unknown at 712
    assert s["au_intensity"].shape == (5,)
    assert (s["subject"], s["sequence"], s["frame"]) == ("F001", "T1", 712)
    small = bp4d.open_dataset(prepared=out, image_size=32, frame_stride=1, profile="cpu")
    assert small[0]["rgb"].shape == (3, 32, 32)
    # F001 is in part 1 (train of fold 1, test of fold 3); M001 too
    assert len(bp4d.open_dataset(prepared=out, split="test", fold=3, frame_stride=1, profile="paper")) == 6
    assert len(bp4d.open_dataset(prepared=out, split="test", fold=1, frame_stride=1, profile="paper")) == 0
    assert bp4d.open_dataset(prepared=out, subjects=["M001"], frame_stride=2, profile="paper").df.frame.tolist() == [5, 7]
    from au_lib.data.prepared import PreparedDataset

    assert PreparedDataset(out, max_subjects=1).subjects == ("F001",)
    with pytest.raises(ValueError, match="split must be"):
        bp4d.open_dataset(prepared=out, split="val")
    with pytest.raises(KeyError, match="modality 'depth' was not prepared"):
        bp4d.open_dataset(prepared=out, modalities=("rgb", "depth"))
    import torch

    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["rgb"].shape == (4, 3, 64, 64) and batch["au"].shape == (4, 12)


def test_bp4d_malformed_label_stops_with_file_name(tmp_path, capsys):
    fx.make_bp4d(tmp_path / "raw")
    p = tmp_path / "raw" / "AUCoding" / "AU_OCC" / "M001_T2.csv"
    p.write_text(p.read_text().replace("0,1,2,3,4,", "0,1,2,3,54,", 1))  # column AU4 missing (54 is no BP4D AU)
    assert prepare("bp4d", tmp_path / "raw", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "M001_T2.csv" in err and "missing column for AU [4]" in err
    assert prepare("bp4d", tmp_path / "nowhere", tmp_path / "out") == 2


def test_video_source_is_frame_exact(tmp_path):
    import av

    path = tmp_path / "v.avi"
    with av.open(str(path), "w") as c:
        st = c.add_stream("mjpeg", rate=25)
        st.width = st.height = 32
        st.pix_fmt = "yuvj420p"
        for i in range(6):
            img = np.full((32, 32, 3), 20 + 40 * i, np.uint8)
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    src = VideoSource(str(path), count_all=True)
    got = list(src.iter_frames([2, 5, 9]))
    assert [f for f, _ in got] == [2, 5, 9]
    # label frame k = decoded frame k-1, whose grey level is 20 + 40 * (k - 1)
    assert abs(got[0][1].mean() - 60) < 3 and abs(got[1][1].mean() - 180) < 3
    assert isinstance(got[2][1], MissingFrame) and "video has 6 frames" in str(got[2][1])
    assert src.decoded_count == 6


def test_disfa_prepare_threshold_camera_and_report(tmp_path, capsys):
    root = tmp_path / "disfa"
    fx.make_disfa(root, subjects=("SN001", "SN003"), n_frames=5, extra_video_frames=0, missing_video_frames=1)
    out = tmp_path / "out"
    assert prepare("disfa", root, out, "--workers", "2") == 0  # 2 processes
    idx = pd.read_csv(out / "index.csv", dtype={"subject": str})
    # frame 3 blank -> no face; frame 5 beyond the 4-frame video -> label without frame
    assert idx.frame.tolist() == [1, 2, 4, 1, 2, 4]
    for _, r in idx.iterrows():
        for a in DISFA_AUS:
            assert r[f"au_{a}"] == int((r.frame + a) % 6 >= 2)
        for a in DISFA_ANNOTATED_AUS:
            assert r[f"int_{a}"] == (r.frame + a) % 6
    f = failures(out)
    assert sorted(zip(f.subject, f.frame, f.kind)) == [("SN001", 3, "no_face"), ("SN001", 5, "label_without_frame"),
                                                       ("SN003", 3, "no_face"), ("SN003", 5, "label_without_frame")]
    meta = json.loads((out / "prepare.json").read_text())
    assert meta["options"]["camera"] == "left" and meta["options"]["threshold"] == 2
    ds = disfa.open_dataset(prepared=out, profile="smoke", frame_stride=1, split="test", fold=1)
    assert len(ds) == 3 and ds[0]["subject"] == "SN003" and ds[0]["au"].shape == (8,)
    assert ds[0]["au_intensity"].shape == (12,)
    # a different threshold and the right camera (missing) are parameters
    for job in disfa.scan(root, threshold=3):
        f = np.asarray(job.frames)[:, None]
        np.testing.assert_array_equal(job.au, ((f + np.array(DISFA_AUS)) % 6 >= 3).astype(np.float32))
    capsys.readouterr()
    assert prepare("disfa", root, tmp_path / "o3", "--camera", "right") == 2
    assert "RightVideoSN001_comp.avi" in capsys.readouterr().err
    fx.make_disfa(root, subjects=("SN001",), n_frames=5, extra_video_frames=2, camera="Right")
    assert prepare("disfa", root, tmp_path / "o3", "--camera", "right", "--subjects", "SN001") == 0
    f3 = failures(tmp_path / "o3")
    assert sorted(zip(f3.frame, f3.kind)) == [(3, "no_face"), (6, "frame_without_label"), (7, "frame_without_label")]


def test_bp4dplus_zip_modalities_and_registration(tmp_path):
    root = tmp_path / "bp4dp"
    fx.make_bp4dplus(root)
    out = tmp_path / "out"
    assert prepare("bp4dplus", root, out, "--modalities", "rgb", "depth", "thermal") == 0
    idx = pd.read_csv(out / "index.csv", dtype={"subject": str, "sequence": str})
    assert sorted(set(zip(idx.subject, idx.sequence))) == [("F001", "T1"), ("M002", "T8")]  # T2 not coded
    assert len([c for c in idx.columns if c.startswith("au_")]) == 34
    f = failures(out)
    assert set(f.kind) == {"modality_missing"} and set(f.subject) == {"M002"}
    meta = json.loads((out / "prepare.json").read_text())
    assert meta["options"]["normalisation"]["thermal_registration"] == "identity (unverified)"
    ds = bp4dplus.open_dataset(prepared=out, modalities=("rgb", "depth", "thermal"), profile="paper",
                                 frame_stride=1, image_size=SIZE)
    assert len(ds) == 3  # rows without depth/thermal (M002) are left out
    s = ds[0]
    assert s["rgb"].shape == (3, SIZE, SIZE) and s["depth"].shape == s["thermal"].shape == (1, SIZE, SIZE)
    assert s["au"].shape == (12,)
    # thermal frame 1 is a constant 31 C -> (31 - 20) / 20 inside the image
    th = s["thermal"][0].numpy()
    assert np.median(th) == pytest.approx(0.55, abs=0.01)
    # depth peaks at fx.PEAK in RGB pixels; the same similarity maps it into the crop
    from au_lib.data.align import FaceAligner

    frame1 = fx.face(1)
    face = FaceAligner(SIZE).align(frame1)
    cx, cy, _ = face.matrix @ np.array([*fx.PEAK, 1.0])  # the height peak, mapped by the RGB alignment
    assert 5 < cx < SIZE - 5 and 5 < cy < SIZE - 5
    d = s["depth"][0].numpy()
    py, px = np.unravel_index(np.argmax(d), d.shape)
    assert abs(px - cx) <= 3 and abs(py - cy) <= 3
    assert len(bp4dplus.open_dataset(prepared=out, profile="paper", frame_stride=1)) == 5
    with pytest.raises(ValueError, match="at least 3 subjects"):  # only 2 subjects in the fixture
        bp4dplus.folds(prepared=out)


def test_registry_dispatch(bp4d_prepared, monkeypatch):
    _, out, _ = bp4d_prepared
    from au_lib.data.registry import dataset_folds, open_dataset

    monkeypatch.setenv("AU_BP4D_PREPARED", str(out))
    ds = open_dataset("bp4d", profile="smoke", frame_stride=1)
    assert len(ds) == 6 and ds.aus == BP4D_AUS
    assert len(dataset_folds("disfa")) == 3


class ConstantDepth:
    """A user-supplied reader: a flat surface 500 mm away, with a hole in the top-left quarter."""

    def read(self, frame):
        d = np.full((fx.FACE_SIZE, fx.FACE_SIZE), 500.0, np.float32)
        d[: fx.FACE_SIZE // 2, : fx.FACE_SIZE // 2] = np.nan
        return d

    def to_rgb(self, subject):
        return np.eye(3)

    def normalise(self, crop):
        return np.where(np.isfinite(crop), 0.25, np.nan)

    def describe(self):
        return "constant 0.25"


def test_bp4dplus_custom_reader_plugs_in(tmp_path):
    from au_lib.data.align import FaceAligner
    from au_lib.data.prepare import prepare as run_prepare

    root = tmp_path / "bp4dp"
    fx.make_bp4dplus(root)
    jobs = bp4dplus.scan(root, subjects=["F001"], modalities=("rgb", "depth"), limit=1,
                         readers={"depth": lambda r, s, t: ConstantDepth()})
    assert isinstance(jobs[0].modalities["depth"], ConstantDepth)
    out = tmp_path / "out"
    summary = run_prepare("bp4dplus", jobs, out, aus=bp4dplus.ALL_AUS, intensity_aus=bp4dplus.INTENSITY_AUS,
                          aligner=FaceAligner(SIZE), progress=False, log=lambda s: None)
    assert summary["aligned_frames"] == 1
    ds = bp4dplus.open_dataset(prepared=out, modalities=("depth",), image_size=SIZE, frame_stride=1, profile="paper")
    d = ds[0]["depth"][0].numpy()
    assert set(np.unique(np.round(d, 3))) <= {0.0, 0.25} and (d == 0).any() and (np.round(d, 3) == 0.25).any()

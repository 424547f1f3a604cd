"""Faults in data preparation (issue #16, data side): one test per malformed input or fault.

Each test asserts the outcome a user needs: a clear error naming the file and the problem (exit
status 2 from the command line), a row in ``failures.csv`` while the run goes on, or a correct
recovery; and that nothing already written is lost. Alignment uses :class:`FakeAligner` (fast,
picklable) except where the command line runs on the fixture trees of ``real_fixtures``.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from au_lib.cli import main
from au_lib.data import bp4d, disfa
from au_lib.data.bp4dplus import ObjDepthReader, ThermalReader
from au_lib.data.labels import LabelFormatError, read_bp4d_intensity, read_frame_value_file, read_occurrence_csv
from au_lib.data.prepare import SequenceJob, check_output_folder, prepare
from au_lib.data.prepared import PreparedDataset
from au_lib.data.sources import (ImageFolderSource, MissingFrame, UnreadableFrame, VideoSource, ZipImageSource,
                                 decode_image_bytes)

import real_fixtures as fx
from _fake_align import FakeAligner
from _processes import alive

HERE = Path(__file__).resolve().parent
AUS, INT_AUS = (1, 2), (6,)


# ------------------------------------------------------------------------------------------ helpers
def texture(k: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(k).integers(40, 256, (size, size, 3)).astype(np.uint8)


def image_folder(folder: Path, frames, size: int = 32) -> ImageFolderSource:
    folder.mkdir(parents=True, exist_ok=True)
    for f in frames:
        Image.fromarray(texture(f, size)).save(folder / f"{f:04d}.png")
    return ImageFolderSource.scan(folder)


def make_job(subject: str, seq: str, source, frames, modalities=None, au_offset: int = 0) -> SequenceJob:
    frames = list(frames)
    au = np.array([[(f + au_offset) % 2, (f + au_offset + 1) % 2] for f in frames], np.float32)
    inten = np.array([[(f + au_offset) % 6] for f in frames], np.float32)
    return SequenceJob(subject, seq, frames, au, inten, source, modalities or {})


def run(jobs, out: Path, **kw) -> dict:
    kw.setdefault("aligner", FakeAligner())
    return prepare("bp4d", jobs, out, aus=AUS, intensity_aus=INT_AUS, progress=False, log=lambda s: None, **kw)


def failures(out: Path) -> list[dict]:
    with open(out / "failures.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def index(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "index.csv", dtype={"subject": str, "sequence": str})


def cli_prepare(dataset: str, root: Path, out: Path, *extra: str) -> int:
    return main(["data", "prepare", dataset, "--root", str(root), "--out", str(out), "--workers", "1",
                 "--no-progress", *extra])


def write_video(path: Path, n: int = 6, drop: int | None = None) -> None:
    """An MJPEG AVI of ``n`` flat grey frames (level 20 + 40 * index), frame ``drop`` (0-based) left out."""
    import av

    with av.open(str(path), "w") as c:
        st = c.add_stream("mjpeg", rate=25)
        st.width = st.height = 32
        st.pix_fmt = "yuvj420p"
        for i in range(n):
            fr = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 + 40 * i, np.uint8), format="rgb24")
            fr.pts = i
            for pkt in st.encode(fr):
                if i != drop:
                    c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)


# ------------------------------------------------------------------------------------------ label files
HEADER = "0,1,2,4,6,12"


def test_duplicated_au_header_column_is_an_error(tmp_path):
    p = tmp_path / "F001_T1.csv"
    p.write_text("0,1,2,12,6,12\n1,0,1,0,1,1\n")
    with pytest.raises(LabelFormatError, match=r"F001_T1.csv: line 1: AU \[12\] appear\(s\) in more than one"):
        read_occurrence_csv(p, (1, 12))


def test_fractional_au_header_is_an_error(tmp_path):
    p = tmp_path / "F001_T1.csv"
    p.write_text("0,1,2,12.9\n1,0,1,0\n")
    with pytest.raises(LabelFormatError, match=r"F001_T1.csv: line 1: header must be AU numbers.*column 4 is '12.9'"):
        read_occurrence_csv(p)
    p.write_text("0,1.0,2,12\n1,0,1,1\n")  # a whole number written as a float is fine
    assert read_occurrence_csv(p).aus == (1, 2, 12)


def test_non_utf8_occurrence_file_names_the_file(tmp_path):
    p = tmp_path / "F001_T1.csv"
    p.write_bytes(f"{HEADER}\n1,0,1,0,1,1\n".encode("utf-16"))
    with pytest.raises(LabelFormatError, match=r"F001_T1.csv: occurrence label file is not UTF-8 text"):
        read_occurrence_csv(p)


def test_non_utf8_intensity_file_names_the_file(tmp_path):
    p = tmp_path / "F001_T1_AU06.csv"
    p.write_bytes(b"1,2\n2,3 \xe9\n")
    with pytest.raises(LabelFormatError, match=r"F001_T1_AU06.csv: intensity label file is not UTF-8 text \(byte 0xe9"):
        read_frame_value_file(p)


def test_utf8_bom_is_accepted(tmp_path):
    p = tmp_path / "F001_T1.csv"
    p.write_bytes(f"{HEADER}\n1,0,1,0,1,9\n".encode("utf-8-sig"))
    t = read_occurrence_csv(p, (1, 12))
    assert t.frames.tolist() == [1] and t.values.tolist() == [[0.0, -1.0]]


def test_unpadded_intensity_folder_au6_is_read(tmp_path):
    (tmp_path / "AU6").mkdir()
    (tmp_path / "AU6" / "F001_T1_AU06.csv").write_text("1,3\n2,9\n")
    (tmp_path / "AU12").mkdir()
    (tmp_path / "AU12" / "F001_T1_AU12.csv").write_text("1,4\n2,0\n")
    t = read_bp4d_intensity(tmp_path, "F001", "T1", (6, 12), np.array([1, 2]))
    assert t.values.tolist() == [[3.0, 4.0], [-1.0, 0.0]]  # not all -1


def test_two_folders_for_one_au_are_an_error(tmp_path):
    for name in ("AU6", "AU06"):
        (tmp_path / name).mkdir()
    with pytest.raises(LabelFormatError, match=r"two folders for AU 6: AU06 and AU6"):
        read_bp4d_intensity(tmp_path, "F001", "T1", (6,))
    (tmp_path / "AU6").rmdir()
    (tmp_path / "AU_10").mkdir()
    with pytest.raises(LabelFormatError, match=r"AU_10: not an AU intensity folder name"):
        read_bp4d_intensity(tmp_path, "F001", "T1", (6,))


def test_label_file_with_unexpected_name_is_refused(tmp_path):
    fx.make_bp4d(tmp_path / "raw")
    occ = tmp_path / "raw" / "AUCoding" / "AU_OCC"
    (occ / "M001_T2.csv").rename(occ / "M001-T2.csv")
    with pytest.raises(LabelFormatError, match=r"AU_OCC: label file\(s\) \['M001-T2.csv'\] are not named "
                                               r"<subject>_<task>.csv"):
        bp4d.scan(tmp_path / "raw")


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_limit_must_be_positive(tmp_path, capsys, limit):
    fx.make_bp4d(tmp_path / "raw")
    assert cli_prepare("bp4d", tmp_path / "raw", tmp_path / "out", "--limit", limit) == 2
    assert f"limit must be a positive number of frames per sequence, got {limit}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize("threshold", ["nan", "0", "7", "inf"])
def test_disfa_threshold_must_be_in_0_5(tmp_path, capsys, threshold):
    (tmp_path / "raw").mkdir()
    assert cli_prepare("disfa", tmp_path / "raw", tmp_path / "out", "--threshold", threshold) == 2
    assert "threshold must be a number in (0, 5]" in capsys.readouterr().err
    with pytest.raises(ValueError, match="threshold"):
        disfa.scan(tmp_path / "raw", threshold=float(threshold))


# ------------------------------------------------------------------------------------------ bad frames
def test_image_header_claiming_20000_px_is_a_failed_frame(tmp_path):
    seq = tmp_path / "frames"
    src = image_folder(seq, [1, 2, 3])
    png = (seq / "0002.png").read_bytes()
    ihdr = bytearray(png[12:29])  # b"IHDR" + width, height, ...
    ihdr[4:12] = (20000).to_bytes(4, "big") * 2
    huge = png[:12] + bytes(ihdr) + zlib.crc32(bytes(ihdr)).to_bytes(4, "big") + png[33:]
    (seq / "0002.png").write_bytes(huge)
    with pytest.raises(UnreadableFrame, match=r"0002.png: image header claims an oversized image \(Image size "
                                               r"\(400000000 pixels\)"):
        decode_image_bytes(huge, str(seq / "0002.png"))
    out = tmp_path / "out"
    s = run([make_job("F001", "T1", src, [1, 2, 3])], out)
    assert s["aligned_frames"] == 2 and s["failures"]["unreadable_frame"] == 1
    (row,) = failures(out)
    assert row["frame"] == "2" and row["kind"] == "unreadable_frame" and "0002.png" in row["detail"]
    assert "image header claims" in row["detail"]
    # below PIL's own limit, ours still refuses a frame of more than MAX_FRAME_PIXELS
    ihdr[4:12] = (9000).to_bytes(4, "big") * 2
    big = png[:12] + bytes(ihdr) + zlib.crc32(bytes(ihdr)).to_bytes(4, "big") + png[33:]
    with pytest.raises(UnreadableFrame, match=r"image header claims 9000x9000 px \(limit 40000000 px\)"):
        decode_image_bytes(big, "x.png")


def test_empty_image_file_is_a_failed_frame(tmp_path):
    src = image_folder(tmp_path / "frames", [1, 2])
    (tmp_path / "frames" / "0001.png").write_bytes(b"")
    s = run([make_job("F001", "T1", ImageFolderSource.scan(tmp_path / "frames"), [1, 2])], tmp_path / "out")
    assert s["aligned_frames"] == 1
    assert [(r["frame"], r["kind"]) for r in failures(tmp_path / "out")] == [("1", "unreadable_frame")]
    assert "0001.png: empty file" in failures(tmp_path / "out")[0]["detail"]
    assert src is not None


def test_truncated_zip_fails_its_frames_and_the_run_goes_on(tmp_path):
    archive = tmp_path / "F001.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in (1, 2, 3):
            buf = Path(tmp_path / "x.png")
            Image.fromarray(texture(f)).save(buf)
            zf.write(buf, f"F001/T1/{f:04d}.png")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    zsrc = ZipImageSource.scan(archive, "F001/T1/")  # no exception at scan time
    assert zsrc.error and "not a readable zip archive" in zsrc.error
    good = image_folder(tmp_path / "M001", [1, 2])
    out = tmp_path / "out"
    s = run([make_job("F001", "T1", zsrc, [1, 2, 3]), make_job("M001", "T1", good, [1, 2])], out)
    assert s["aligned_frames"] == 2 and s["failures"]["unreadable_frame"] == 3
    rows = failures(out)
    assert {r["subject"] for r in rows} == {"F001"} and all("F001.zip" in r["detail"] for r in rows)
    assert set(index(out)["subject"]) == {"M001"}


def test_corrupt_zip_member_fails_only_that_frame(tmp_path):
    archive = tmp_path / "F001.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for f in (1, 2, 3):
            Image.fromarray(texture(f)).save(tmp_path / "x.png")
            zf.write(tmp_path / "x.png", f"F001/T1/{f:04d}.png")
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("F001/T1/0002.png")
    data = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + 100
    data[start:start + 50] = b"\x00" * 50
    archive.write_bytes(bytes(data))
    s = run([make_job("F001", "T1", ZipImageSource.scan(archive, "F001/T1/"), [1, 2, 3])], tmp_path / "out")
    assert s["aligned_frames"] == 2
    (row,) = failures(tmp_path / "out")
    assert row["frame"] == "2" and row["kind"] == "unreadable_frame" and "F001/T1/0002.png" in row["detail"]


def test_unexpected_aligner_error_is_a_failure_row(tmp_path):
    class GreySource(ImageFolderSource):  # frame 2 comes out as a 4-D array the aligner rejects
        def iter_frames(self, frames):
            for f, img in super().iter_frames(frames):
                yield f, (img[None] if f == 2 else img)

    image_folder(tmp_path / "f", [1, 2, 3])
    src = GreySource.scan(tmp_path / "f")
    s = run([make_job("F001", "T1", src, [1, 2, 3])], tmp_path / "out")
    assert s["aligned_frames"] == 2
    (row,) = failures(tmp_path / "out")
    assert row["kind"] == "unreadable_frame" and "F001_T1 frame 2: cannot align: ValueError" in row["detail"]


def test_frame_source_that_breaks_mid_sequence(tmp_path):
    class Breaks(ImageFolderSource):
        def iter_frames(self, frames):
            it = super().iter_frames(frames)
            yield next(it)
            raise RuntimeError("network share vanished")

    image_folder(tmp_path / "f", [1, 2, 3])
    s = run([make_job("F001", "T1", Breaks.scan(tmp_path / "f"), [1, 2, 3]),
             make_job("M001", "T1", image_folder(tmp_path / "g", [1]), [1])], tmp_path / "out")
    assert s["aligned_frames"] == 2
    rows = failures(tmp_path / "out")
    assert [(r["frame"], r["kind"]) for r in rows] == [("2", "unreadable_frame"), ("3", "unreadable_frame")]
    assert all("frame source failed: RuntimeError: network share vanished" in r["detail"] for r in rows)


def test_no_face_frame_is_reported_and_others_kept(tmp_path):
    image_folder(tmp_path / "f", [1, 2])
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "f" / "0002.png")
    s = run([make_job("F001", "T1", ImageFolderSource.scan(tmp_path / "f"), [1, 2])], tmp_path / "out")
    assert s["aligned_frames"] == 1 and s["failures"]["no_face"] == 1


# ------------------------------------------------------------------------------------------ videos
def test_video_dropped_packet_keeps_later_labels_on_their_frames(tmp_path):
    path = tmp_path / "v.avi"
    write_video(path, 6, drop=2)  # label frame 3 is missing from the file
    src = VideoSource(str(path), count_all=True)
    got = dict(src.iter_frames([1, 2, 3, 4, 5, 6]))
    assert isinstance(got[3], MissingFrame) and "a gap in the video" in str(got[3]) and "v.avi" in str(got[3])
    for k in (1, 2, 4, 5, 6):  # numbered by timestamp: label k shows level 20 + 40 (k - 1)
        assert abs(got[k].mean() - (20 + 40 * (k - 1))) < 3, k
    assert src.decoded_count == 6 and src.gaps == [3] and src.numbering == "timestamp"


def test_video_gap_in_prepare_report_and_index(tmp_path):
    path = tmp_path / "v.avi"
    write_video(path, 6, drop=2)
    out = tmp_path / "out"
    s = run([make_job("SN001", "left", VideoSource(str(path), count_all=True), [1, 2, 3, 4, 5])], out)
    assert s["aligned_frames"] == 4 and s["failures"]["label_without_frame"] == 1
    kinds = {(r["frame"], r["kind"]) for r in failures(out)}
    assert ("3", "label_without_frame") in kinds and ("6", "frame_without_label") in kinds
    df = index(out)
    for _, r in df.iterrows():  # the crop of label k is video frame k-1
        crop = np.asarray(Image.open(out / r["path"]))
        assert abs(crop.mean() - (20 + 40 * (r["frame"] - 1))) < 4, r["frame"]


def test_video_damaged_packet_costs_only_its_frame(tmp_path):
    import re

    path = tmp_path / "v.avi"
    write_video(path, 6)
    data = bytearray(path.read_bytes())
    soi = [m.start() for m in re.finditer(b"\xff\xd8\xff", bytes(data))]
    data[soi[2]:soi[3] - 16] = b"\xaa" * (soi[3] - 16 - soi[2])  # garble the third frame's JPEG
    path.write_bytes(bytes(data))
    got = dict(VideoSource(str(path), count_all=True).iter_frames(range(1, 7)))
    assert isinstance(got[3], UnreadableFrame) and "damaged packet" in str(got[3])
    assert all(abs(got[k].mean() - (20 + 40 * (k - 1))) < 3 for k in (1, 2, 4, 5, 6))


def test_file_that_is_not_a_video(tmp_path):
    bad = tmp_path / "LeftVideoSN001_comp.avi"
    bad.write_bytes(b"RIFF\x00\x00not a video at all" * 10)
    s = run([make_job("SN001", "left", VideoSource(str(bad)), [1, 2]),
             make_job("SN002", "left", image_folder(tmp_path / "g", [1]), [1])], tmp_path / "out")
    assert s["aligned_frames"] == 1 and s["failures"]["unreadable_frame"] == 2
    assert all("cannot open video" in r["detail"] and "LeftVideoSN001_comp.avi" in r["detail"]
               for r in failures(tmp_path / "out"))


# ------------------------------------------------------------------------------------------ depth / thermal
def _thermal_job(tmp_path, write):
    tdir = tmp_path / "Thermal"
    tdir.mkdir()
    for f in (1, 2):
        np.save(tdir / f"{f:04d}.npy", np.full((32, 32), 30.0, np.float32))
    write(tdir / "0002.npy")
    return make_job("F001", "T1", image_folder(tmp_path / "rgb", [1, 2]), [1, 2],
                    {"thermal": ThermalReader(folder=str(tdir))})


def test_empty_thermal_npy_fails_that_modality_only(tmp_path):
    out = tmp_path / "out"
    s = run([_thermal_job(tmp_path, lambda p: p.write_bytes(b""))], out)
    assert s["aligned_frames"] == 2 and s["failures"]["unreadable_modality"] == 1
    (row,) = failures(out)
    assert row["frame"] == "2" and "thermal:" in row["detail"] and "0002.npy: unreadable thermal frame" in row["detail"]
    df = index(out)
    assert df["thermal_path"].notna().tolist() == [True, False]  # frame 2 keeps its RGB crop


@pytest.mark.parametrize("array", [np.zeros((2, 3, 4), np.float32), np.zeros(0, np.float32),
                                   np.array(["a", "b"])], ids=["3-D", "empty", "strings"])
def test_wrong_shape_thermal_npy_fails_that_modality_only(tmp_path, array):
    out = tmp_path / "out"
    s = run([_thermal_job(tmp_path, lambda p: np.save(p, array))], out)
    assert s["aligned_frames"] == 2 and s["failures"]["unreadable_modality"] == 1
    assert "must be a non-empty H x W numeric array" in failures(out)[0]["detail"]


def test_obj_with_out_of_range_index_fails_that_modality_only(tmp_path):
    folder = tmp_path / "rgb"
    image_folder(folder, [1, 2])
    good = fx.write_obj(np.array([[0, 0, 1.0], [31, 0, 2.0], [0, 31, 3.0]]), np.array([[0, 1], [1, 1], [0, 0.0]]))
    (folder / "0001.obj").write_text(good)
    (folder / "0002.obj").write_text(good + "f 1/1 2/2 99/99\n")
    reader = ObjDepthReader(folder=str(folder), shape=(32, 32))
    out = tmp_path / "out"
    s = run([make_job("F001", "T1", ImageFolderSource.scan(folder), [1, 2], {"depth": reader})], out)
    assert s["aligned_frames"] == 2 and s["failures"]["unreadable_modality"] == 1
    (row,) = failures(out)
    assert "0002.obj: face refers to vertex 99" in row["detail"] and row["frame"] == "2"


def test_obj_that_is_not_text_fails_that_modality_only(tmp_path):
    folder = tmp_path / "rgb"
    image_folder(folder, [1])
    (folder / "0001.obj").write_bytes(b"v 1 2 3\n\xff\xfe\x00garbage")
    s = run([make_job("F001", "T1", ImageFolderSource.scan(folder), [1],
                      {"depth": ObjDepthReader(folder=str(folder), shape=(32, 32))})], tmp_path / "out")
    assert s["failures"]["unreadable_modality"] == 1
    assert "0001.obj: unreadable OBJ model (UnicodeDecodeError" in failures(tmp_path / "out")[0]["detail"]


# ------------------------------------------------------------------------------------------ reruns and caches
def test_rerun_after_labels_changed_redoes_the_sequence(tmp_path):
    src = image_folder(tmp_path / "f", [1, 2, 3])
    out = tmp_path / "out"
    run([make_job("F001", "T1", src, [1, 2, 3])], out)
    before = index(out)
    s = run([make_job("F001", "T1", src, [1, 2, 3], au_offset=1)], out)  # same frames, other labels
    after = index(out)
    assert s["redone_sequences"] == {"F001_T1": "labels changed since it was prepared"}
    assert (after["au_1"] != before["au_1"]).all() and after["au_1"].tolist() == [0, 1, 0]
    s = run([make_job("F001", "T1", src, [1, 2, 3], au_offset=1)], out)  # unchanged: reused
    assert s["reused_sequences"] == 1 and s["redone_sequences"] == {}


def test_rerun_with_subjects_keeps_the_other_subjects_in_the_index(tmp_path):
    a, b = image_folder(tmp_path / "a", [1, 2]), image_folder(tmp_path / "b", [5])
    out = tmp_path / "out"
    run([make_job("F001", "T1", a, [1, 2]), make_job("M001", "T2", b, [5])], out)
    s = run([make_job("F001", "T1", a, [1, 2])], out)  # like --subjects F001
    assert sorted(set(index(out)["subject"])) == ["F001", "M001"] and len(index(out)) == 3
    assert s["sequences"] == 2 and s["sequences_this_run"] == 1 and s["earlier_sequences"] == 1
    meta = json.loads((out / "prepare.json").read_text())
    assert meta["complete"] is True and meta["summary"]["aligned_frames"] == 3


def test_earlier_sequence_with_lost_crops_is_reported_not_indexed(tmp_path):
    a, b = image_folder(tmp_path / "a", [1, 2]), image_folder(tmp_path / "b", [5])
    out = tmp_path / "out"
    run([make_job("F001", "T1", a, [1, 2]), make_job("M001", "T2", b, [5])], out)
    (out / "crops" / "M001" / "T2" / "00005.jpg").unlink()
    s = run([make_job("F001", "T1", a, [1, 2])], out)
    assert s["failures"]["part_damaged"] == 1 and set(index(out)["subject"]) == {"F001"}
    (row,) = [r for r in failures(out) if r["kind"] == "part_damaged"]
    assert row["subject"] == "M001" and "M001_T2.json" in row["detail"] and "--subjects" in row["detail"]


def test_damaged_part_file_is_redone(tmp_path):
    src = image_folder(tmp_path / "f", [1, 2])
    out = tmp_path / "out"
    run([make_job("F001", "T1", src, [1, 2])], out)
    (out / "parts" / "F001_T1.json").write_text('{"format": 2, "rows": [')
    s = run([make_job("F001", "T1", src, [1, 2])], out)
    assert s["redone_sequences"] == {"F001_T1": "part file unreadable or of an older format"}
    assert len(index(out)) == 2


def test_temporary_files_of_a_killed_run_are_removed(tmp_path):
    src = image_folder(tmp_path / "f", [1, 2])
    out = tmp_path / "out"
    run([make_job("F001", "T1", src, [1, 2])], out)
    crop_dir = out / "crops" / "F001" / "T1"
    stale = [out / ".index.csv.abc.tmp", out / "parts" / ".F001_T1.json.x.tmp", crop_dir / ".00001.jpg.123.tmp"]
    for t in stale:
        t.write_bytes(b"half")
    (crop_dir / "00002.jpg").unlink()  # the killed run lost a crop: the sequence is redone
    run([make_job("F001", "T1", src, [1, 2])], out)
    assert not any(t.exists() for t in stale) and not list(out.rglob("*.tmp"))
    assert (crop_dir / "00002.jpg").is_file()


def test_full_disk_is_one_error_and_leaves_no_tmp(tmp_path, monkeypatch):
    import errno

    src = image_folder(tmp_path / "f", [1, 2])
    real = Path.write_bytes

    def full(self, data):
        if self.name.endswith(".tmp") and self.name.startswith(".0000"):
            real(self, data[: len(data) // 2])  # half written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"out: cannot write the prepared data \(OSError: \[Errno 28\] No space"):
        run([make_job("F001", "T1", src, [1, 2])], out)
    assert not list(out.rglob("*.tmp"))
    assert json.loads((out / "prepare.json").read_text())["complete"] is False


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    fx.make_bp4d(tmp_path / "raw")
    (tmp_path / "out").write_text("I am a file")
    assert cli_prepare("bp4d", tmp_path / "raw", tmp_path / "out") == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "I am a file"


def test_out_that_is_not_writable_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match=r"--out .*locked: the folder is not writable"):
        check_output_folder(tmp_path / "locked")


def test_unreadable_prepare_json_is_named(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "prepare.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"out/prepare.json: unreadable"):
        run([make_job("F001", "T1", image_folder(tmp_path / "f", [1]), [1])], out)


@pytest.mark.parametrize("option,value,match", [("workers", 0, "--workers must be a positive integer"),
                                                ("track_gap", -1, "--track-gap must be an integer >= 0"),
                                                ("verify", "crc", "--verify must be size or full")])
def test_bad_prepare_options(tmp_path, option, value, match):
    with pytest.raises(ValueError, match=match):
        run([make_job("F001", "T1", image_folder(tmp_path / "f", [1]), [1])], tmp_path / "out", **{option: value})
    assert not (tmp_path / "out").exists()


def test_damaged_index_csv_is_named_by_the_loader(tmp_path):
    out = tmp_path / "out"
    run([make_job("F001", "T1", image_folder(tmp_path / "f", [1, 2]), [1, 2])], out)
    assert len(PreparedDataset(out)) == 2
    (out / "index.csv").write_text("subject,sequence\nF001\n")
    with pytest.raises(ValueError, match=r"out/index.csv: not a valid index"):
        PreparedDataset(out)
    (out / "prepare.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"not a prepared folder \(.*prepare.json is missing\)"):
        PreparedDataset(out)


def test_prepared_fingerprint_follows_content_not_row_count(tmp_path):
    src = image_folder(tmp_path / "f", [1, 2, 3])
    out = tmp_path / "out"
    run([make_job("F001", "T1", src, [1, 2, 3])], out)
    first = PreparedDataset(out).fingerprint
    assert PreparedDataset(out).fingerprint == first  # stable
    run([make_job("F001", "T1", src, [1, 2, 3], au_offset=1)], out)  # same folder, same row count
    again = PreparedDataset(out)
    assert len(again) == 3 and again.fingerprint != first
    assert again.fingerprint.startswith("out:")


def test_damaged_video_cache_is_recomputed(tmp_path):
    from au_lib.data.video import _load_npz, _save_npz

    p = tmp_path / "landmarks.npz"
    _save_npz(p, landmarks=np.zeros((2, 68, 2)), ok=np.ones(2, bool))
    assert _load_npz(p, ("landmarks", "ok"))["ok"].tolist() == [True, True]
    p.write_bytes(p.read_bytes()[:40])
    with pytest.warns(UserWarning, match=r"landmarks.npz: damaged cache .* recomputing it"):
        assert _load_npz(p, ("landmarks", "ok")) is None
    _save_npz(p, landmarks=np.zeros((2, 68, 2)))
    with pytest.warns(UserWarning, match=r"arrays \['ok'\] missing"):
        assert _load_npz(p, ("landmarks", "ok")) is None


# ------------------------------------------------------------------------------------------ processes
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_pool_workers_die_with_a_killed_parent(tmp_path):
    for s in ("A", "B", "C"):
        image_folder(tmp_path / "raw" / s, range(1, 41), size=16)
    pids = tmp_path / "pids"
    pids.mkdir()
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(HERE)!r}, {str(HERE.parent)!r}]
        from pathlib import Path
        import numpy as np
        from _fake_align import FakeAligner
        from au_lib.data.prepare import SequenceJob, prepare
        from au_lib.data.sources import ImageFolderSource

        if __name__ == "__main__":
            raw = Path({str(tmp_path / "raw")!r})
            jobs = [SequenceJob(s, "T1", list(range(1, 41)), np.zeros((40, 2), np.float32),
                                np.zeros((40, 1), np.float32), ImageFolderSource.scan(raw / s)) for s in "ABC"]
            prepare("bp4d", jobs, {str(tmp_path / "out")!r}, aus=(1, 2), intensity_aus=(6,), workers=2,
                    aligner=FakeAligner(delay=0.1, pid_dir={str(pids)!r}), progress=False)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.monotonic() + 60
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.1)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) >= 2, "the pool never started"
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(w) for w in workers), "pool workers outlived their parent"
        crops = len(list((tmp_path / "out").rglob("*.jpg")))
        time.sleep(0.5)
        assert len(list((tmp_path / "out").rglob("*.jpg"))) == crops  # nobody writes any more
    finally:
        if parent.poll() is None:
            parent.kill()
        for w in [int(p.name) for p in pids.iterdir()]:
            if alive(w):
                os.kill(w, signal.SIGKILL)


PREPARE_SCRIPT = """
import sys
sys.path[:0] = [{here!r}, {root!r}]
from pathlib import Path
import numpy as np
from _fake_align import FakeAligner
from au_lib.data.prepare import SequenceJob, prepare
from au_lib.data.sources import ImageFolderSource

if __name__ == "__main__":
    raw, out, delay, workers = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    jobs = []
    for s in "ABCD":
        frames = list(range(1, 13))
        au = np.array([[f % 2, (f // 2) % 2] for f in frames], np.float32)
        jobs.append(SequenceJob(s, "T1", frames, au, np.full((12, 1), 3, np.float32),
                                ImageFolderSource.scan(raw / s)))
    prepare("bp4d", jobs, out, aus=(1, 2), intensity_aus=(6,), workers=workers,
            aligner=FakeAligner(delay=delay), progress=False)
"""


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in (".jpg", ".csv")}


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_prepare_resumes_to_the_identical_result(tmp_path, workers):
    for s in "ABCD":
        image_folder(tmp_path / "raw" / s, range(1, 13), size=16)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "raw" / "B" / "0005.png")  # a no_face row
    script = tmp_path / "run.py"
    script.write_text(PREPARE_SCRIPT.format(here=str(HERE), root=str(HERE.parent)))
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def launch(out, delay):
        return subprocess.Popen([sys.executable, str(script), str(tmp_path / "raw"), str(out), str(delay),
                                 str(workers)], env=env)

    ref = tmp_path / "uninterrupted"
    assert launch(ref, 0.0).wait(120) == 0
    out = tmp_path / "resumed"
    p = launch(out, 0.05)
    deadline = time.monotonic() + 60
    while len(list(out.glob("parts/*.json"))) < 1 and time.monotonic() < deadline:  # at least one sequence done
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    assert not json.loads((out / "prepare.json").read_text())["complete"]
    assert len(list(out.glob("parts/*.json"))) < 4, "the run finished before it was killed"
    time.sleep(0.5)  # let orphaned workers (if any) notice
    assert launch(out, 0.0).wait(120) == 0
    assert _tree(out) == _tree(ref)  # index.csv, failures.csv and every crop, byte for byte
    summary = json.loads((out / "prepare.json").read_text())["summary"]
    assert summary["reused_sequences"] >= 1 and summary["aligned_frames"] == 47
    assert not list(out.rglob("*.tmp"))

"""Label parsing of BP4D / BP4D+ / DISFA files, frame-name resolution, folds (no face alignment here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from au_lib.data import bp4d, bp4dplus, disfa
from au_lib.data.folds import BP4D_PARTS, DISFA_PARTS
from au_lib.data.labels import (LabelFormatError, presence_from_intensity, read_bp4d_intensity,
                                read_disfa_labels, read_frame_value_file, read_occurrence_csv)
from au_lib.data.sources import index_image_names, frame_number_from_name
from au_lib.facs import BP4D_AUS, BP4DPLUS_AUS, DISFA_ANNOTATED_AUS, DISFA_AUS


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


HEADER = "0,1,2,4,6,7,10,12,14,15,17,23,24,25,43\n"


def test_occurrence_columns_by_header_and_unknown_masked(tmp_path):
    # columns deliberately permuted: position must not be trusted, the header must
    p = write(tmp_path / "F001_T1.csv", "0,24,1,12,2,4,6,7,10,14,15,17,23\n"
                                        "2440,1,9,0,1,0,0,0,0,0,0,0,0\n"
                                        "2441,9,1,1,0,0,0,0,0,0,0,0,0\n")
    t = read_occurrence_csv(p, BP4D_AUS)
    assert t.aus == BP4D_AUS
    assert t.frames.tolist() == [2440, 2441]
    col = {a: i for i, a in enumerate(BP4D_AUS)}
    assert t.values[0, col[1]] == -1 and t.values[0, col[24]] == 1 and t.values[0, col[2]] == 1
    assert t.values[1, col[24]] == -1 and t.values[1, col[1]] == 1 and t.values[1, col[12]] == 1
    assert set(np.unique(t.values)) <= {-1.0, 0.0, 1.0}
    assert t.values.dtype == np.float32


def test_occurrence_all_columns_and_bp4dplus_34(tmp_path):
    head = "0," + ",".join(map(str, BP4DPLUS_AUS)) + "\n"
    p = write(tmp_path / "F001_T1.csv", head + "1," + ",".join(["0"] * 33 + ["9"]) + "\n")
    t = read_occurrence_csv(p)
    assert t.aus == BP4DPLUS_AUS and t.values.shape == (1, 34)
    assert t.values[0, -1] == -1
    assert read_occurrence_csv(p, BP4D_AUS).values.shape == (1, 12)


@pytest.mark.parametrize("text, match", [
    (HEADER.replace(",24", "") + "1" + ",0" * 13 + "\n", r"missing column for AU \[24\]"),
    ("frame,AU1\n1,0\n", "header must be AU numbers"),
    ("5,1,2\n1,0,0\n", "first header column must be 0"),
    (HEADER + "1" + ",0" * 13 + "\n", "line 2: 14 columns, the header has 15"),
    (HEADER + "1,2" + ",0" * 13 + "\n", r"line 2: AU1 value 2 not in \{0, 1, 9\}"),
    (HEADER + "1,0,x" + ",0" * 12 + "\n", r"line 2: AU2 value 'x' is not an integer"),
    (HEADER + "1.5" + ",0" * 14 + "\n", r"line 2: frame '1.5' is not an integer"),
    (HEADER + "3" + ",0" * 14 + "\n" + "3" + ",0" * 14 + "\n", r"duplicate frame numbers \[3\]"),
    (HEADER + "-1" + ",0" * 14 + "\n", r"1-based, found -1"),
    ("", "empty file"),
])
def test_occurrence_errors_name_file_and_line(tmp_path, text, match):
    p = write(tmp_path / "bad.csv", text)
    with pytest.raises(LabelFormatError, match=match) as err:
        read_occurrence_csv(p, BP4D_AUS)
    assert "bad.csv" in str(err.value)


def test_missing_label_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_occurrence_csv(tmp_path / "nope.csv")


def test_bp4d_intensity_files(tmp_path):
    d = tmp_path / "AU_INT"
    write(d / "AU06" / "F001_T1_AU06.csv", "10,3\n11,9\n12,0\n")
    write(d / "AU12" / "F001_T1_AU12.csv", "10,5\n11,4\n")
    t = read_bp4d_intensity(d, "F001", "T1", (6, 10, 12), frames=np.array([10, 11, 12]))
    assert t.values.tolist() == [[3, -1, 5], [-1, -1, 4], [0, -1, -1]]  # AU10: no file -> unknown


@pytest.mark.parametrize("text, match", [
    ("1,2\n2,two\n", r"line 2: intensity 'two' is not an integer"),
    ("1,2.5\n", r"line 1: intensity '2.5' is not an integer"),
    ("1,7\n", r"intensity 7 outside 0..5"),
    ("1\n", r"expected 'frame,intensity'"),
    ("1,2,3\n", r"expected 'frame,intensity'"),
    ("\n\n", "no label lines"),
])
def test_intensity_errors(tmp_path, text, match):
    p = write(tmp_path / "SN001_au1.txt", text)
    with pytest.raises(LabelFormatError, match=match):
        read_frame_value_file(p, unknown=None)


def test_disfa_labels_threshold_and_frame_mismatch(tmp_path):
    lab = tmp_path / "ActionUnit_Labels"
    for au in DISFA_ANNOTATED_AUS:
        write(lab / "SN001" / f"SN001_au{au}.txt", "".join(f"{f},{(f + au) % 6}\n" for f in range(1, 8)))
    t = read_disfa_labels(lab, "SN001", DISFA_ANNOTATED_AUS)
    assert t.frames.tolist() == list(range(1, 8))
    assert t.values[0, 0] == 2  # AU1 at frame 1: (1 + 1) % 6
    occ = presence_from_intensity(t.select(DISFA_AUS).values, 2)
    expected = np.array([[((f + au) % 6) >= 2 for au in DISFA_AUS] for f in range(1, 8)], np.float32)
    np.testing.assert_array_equal(occ, expected)
    assert presence_from_intensity(np.array([1.0, 2.0, -1.0]), 2).tolist() == [0, 1, -1]
    assert presence_from_intensity(np.array([1.0, 2.0]), 1).tolist() == [1, 1]
    write(lab / "SN001" / "SN001_au26.txt", "1,0\n2,0\n")
    with pytest.raises(LabelFormatError, match="frames differ"):
        read_disfa_labels(lab, "SN001", DISFA_ANNOTATED_AUS)
    (lab / "SN001" / "SN001_au9.txt").unlink()
    with pytest.raises(FileNotFoundError, match="SN001_au9.txt"):
        read_disfa_labels(lab, "SN001", DISFA_ANNOTATED_AUS)


def test_frame_names_padded_and_unpadded():
    assert frame_number_from_name("0712.jpg") == 712 == frame_number_from_name("712.jpg")
    assert frame_number_from_name("00000.png") == 0
    assert frame_number_from_name("thumb.jpg") is None
    assert index_image_names(["a/0712.jpg", "a/0713.JPG", "a/notes.txt"]) == {712: "a/0712.jpg", 713: "a/0713.JPG"}
    with pytest.raises(ValueError, match="two images for frame 712"):
        index_image_names(["0712.jpg", "712.jpg"], "F001/T1")


def test_standard_folds_are_subject_exclusive_and_complete():
    for mod, parts, n in ((bp4d, BP4D_PARTS, 41), (disfa, DISFA_PARTS, 27)):
        folds = mod.folds()
        assert len(folds) == 3
        all_subjects = {s for p in parts for s in p}
        assert len(all_subjects) == n
        for f in folds:
            assert not set(f.train) & set(f.test)
            assert set(f.train) | set(f.test) == all_subjects
            assert set(f.test) == set(parts[3 - f.index])  # fold k tests on part 4-k
    assert disfa.folds()[0].test[0] == "SN003"
    assert bp4d.folds()[2].test == BP4D_PARTS[0]


def test_bp4dplus_folds_from_subjects():
    subs = [f"F{i:03d}" for i in range(1, 11)]
    folds = bp4dplus.folds(subjects=subs, seed=1)
    assert sorted(s for f in folds for s in f.test) == subs
    assert folds == bp4dplus.folds(subjects=subs, seed=1)


def test_dataset_aus():
    assert bp4d.AUS == BP4D_AUS and disfa.AUS == DISFA_AUS and bp4dplus.AUS == BP4D_AUS
    assert bp4dplus.ALL_AUS == BP4DPLUS_AUS and bp4dplus.CODED_TASKS == ("T1", "T6", "T7", "T8")


def test_open_dataset_without_prepared_data_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("AU_CACHE", str(tmp_path))
    monkeypatch.delenv("AU_BP4D_PREPARED", raising=False)
    monkeypatch.delenv("AU_BP4D_ROOT", raising=False)
    with pytest.raises(FileNotFoundError, match=r"python -m au_lib data prepare bp4d --root"):
        bp4d.open_dataset(profile="smoke")
    from au_lib.data.registry import open_dataset

    with pytest.raises(FileNotFoundError, match="AU_DISFA_PREPARED"):
        open_dataset("disfa", profile="smoke")


def test_scan_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        bp4d.scan(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="AU_OCC"):
        bp4d.scan(tmp_path)
    (tmp_path / "ActionUnit_Labels" / "SN001").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="SN001_au1.txt"):
        disfa.scan(tmp_path)
    with pytest.raises(ValueError, match="not AU-coded"):
        bp4dplus.scan(tmp_path, tasks=("T2",))

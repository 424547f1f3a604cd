"""Tiny fixture trees that mimic the distributed BP4D, BP4D+ and DISFA layouts exactly.

Faces come from scikit-image's public-domain ``astronaut`` image (downscaled, shifted a little per
frame), so the dlib aligner finds a real face in every good frame.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

FACE_SIZE = 256
BP4D_HEADER = [0] + list(range(1, 40)) + [40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53]
BP4DPLUS_HEADER = [0, 1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 27, 28,
                   29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39]


def face(k: int = 0, size: int = FACE_SIZE) -> np.ndarray:
    """A ``size`` x ``size`` window of the astronaut around her face (full resolution, so the face is
    ~90 px and dlib finds it without upsampling), shifted by ``k`` pixels right and down (uint8 HxWx3)."""
    from skimage import data

    img = data.astronaut()
    x0 = 220 - size // 2
    return np.ascontiguousarray(np.roll(img[:size, x0:x0 + size], (k, k), axis=(0, 1)))


def blank(size: int = FACE_SIZE) -> np.ndarray:
    return np.full((size, size, 3), 128, np.uint8)


def save_jpg(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=92)


def occ_rows(frames, header, rng) -> list[list[int]]:
    rows = []
    for f in frames:
        vals = [int(rng.integers(0, 2)) for _ in header[1:]]
        rows.append([f] + vals)
    return rows


def write_csv(path: Path, header, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(str(h) for h in header)] + [",".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def make_bp4d(root: Path, seed: int = 0) -> dict:
    """BP4D tree. F001/T1: frames 712-716 zero-padded (0711 unlabelled, 0714 corrupt, 0715 no face),
    labels 712-717 (717 has no image); M001/T2: unpadded names 5-7, all good. Returns expectations."""
    rng = np.random.default_rng(seed)
    for f in (711, 712, 713, 716):
        save_jpg(root / "F001" / "T1" / f"{f:04d}.jpg", face(f - 712))
    (root / "F001" / "T1" / "0714.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    save_jpg(root / "F001" / "T1" / "0715.jpg", blank())
    rows = occ_rows(range(712, 718), BP4D_HEADER, rng)
    rows[0][BP4D_HEADER.index(1)] = 9       # AU1 not coded at 712
    rows[1][BP4D_HEADER.index(24)] = 9      # AU24 not coded at 713
    rows[0][BP4D_HEADER.index(12)] = 1
    write_csv(root / "AUCoding" / "AU_OCC" / "F001_T1.csv", BP4D_HEADER, rows)
    for au in (6, 12):
        p = root / "AUCoding" / "AU_INT" / f"AU{au:02d}" / f"F001_T1_AU{au:02d}.csv"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(f"{f},{(f + au) % 6 if f != 713 else 9}\n" for f in range(712, 718)))
    for f in (5, 6, 7):
        save_jpg(root / "M001" / "T2" / f"{f}.jpg", face(2 * f))
    write_csv(root / "AUCoding" / "AU_OCC" / "M001_T2.csv", BP4D_HEADER, occ_rows((5, 6, 7), BP4D_HEADER, rng))
    return {"F001_T1": rows}


def make_disfa(root: Path, subjects=("SN001", "SN002"), n_frames: int = 6, extra_video_frames: int = 1,
               missing_video_frames: int = 0, camera: str = "Left") -> None:
    """DISFA tree with short AVI videos (written with PyAV) and per-AU label files.

    Each video has ``n_frames + extra_video_frames - missing_video_frames`` frames; labels cover
    frames 1..n_frames. Frame 3 of each video is blank (no face). Intensity of AU k at frame f is
    ``(f + k) % 6``.
    """
    import av

    from au_lib.facs import DISFA_ANNOTATED_AUS

    for s in subjects:
        vdir = root / f"Videos_{camera}Camera"
        vdir.mkdir(parents=True, exist_ok=True)
        n_video = n_frames + extra_video_frames - missing_video_frames
        with av.open(str(vdir / f"{camera}Video{s}_comp.avi"), "w") as c:
            st = c.add_stream("mjpeg", rate=20)
            st.width = st.height = FACE_SIZE
            st.pix_fmt = "yuvj420p"
            for i in range(n_video):
                img = blank() if i + 1 == 3 else face(i)
                for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(pkt)
            for pkt in st.encode():
                c.mux(pkt)
        ldir = root / "ActionUnit_Labels" / s
        ldir.mkdir(parents=True, exist_ok=True)
        for au in DISFA_ANNOTATED_AUS:
            (ldir / f"{s}_au{au}.txt").write_text("".join(f"{f},{(f + au) % 6}\n" for f in range(1, n_frames + 1)))


def write_obj(verts: np.ndarray, uv: np.ndarray) -> str:
    lines = [f"v {x:.4f} {y:.4f} {z:.4f}" for x, y, z in verts]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv]
    n = len(verts)
    lines += [f"f {i + 1}/{i + 1} {i + 2}/{i + 2} {i + 3}/{i + 3}" for i in range(0, n - 2, 3)]
    return "\n".join(lines) + "\n"


PEAK = (133, 127)  # the astronaut's nose in face(): where the fixture depth model is highest


def face_obj(size: int = FACE_SIZE, step: int = 4) -> str:
    """A 'model' whose texture coordinates cover the frame; height = 100 - 0.5 * distance from PEAK (mm)."""
    ys, xs = np.mgrid[0:size:step, 0:size:step]
    u = (xs.ravel() + 0.5) / size
    v = 1 - (ys.ravel() + 0.5) / size
    z = 100.0 - np.hypot(xs.ravel() - PEAK[0], ys.ravel() - PEAK[1]) * 0.5
    verts = np.c_[xs.ravel(), ys.ravel(), z]
    return write_obj(verts, np.c_[u, v])


def make_bp4dplus(root: Path, seed: int = 0) -> None:
    """BP4D+ tree: ``2D+3D/F001.zip`` (F001/T1 frames 1-3 + OBJ models), T2 (not coded, ignored),
    extracted ``2D+3D/M002/T8`` frames; 34-column AU_OCC; thermal .npy frames for F001/T1."""
    rng = np.random.default_rng(seed)
    base = root / "2D+3D"
    base.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(base / "F001.zip", "w") as zf:
        for f in (1, 2, 3):
            buf = io.BytesIO()
            Image.fromarray(face(f)).save(buf, format="JPEG", quality=92)
            zf.writestr(f"F001/T1/{f:04d}.jpg", buf.getvalue())
            zf.writestr(f"F001/T1/{f:04d}.obj", face_obj())
            zf.writestr(f"F001/T2/{f:04d}.jpg", buf.getvalue())
    for f in (10, 11):
        save_jpg(base / "M002" / "T8" / f"{f:04d}.jpg", face(f - 10))
    write_csv(root / "AUCoding" / "AU_OCC" / "F001_T1.csv", BP4DPLUS_HEADER, occ_rows((1, 2, 3), BP4DPLUS_HEADER, rng))
    write_csv(root / "AUCoding" / "AU_OCC" / "F001_T2.csv", BP4DPLUS_HEADER, occ_rows((1, 2, 3), BP4DPLUS_HEADER, rng))
    write_csv(root / "AUCoding" / "AU_OCC" / "M002_T8.csv", BP4DPLUS_HEADER, occ_rows((10, 11), BP4DPLUS_HEADER, rng))
    tdir = root / "Thermal" / "F001" / "T1"
    tdir.mkdir(parents=True, exist_ok=True)
    for f in (1, 2, 3):
        np.save(tdir / f"{f:04d}.npy", np.full((FACE_SIZE, FACE_SIZE), 30.0 + f, np.float32))

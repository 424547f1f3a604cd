"""dlib alignment on real faces (scikit-image astronaut, frames of the Pexels video) and the video datasets."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data
from skimage.transform import rotate

from au_lib.data import align as A
from au_lib.data.align import FaceAligner, NoFaceError, eye_centres, template_points, warp_to_crop

# Approximate face box of the astronaut at 512 px (hairline to chin, ear to ear), by eye.
ASTRONAUT_FACE = (160, 60, 290, 200)


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner(224)


def eyes(landmarks: np.ndarray) -> np.ndarray:
    """Eye positions as the mid-points of the eye corners (36/39 and 42/45): (2, 2)."""
    lm = np.asarray(landmarks)
    return np.stack([(lm[36] + lm[39]) / 2, (lm[42] + lm[45]) / 2])


def eye_line_deg(landmarks: np.ndarray) -> float:
    (lx, ly), (rx, ry) = eyes(landmarks)
    return float(np.degrees(np.arctan2(ry - ly, rx - lx)))


def eye_error_px(face, aligner) -> float:
    return float(np.linalg.norm(eyes(face.crop_landmarks) - eyes(aligner.template), axis=1).max())


def test_model_file_is_local():
    p = A.landmark_model_path()
    assert p.name == "shape_predictor_68_face_landmarks.dat" and p.stat().st_size > 50e6


def test_template_is_symmetric_and_upright():
    t = template_points(224)
    flipped = t[list(A.FLIP_68)].copy()
    flipped[:, 0] = 223 - flipped[:, 0]
    np.testing.assert_allclose(flipped, t, atol=1e-9)
    assert eye_line_deg(t) == pytest.approx(0.0, abs=1e-9)
    (lx, ly), (rx, ry) = eye_centres(t)
    assert 0.25 * 224 < lx < rx < 0.75 * 224 and 0.2 * 224 < ly < 0.45 * 224
    chin = t[8]
    assert chin[1] < 223, "the chin must stay inside the crop"
    with pytest.raises(ValueError, match="crop size"):
        template_points(4)


def test_warp_identity_and_pixel_centres():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(warp_to_crop(img, np.eye(3), 16), img)
    f = rng.random((16, 16)).astype(np.float32)
    np.testing.assert_allclose(warp_to_crop(f, np.eye(3), 16), f, atol=1e-6)
    # a pure translation by (+3, +1): output(x, y) = source(x - 3, y - 1)
    m = np.array([[1, 0, 3], [0, 1, 1], [0, 0, 1]], float)
    out = warp_to_crop(f, m, 16, fill=-1)
    np.testing.assert_allclose(out[1:, 3:], f[:-1, :-3], atol=1e-6)
    assert (out[0] == -1).all() and (out[:, :3] == -1).all()


def test_warp_agrees_with_skimage_reference(aligner):
    """PIL's affine resampling (used for speed) matches skimage.transform.warp (bilinear, order=1)."""
    from skimage.transform import SimilarityTransform, warp

    img = data.astronaut()
    face = aligner.align(img)
    f = img[..., 1].astype(np.float32) / 255
    ours = warp_to_crop(f, face.matrix, 224)
    ref = warp(f, SimilarityTransform(face.matrix).inverse, output_shape=(224, 224), order=1)
    assert np.abs(ours - ref).max() < 0.02 and np.abs(ours - ref).mean() < 2e-3
    rgb_ref = warp(img, SimilarityTransform(face.matrix).inverse, output_shape=(224, 224), order=1,
                   preserve_range=True)
    assert np.abs(face.crop.astype(float) - rgb_ref).mean() < 1.0


def test_astronaut_landmarks_on_face_and_crop_upright(aligner):
    img = data.astronaut()
    face = aligner.align(img, name="astronaut")
    l, t, r, b = ASTRONAUT_FACE
    inside = (face.landmarks[:, 0] > l) & (face.landmarks[:, 0] < r) & \
             (face.landmarks[:, 1] > t) & (face.landmarks[:, 1] < b)
    assert inside.all(), face.landmarks[~inside]
    # eyes above the nose tip above the mouth, left eye on the image left
    (lx, ly), (rx, ry) = eye_centres(face.landmarks)
    assert lx < face.landmarks[30, 0] < rx and max(ly, ry) < face.landmarks[30, 1] < face.landmarks[57, 1]
    assert face.crop.shape == (224, 224, 3) and face.crop.dtype == np.uint8
    assert abs(eye_line_deg(face.crop_landmarks)) < 3.0
    assert eye_error_px(face, aligner) < 5.0
    # crop landmarks really are where the crop shows them: re-detect on the crop itself
    again = FaceAligner(224).align(face.crop, name="crop")
    assert np.abs(again.landmarks - face.crop_landmarks).mean() < 4.0


@pytest.mark.parametrize("angle", [-25, 15])
def test_rotated_astronaut_is_made_upright(aligner, angle):
    img = (rotate(data.astronaut(), angle, center=(220, 120), preserve_range=True)).astype(np.uint8)
    face = aligner.align(img, name=f"astronaut rotated {angle}")
    assert face.roll_deg == pytest.approx(-angle, abs=5)   # the source face is tilted ...
    assert abs(eye_line_deg(face.crop_landmarks)) < 3.0   # ... the crop is not
    assert eye_error_px(face, aligner) < 5.0


def test_no_face_error_names_the_image(aligner):
    with pytest.raises(NoFaceError, match="grey.jpg: no face found"):
        aligner.align(np.full((200, 200, 3), 128, np.uint8), name="grey.jpg")
    with pytest.raises(ValueError, match="uint8"):
        aligner.align(np.zeros((50, 50, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        aligner.align_with_landmarks(np.zeros((50, 50, 3), np.uint8), np.zeros((5, 2)))


def _pexels_or_skip():
    from au_lib.data.video import pexels_video_path

    try:
        return pexels_video_path()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_pexels_frames_align(aligner):
    from au_lib.data.sources import read_video

    video = read_video(_pexels_or_skip())
    assert video.shape == (472, 360, 640, 3)
    small = FaceAligner(224, upsample=0)
    for k in (0, 60, 120, 180, 240, 300, 360, 471):
        face = small.align(video[k], name=f"pexels frame {k}")
        x0, y0, x1, y1 = face.box
        assert 150 < (x0 + x1) / 2 < 500 and 0 < (y0 + y1) / 2 < 300  # the face, not the background
        assert (face.landmarks[:, 0] > x0 - 40).all() and (face.landmarks[:, 0] < x1 + 40).all()
        # upright and registered: eye line within 5 degrees, eyes within 6 px (of 224) of the template
        assert abs(eye_line_deg(face.crop_landmarks)) < 5.0, k
        assert eye_error_px(face, small) < 6.0, k
        assert face.crop_landmarks[:, 1].max() < 224 and face.crop_landmarks[17:27, 1].min() > 20, k


def test_frame_pairs():
    from au_lib.data.video import frame_pairs

    frames = np.array([0, 1, 2, 5, 6, 20])
    p = frame_pairs(frames, 3, seed=0)
    gaps = np.abs(frames[p[:, 0]] - frames[p[:, 1]])
    assert ((gaps >= 1) & (gaps <= 3)).all()
    assert len(p) == 2 * 5  # (0,1) (0,2) (1,2) (2,5) (5,6), both directions
    np.testing.assert_array_equal(p, frame_pairs(frames, 3, seed=0))
    assert not np.array_equal(p, frame_pairs(frames, 3, seed=1))
    assert len(frame_pairs(frames, 3, n_pairs=4)) == 4
    with pytest.raises(ValueError, match="min_gap"):
        frame_pairs(frames, 0)


def test_pexels_pairs_pipeline_and_cache(tmp_path, monkeypatch):
    """The whole video path on the first 10 frames (a temporary cache), then served from the cache."""
    from au_lib.data import sources, video

    src = _pexels_or_skip()
    (tmp_path / "pyfeat").mkdir()
    (tmp_path / "pyfeat" / video.VIDEO_NAME).symlink_to(src)
    monkeypatch.setenv("AU_CACHE", str(tmp_path))
    real = sources.read_video
    monkeypatch.setattr(sources, "read_video", lambda p, max_frames=None: real(p, 10))
    ds = video.open_video_pairs("pexels", image_size=48, max_gap=3, seed=0, progress=False)
    assert (tmp_path / "pexels" / "landmarks.npz").is_file() and (tmp_path / "pexels" / "48" / "crops.npz").is_file()
    s = ds[0]
    assert s["source"].shape == s["target"].shape == (3, 48, 48)
    assert 0 <= float(s["source"].min()) and float(s["source"].max()) <= 1
    assert 1 <= abs(s["source_frame"] - s["target_frame"]) <= 3
    assert len(ds) == 2 * (9 + 8 + 7)
    # second construction: no decoding at all
    monkeypatch.setattr(sources, "read_video", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    frames = video.open_video_frames("pexels", image_size=48, progress=False)
    assert len(frames) == 10 and frames[3]["frame"] == 3 and frames[3]["rgb"].shape == (3, 48, 48)
    with pytest.raises(KeyError, match="unknown video"):
        video.open_video_pairs("youtube")


def test_pexels_missing_asset_message(tmp_path, monkeypatch):
    from au_lib.data import video

    monkeypatch.setenv("AU_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="fetch_pyfeat_assets.py"):
        video.pexels_video_path()

"""Face detection, 68-point landmarks and similarity alignment to a canonical crop (dlib, offline).

Pipeline for one RGB image (H x W x 3, uint8):

1. **Detection**: dlib's HOG frontal-face detector (``dlib.get_frontal_face_detector``) on a copy
   shrunk to at most ``detect_max_side`` pixels, upsampled only if no face is found at the first
   pass; the detection with the highest score wins. For videos a *tracked*
   fallback reuses the previous frame's face box when the detector misses a frame (recorded as
   ``method="tracked"``, never silently).
2. **Landmarks**: dlib's 68-point shape predictor, ``shape_predictor_68_face_landmarks.dat`` shipped in
   the ``face-recognition-models`` package (its README: public domain / CC0; the model was trained on
   iBUG 300-W). No download at run time.
3. **Alignment**: a similarity transform (rotation, uniform scale, translation; Umeyama least squares,
   :class:`skimage.transform.SimilarityTransform`) maps the *rigid* landmarks (eye corners and the base of
   the nose, which AUs barely move) onto a canonical template, and the image is resampled bilinearly into a
   ``size`` x ``size`` crop. Expression-driven points (brows, lids, lips, jaw) are left out of the fit
   so that, for example, an opening mouth does not shift the crop.

The template is the mean 68-point dlib shape of OpenFace's ``align_dlib.py`` (Apache-2.0, Carnegie
Mellon University), min-max normalised and made left-right symmetric, then placed in the crop so that the face spans
``face_fraction`` of the width with room above the brows for AU1/AU2/AU4. Points are in pixels, x
along the width, y down; the crop's pixel centres are at integer coordinates.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Mean dlib 68-point shape (OpenFace align_dlib.TEMPLATE, Apache-2.0, CMU), x right, y down.
_OPENFACE_TEMPLATE = np.array([
    (0.0792396913815, 0.339223741112), (0.0829219487236, 0.456955367943),
    (0.0967927109165, 0.575648016728), (0.122141515615, 0.691921601066),
    (0.168687863544, 0.800341263616), (0.239789390707, 0.895732504778),
    (0.325662452515, 0.977068762493), (0.422318282013, 1.04329000149),
    (0.531777802068, 1.06080371126), (0.641296298053, 1.03981924107),
    (0.738105872266, 0.972268833998), (0.824444363295, 0.889624082279),
    (0.894792677532, 0.792494155836), (0.939395486253, 0.681546643421),
    (0.96111933829, 0.562238253072), (0.970579841181, 0.441758925744),
    (0.971193274221, 0.322118743967), (0.163846223133, 0.249151738053),
    (0.21780354657, 0.204255863861), (0.291299351124, 0.192367318323),
    (0.367460241458, 0.203582210627), (0.4392945113, 0.233135599851),
    (0.586445962425, 0.228141644834), (0.660152671635, 0.195923841854),
    (0.737466449096, 0.182360984545), (0.813236546239, 0.192828009114),
    (0.8707571886, 0.235293377042), (0.51534533827, 0.31863546193),
    (0.516221448289, 0.396200446263), (0.517118861835, 0.473797687758),
    (0.51816430343, 0.553157797772), (0.433701156035, 0.604054457668),
    (0.475501237769, 0.62076344024), (0.520712933176, 0.634268222208),
    (0.565874114041, 0.618796581487), (0.607054002672, 0.60157671656),
    (0.252418718401, 0.331052263829), (0.298663015648, 0.302646354002),
    (0.355749724218, 0.303020650651), (0.403718978315, 0.33867711083),
    (0.352507175597, 0.349987615384), (0.296791759886, 0.350478978225),
    (0.631326076346, 0.334136672344), (0.679073381078, 0.29645404267),
    (0.73597236153, 0.294721285802), (0.782865376271, 0.321305281656),
    (0.740312274764, 0.341849376713), (0.68499850091, 0.343734332172),
    (0.353167761422, 0.746189164237), (0.414587777921, 0.719053835073),
    (0.477677654595, 0.706835892494), (0.522732900812, 0.717092275768),
    (0.569832064287, 0.705414478982), (0.635195811927, 0.71565572516),
    (0.69951672331, 0.739419187253), (0.639447159575, 0.805236879972),
    (0.576410514055, 0.835436670169), (0.525398405766, 0.841706377792),
    (0.47641545769, 0.837505914975), (0.41379548902, 0.810045601727),
    (0.380084785646, 0.749979603086), (0.477955996282, 0.74513234612),
    (0.523389793327, 0.748924302636), (0.571057789237, 0.74332894691),
    (0.672409137852, 0.744177032192), (0.572539621444, 0.776609286626),
    (0.5240106503, 0.783370783245), (0.477561227414, 0.778476346951)], dtype=np.float64)

#: Left-right mirror permutation of the iBUG/dlib 68-point scheme (point i <-> FLIP_68[i]).
FLIP_68: tuple[int, ...] = (
    *range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65)


def _symmetric_minmax(points: np.ndarray) -> np.ndarray:
    """Min-max normalise, then average with the mirror image so the template is left-right symmetric
    (its eye line is exactly horizontal and its nose exactly on the vertical mid-line)."""
    p = (points - points.min(0)) / np.ptp(points, axis=0)
    mirrored = p[list(FLIP_68)] * np.array([-1.0, 1.0]) + np.array([1.0, 0.0])
    return (p + mirrored) / 2


_MINMAX = _symmetric_minmax(_OPENFACE_TEMPLATE)

#: 0-based dlib indices used for the similarity fit: the four eye corners (36, 39, 42, 45) and the
#: base of the nose (33), all rigid under facial actions. (Fitting the whole nose too lets individual
#: face proportions pull the eyes ~8 px off the template at 224 px on the Pexels video; these five
#: keep them within ~5 px while the nose base still fixes the vertical scale under yaw.)
RIGID_POINTS: tuple[int, ...] = (33, 36, 39, 42, 45)
LEFT_EYE = tuple(range(36, 42))   # subject's right eye, image left
RIGHT_EYE = tuple(range(42, 48))


class NoFaceError(RuntimeError):
    """No face was found in an image (the message names the image)."""


def landmark_model_path() -> Path:
    """Path of ``shape_predictor_68_face_landmarks.dat`` from the ``face-recognition-models`` package.

    Located with :func:`importlib.util.find_spec` (importing the package itself needs
    ``pkg_resources``, which recent setuptools no longer provides). ``$AU_DLIB_LANDMARKS`` overrides.
    """
    env = os.environ.get("AU_DLIB_LANDMARKS")
    if env:
        path = Path(env)
    else:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                "the dlib 68-point landmark model was not found: install face-recognition-models "
                "(pip install face-recognition-models) or set $AU_DLIB_LANDMARKS to the .dat file")
        path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise FileNotFoundError(f"dlib landmark model missing: {path}")
    return path


def template_points(size: int = 224, face_fraction: float = 0.65, top: float = 0.2) -> np.ndarray:
    """The 68 template landmarks in crop pixels, shape (68, 2) (x, y).

    The min-max box of the mean shape (jaw edge to jaw edge, brow top to chin) spans
    ``face_fraction * size`` pixels, horizontally centred, its top edge ``top * size`` from the top.
    """
    if size < 8:
        raise ValueError(f"crop size must be >= 8 pixels, got {size}")
    if not 0.1 <= face_fraction <= 1.0:
        raise ValueError(f"face_fraction must be in [0.1, 1], got {face_fraction}")
    left = (1.0 - face_fraction) / 2.0
    pts = np.empty_like(_MINMAX)
    pts[:, 0] = (left + face_fraction * _MINMAX[:, 0]) * size
    pts[:, 1] = (top + face_fraction * _MINMAX[:, 1]) * size
    return pts - 0.5  # pixel centres at integer coordinates


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """Centres of the two eyes (means of dlib points 36-41 and 42-47), shape (2, 2) (image-left first)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return np.stack([lm[list(LEFT_EYE)].mean(0), lm[list(RIGHT_EYE)].mean(0)])


@dataclass
class AlignedFace:
    """One aligned face.

    ``crop``: uint8 (size, size, 3); ``landmarks``: (68, 2) in source pixels; ``crop_landmarks``:
    (68, 2) in crop pixels; ``matrix``: 3x3 similarity mapping source (x, y, 1) to crop pixels;
    ``box``: detector box (left, top, right, bottom); ``score``: detector score (nan when tracked);
    ``method``: "detected" or "tracked".
    """

    crop: np.ndarray
    landmarks: np.ndarray
    crop_landmarks: np.ndarray
    matrix: np.ndarray
    box: tuple[int, int, int, int]
    score: float
    method: str = "detected"
    meta: dict = field(default_factory=dict)

    @property
    def roll_deg(self) -> float:
        """In-plane rotation of the face in the source image (degrees, from the eye line)."""
        (lx, ly), (rx, ry) = eye_centres(self.landmarks)
        return float(np.degrees(np.arctan2(ry - ly, rx - lx)))


def warp_to_crop(image: np.ndarray, matrix: np.ndarray, size: int, *, fill: float = 0.0,
                 resample: str = "bilinear") -> np.ndarray:
    """Resample ``image`` (H x W [x C], uint8 or float32) into a ``size`` x ``size`` crop.

    ``matrix`` (3x3) maps source pixel coordinates to crop pixel coordinates. Float images (depth,
    thermal) keep their values; pixels outside the source get ``fill``.
    """
    from PIL import Image

    inv = np.linalg.inv(np.asarray(matrix, dtype=np.float64))
    # PIL uses pixel-corner coordinates; ours have pixel centres at integers: shift by 0.5.
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    unshift = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    m = shift @ inv @ unshift
    coeffs = tuple(m[:2].ravel())
    method = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}[resample]
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        pil = Image.fromarray(arr)
        out = pil.transform((size, size), Image.Transform.AFFINE, coeffs, resample=method,
                            fillcolor=int(fill) if arr.ndim == 2 else (int(fill),) * arr.shape[2])
        return np.asarray(out)
    if arr.ndim == 2:
        pil = Image.fromarray(arr.astype(np.float32), mode="F")
        return np.asarray(pil.transform((size, size), Image.Transform.AFFINE, coeffs, resample=method,
                                        fillcolor=float(fill)), dtype=np.float32)
    return np.stack([warp_to_crop(arr[..., c], matrix, size, fill=fill, resample=resample)
                     for c in range(arr.shape[2])], axis=-1)


class FaceAligner:
    """dlib detector + 68-point predictor + similarity alignment to ``size`` x ``size``.

    The dlib models load lazily, once per process (so instances pickle cheaply into worker processes).

    Args:
        size: crop edge in pixels (224 by default).
        face_fraction, top: template placement (see :func:`template_points`).
        upsample: the most times the detector upsamples the image; it tries 0, 1, ... and stops at the
            first pass that finds a face (1 finds faces down to ~40 px, at 4x the cost).
        min_score: detections below this HOG score are ignored.
        detect_max_side: detection runs on a copy shrunk so its longer side is at most this many
            pixels (None: full size); boxes are scaled back, landmarks use the full-size image.
    """

    def __init__(self, size: int = 224, *, face_fraction: float = 0.65, top: float = 0.2,
                 upsample: int = 1, min_score: float = 0.0, detect_max_side: int | None = 640) -> None:
        self.size = int(size)
        self.face_fraction = float(face_fraction)
        self.top = float(top)
        self.upsample = int(upsample)
        self.min_score = float(min_score)
        self.detect_max_side = int(detect_max_side) if detect_max_side else None
        self.template = template_points(self.size, self.face_fraction, self.top)
        self._detector = None
        self._predictor = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_detector"] = state["_predictor"] = None
        return state

    def settings(self) -> dict:
        """What to record next to aligned data."""
        return {"aligner": "dlib-hog+68pt+similarity", "size": self.size, "face_fraction": self.face_fraction,
                "top": self.top, "upsample": self.upsample, "min_score": self.min_score,
                "detect_max_side": self.detect_max_side,
                "rigid_points": list(RIGID_POINTS), "template": "OpenFace mean dlib-68 shape (min-max)"}

    def _load(self) -> None:
        if self._predictor is None:
            import dlib

            self._detector = dlib.get_frontal_face_detector()
            self._predictor = dlib.shape_predictor(str(landmark_model_path()))

    def detect(self, image: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        """Face boxes ``(left, top, right, bottom)`` with scores, best first."""
        self._load()
        img = _check_image(image)
        scale = 1.0
        if self.detect_max_side and max(img.shape[:2]) > self.detect_max_side:
            from PIL import Image

            scale = max(img.shape[:2]) / self.detect_max_side
            w, h = round(img.shape[1] / scale), round(img.shape[0] / scale)
            img = np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BILINEAR))
        found: list = []
        for up in range(self.upsample + 1):
            rects, scores, _ = self._detector.run(img, up, -0.5)
            found = [((round(r.left() * scale), round(r.top() * scale), round(r.right() * scale),
                       round(r.bottom() * scale)), float(s)) for r, s in zip(rects, scores) if s >= self.min_score]
            if found:
                break
        return sorted(found, key=lambda t: -t[1])

    def landmarks(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """The 68 landmarks (68, 2) float64 in pixels inside ``box``."""
        import dlib

        self._load()
        shape = self._predictor(_check_image(image), dlib.rectangle(*[int(v) for v in box]))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def transform_for(self, landmarks: np.ndarray) -> np.ndarray:
        """3x3 similarity (Umeyama) mapping the rigid landmarks onto the template."""
        from skimage.transform import SimilarityTransform

        idx = list(RIGID_POINTS)
        tf = SimilarityTransform.from_estimate(np.asarray(landmarks)[idx], self.template[idx]) \
            if hasattr(SimilarityTransform, "from_estimate") else None
        if tf is None or not bool(tf):
            tf = SimilarityTransform()
            if not tf.estimate(np.asarray(landmarks)[idx], self.template[idx]):
                raise NoFaceError("degenerate landmarks: similarity transform could not be estimated")
        return np.asarray(tf.params, dtype=np.float64)

    def align(self, image: np.ndarray, *, name: str = "image", previous_box=None) -> AlignedFace:
        """Detect, find landmarks and align the best face of ``image`` (H x W x 3 uint8).

        ``previous_box``: a box to fall back on when the detector finds nothing (video tracking).
        Raises :class:`NoFaceError` naming ``name`` when no face is found and no fallback is given.
        """
        found = self.detect(image)
        if found:
            box, score = found[0]
            method = "detected"
        elif previous_box is not None:
            box, score, method = tuple(int(v) for v in previous_box), float("nan"), "tracked"
        else:
            raise NoFaceError(f"{name}: no face found (dlib HOG detector, upsample={self.upsample})")
        lm = self.landmarks(image, box)
        return self.align_with_landmarks(image, lm, box=box, score=score, method=method)

    def align_with_landmarks(self, image: np.ndarray, landmarks: np.ndarray, *, box=(0, 0, 0, 0),
                             score: float = float("nan"), method: str = "given") -> AlignedFace:
        """Align ``image`` using known 68-point ``landmarks`` (68, 2)."""
        lm = np.asarray(landmarks, dtype=np.float64)
        if lm.shape != (68, 2):
            raise ValueError(f"expected (68, 2) landmarks, got {lm.shape}")
        mat = self.transform_for(lm)
        crop = warp_to_crop(_check_image(image), mat, self.size)
        crop_lm = (np.c_[lm, np.ones(68)] @ mat.T)[:, :2]
        return AlignedFace(crop=crop, landmarks=lm, crop_landmarks=crop_lm, matrix=mat,
                           box=tuple(int(v) for v in box), score=score, method=method)


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr[..., :3])


#: 0-based dlib indices of the mouth corners (image-left first).
MOUTH_CORNERS: tuple[int, int] = (48, 54)


def eye_mouth_crop_matrix(landmarks: np.ndarray, size: int, *, crop_side: float, eye_to_centre: float) -> np.ndarray:
    """3x3 similarity mapping source pixels to a ``size`` x ``size`` crop by SynthAU's alignment rule.

    The rule of :func:`au_lib.data.synth.render.align_crop`, applied to 68-point landmarks (68, 2)
    in pixels (x right, y down): the eye centres (means of points 36-41 and 42-47, where SynthAU takes
    the iris centres) and the mouth corners (48, 54). The crop's x axis is the eye line (levelled),
    its side ``crop_side * max(|e2e|, 0.9 |e2m|)`` pixels of the source (``e2e`` eye to eye, ``e2m``
    eye midpoint to mouth midpoint), its centre ``eye_to_centre`` of the way from the eye midpoint
    to the mouth midpoint. Roll, translation and scale are removed; yaw and pitch stay visible.

    SynthAU measures these points on the subject's *rest* face; on a real frame they are measured
    on the frame itself, so a wide-open mouth lengthens ``e2m`` and shrinks the face in the crop.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"expected finite (68, 2) landmarks, got shape {lm.shape}")
    eyes = eye_centres(lm)
    e_l, e_r = (eyes[0], eyes[1]) if eyes[0, 0] <= eyes[1, 0] else (eyes[1], eyes[0])
    e2e = e_r - e_l
    eye_mid = 0.5 * (e_l + e_r)
    e2m = lm[list(MOUTH_CORNERS)].mean(0) - eye_mid
    norm = float(np.linalg.norm(e2e))
    if norm < 1e-6:
        raise NoFaceError("degenerate landmarks: the two eye centres coincide")
    u = e2e / norm
    v = np.array([-u[1], u[0]])  # perpendicular, pointing down the face (image y down)
    side = crop_side * max(norm, 0.9 * float(np.linalg.norm(e2m)))
    centre = eye_mid + eye_to_centre * e2m
    scale = size / side
    rot = scale * np.stack([u, v])
    offset = np.full(2, size / 2 - 0.5) - rot @ centre
    return np.array([[rot[0, 0], rot[0, 1], offset[0]], [rot[1, 0], rot[1, 1], offset[1]], [0.0, 0.0, 1.0]])

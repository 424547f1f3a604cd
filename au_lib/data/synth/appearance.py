"""Appearance changes of AUs: the furrows, wrinkles and bulges FACS coders rely on, scaled by intensity.

FACS describes most AUs by their *appearance changes* as much as by motion: horizontal forehead
wrinkles (AU1 in the centre, AU2 laterally), vertical glabellar furrows and a bulge between the brows
(AU4), crow's feet and a deepened infraorbital furrow (AU6), a bulging lower lid (AU7), wrinkles across
the root of the nose (AU9), a deepened nasolabial furrow (AU10, AU12), dimples beside the lip corners
(AU14), lines below the corners (AU15), a furrow and a wrinkled chin boss (AU17), a pressed, narrowed
lip line (AU23, AU24). AU25 and AU26 show teeth and the mouth interior (geometry, see :mod:`.facemodel`).

Each furrow is a polyline on the neutral face; its cross-section is a dark core with lighter flanks
(``exp(-d^2/2w^2) - 0.35 exp(-(|d|-2w)^2/2w^2)``). The furrows of each AU are drawn once into a
texture over the face's UV chart (the neutral mesh's x, y / 1.1, as the skin texture), so they stay on
the skin as it moves; a frame's pattern is ``sum_AU intensity_curve(I_AU) * furrows_AU``. The renderer
darkens the skin by ``1 - pattern`` (RGB) and dents the depth map by ``DENT`` model units times the
dark part (depth). Furrows are appearance, not motion: the ground-truth displacements ignore them.
"""

from __future__ import annotations

import numpy as np
import torch

from au_lib.data.synth.identity import smooth_noise

TEXTURE = 256  # texels per side of the UV chart
UV_SCALE = 1.1  # uv = neutral (x, y) / UV_SCALE, as :func:`.identity.vertex_uv`
DENT = 0.02  # model units of depth at the centre of a full-strength furrow
WIDTH = 0.016  # furrow half-width (model units; about 2 % of the inter-ocular distance)
FURROW_AUS = (1, 2, 4, 6, 7, 9, 10, 12, 14, 15, 17, 23, 24)  # the AUs :func:`furrow_lines` draws


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of points ``p`` (N, 2) to segment ``a-b``, and the position along it (0-1)."""
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0, 1)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1), t


def _polyline(p: np.ndarray, pts: np.ndarray, width: float, taper: bool = True) -> np.ndarray:
    """Furrow profile (N,) of the polyline ``pts`` (K, 2) at points ``p``: dark core (+) with light
    flanks (-), tapering to nothing at both ends."""
    best = np.full(len(p), np.inf)
    along = np.zeros(len(p))
    lengths = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    start = np.concatenate([[0.0], np.cumsum(lengths)])
    total = max(start[-1], 1e-12)
    for k in range(len(pts) - 1):
        d, t = _segment_distance(p, pts[k], pts[k + 1])
        closer = d < best
        best[closer] = d[closer]
        along[closer] = (start[k] + t[closer] * lengths[k]) / total
    prof = np.exp(-0.5 * (best / width) ** 2) - 0.35 * np.exp(-0.5 * ((best - 2 * width) / width) ** 2)
    if taper:
        prof *= np.sin(np.pi * np.clip(along, 0, 1)) ** 0.5
    return prof


def _arc(a: np.ndarray, b: np.ndarray, bulge: float, n: int = 9) -> np.ndarray:
    """Points of a circular-ish arc from ``a`` to ``b`` whose middle is ``bulge`` above the chord."""
    t = np.linspace(0, 1, n)[:, None]
    chord = a + t * (b - a)
    normal = np.array([-(b - a)[1], (b - a)[0]]) / max(np.linalg.norm(b - a), 1e-12)
    if normal[1] < 0:
        normal = -normal
    return chord + bulge * 4 * t * (1 - t) * normal


def furrow_lines(v: np.ndarray) -> dict[int, list[tuple[np.ndarray, float]]]:
    """Furrows per AU on the neutral face ``v`` (478, 3) in model units: AU -> [(polyline (K, 2), strength)].

    Strength is the darkening at the furrow's centre at intensity E.
    """
    xy = v[:, :2]
    out: dict[int, list[tuple[np.ndarray, float]]] = {}
    brow_y = xy[[70, 63, 105, 66, 107, 300, 293, 334, 296, 336], 1].mean()
    eye_r, eye_l = xy[468], xy[473]  # iris centres (x < 0 is the subject's right)
    iod = float(np.linalg.norm(eye_r - eye_l))
    sx = np.sign(eye_l[0] - eye_r[0])  # +1 if the left eye has the larger x
    # forehead: AU1 central, AU2 lateral wrinkles (three rows above the brows)
    rows = [brow_y + h * iod for h in (0.16, 0.26, 0.36)]
    out[1] = [(_arc(np.array([-0.26 * iod, y]), np.array([0.26 * iod, y]), 0.03 * iod), 0.40) for y in rows]
    out[2] = []
    for side in (-1, 1):
        for y in rows:
            a, b = np.array([side * 0.22 * iod, y + 0.01 * iod]), np.array([side * 0.62 * iod, y - 0.04 * iod])
            out[2].append((_arc(a, b, 0.02 * iod), 0.40))
    # AU4: vertical glabellar furrows, a horizontal line at the root of the nose
    out[4] = [(np.array([[s * 0.07 * iod, brow_y - 0.12 * iod], [s * 0.09 * iod, brow_y + 0.14 * iod]]), 0.50)
              for s in (-1, 1)]
    out[4].append((np.array([[-0.10 * iod, brow_y - 0.20 * iod], [0.10 * iod, brow_y - 0.20 * iod]]), 0.30))
    # AU6: crow's feet at the outer canthi, deepened infraorbital furrow
    out[6] = []
    for outer, eye in ((xy[33], eye_r), (xy[263], eye_l)):
        away = np.sign(outer[0] - eye[0])
        for ang in (-30, 0, 30):
            r = np.radians(ang)
            d = np.array([away * np.cos(r), np.sin(r)])
            start = outer + 0.06 * iod * d
            out[6].append((np.stack([start, start + 0.20 * iod * d]), 0.40))
        lo = eye + np.array([0.0, -0.22 * iod])
        out[6].append((_arc(lo + np.array([-0.22 * iod * away * -1, 0.04 * iod]),
                            lo + np.array([0.26 * iod * away, 0.02 * iod]), -0.04 * iod), 0.35))
    # AU7: bulging lower lid (a furrow just below it)
    out[7] = []
    for eye in (eye_r, eye_l):
        a, b = eye + np.array([-0.2 * iod, -0.13 * iod]), eye + np.array([0.2 * iod, -0.13 * iod])
        out[7].append((_arc(a, b, -0.03 * iod), 0.40))
    # AU9: wrinkles across the root of the nose
    root = xy[6]
    out[9] = [(_arc(root + np.array([-0.12 * iod, h * iod]), root + np.array([0.12 * iod, h * iod]), 0.02 * iod), 0.45)
              for h in (-0.08, 0.0, 0.08)]
    # AU10 / AU12: nasolabial furrow from the nose wing to beside the lip corner
    naso = []
    for ala, corner in ((xy[98], xy[61]), (xy[327], xy[291])):
        away = np.sign(corner[0])
        top = ala + np.array([away * 0.06 * iod, 0.02 * iod])
        bottom = corner + np.array([away * 0.10 * iod, -0.06 * iod])
        mid = 0.5 * (top + bottom) + np.array([away * 0.05 * iod, 0.0])
        naso.append(np.stack([top, mid, bottom]))
    out[10] = [(pl, 0.50) for pl in naso]
    out[12] = [(pl, 0.35) for pl in naso]
    # AU14: dimples beside the lip corners; AU15: lines below the corners
    out[14] = []
    out[15] = []
    for corner in (xy[61], xy[291]):
        away = np.sign(corner[0])
        c = corner + np.array([away * 0.06 * iod, 0.0])
        out[14].append((np.stack([c + np.array([0, 0.06 * iod]), c - np.array([0, 0.06 * iod])]), 0.55))
        out[15].append((np.stack([corner + np.array([away * 0.02 * iod, -0.04 * iod]),
                                  corner + np.array([away * 0.08 * iod, -0.24 * iod])]), 0.55))
    # AU17: mentolabial furrow (chin boss wrinkling is added as a texture in :func:`furrow_textures`)
    chin_top = xy[17] + np.array([0.0, -0.12 * iod])
    out[17] = [(_arc(chin_top - np.array([0.22 * iod, 0]), chin_top + np.array([0.22 * iod, 0]), -0.05 * iod), 0.45)]
    # AU23 / AU24: the lip line pressed and narrowed; AU24 also bulges above and below the lips
    lip_line = np.stack([xy[61] * [0.8, 1] + [0, 0], 0.5 * (xy[13] + xy[14]), xy[291] * [0.8, 1]])
    out[23] = [(lip_line, 0.60)]
    out[24] = [(lip_line, 0.55)]
    for k, dy in ((0, 0.16), (1, -0.16)):
        off = np.array([0.0, dy * iod])
        out[24].append((lip_line * [0.9, 1] + off, 0.25))
    del sx
    return out


def furrow_textures(model, au_columns: tuple[int, ...], size: int = TEXTURE) -> torch.Tensor:
    """(len(au_columns), size, size) furrow pattern of each AU at intensity E over the UV chart
    (``grid_sample`` layout, align_corners=False: texel (i, j) at uv = ((2j+1)/size - 1, (2i+1)/size - 1))."""
    v = model.neutral.double().cpu().numpy()[:478]
    lines = furrow_lines(v)
    c = (2 * np.arange(size) + 1) / size - 1
    gx, gy = np.meshgrid(c, c)
    p = np.stack([gx.ravel(), gy.ravel()], -1) * UV_SCALE  # model units
    tex = np.zeros((len(au_columns), size * size))
    for k, au in enumerate(au_columns):
        for pts, strength in lines.get(au, []):
            tex[k] += strength * _polyline(p, pts, WIDTH)
    if 17 in au_columns:  # chin boss: wrinkled "orange peel" skin over the mentalis
        chin = v[152, :2] * 0.6 + v[17, :2] * 0.4
        iod = float(np.linalg.norm(v[468, :2] - v[473, :2]))
        bump = np.exp(-0.5 * (((p - chin) / np.array([0.22, 0.12]) / iod) ** 2).sum(-1))
        rng = np.random.default_rng(17)
        peel = np.clip(smooth_noise(rng, size, 24, 2).ravel(), 0, None)
        tex[au_columns.index(17)] += 0.35 * bump * peel / max(peel.max(), 1e-9) * 2
    return torch.tensor(tex.reshape(len(au_columns), size, size), dtype=torch.float32, device=model.device)

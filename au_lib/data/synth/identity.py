"""Subject identities: face shape, colours, skin texture and thermal signature, drawn from a seed.

Each subject is a deterministic function of ``(seed, view, index)`` through ``numpy.random.SeedSequence``,
so adding subjects never changes the existing ones. Shape variation is smooth: every term is a
global scale or a Gaussian-weighted (in the neutral mesh) displacement, so the mesh never folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from au_lib.data.synth.facemodel import BROWS, CHIN, EYE_RINGS, IRIS, LIPS, NOSE_TIP, FaceModel

# skin reflectance ladder (linear-ish RGB), from very light to very dark
SKIN_LADDER = np.array([[0.96, 0.80, 0.70], [0.90, 0.70, 0.58], [0.80, 0.58, 0.45], [0.66, 0.45, 0.33],
                        [0.50, 0.33, 0.23], [0.36, 0.23, 0.16], [0.25, 0.16, 0.11]])
IRIS_COLOURS = np.array([[0.30, 0.18, 0.08], [0.42, 0.27, 0.12], [0.25, 0.40, 0.60], [0.35, 0.45, 0.30],
                         [0.45, 0.35, 0.18], [0.15, 0.10, 0.06]])
HAIR_COLOURS = np.array([[0.08, 0.06, 0.05], [0.20, 0.13, 0.08], [0.40, 0.28, 0.16], [0.55, 0.42, 0.25],
                         [0.30, 0.20, 0.15], [0.45, 0.45, 0.45]])
TEXTURE_RES = 64


@dataclass(frozen=True)
class Identity:
    """One synthetic subject (numpy, float64).

    Attributes:
        name: subject id, e.g. ``"B007"``.
        shape: (478, 3) additive mesh offset in model units.
        skin, lip, brow, iris: RGB reflectances in [0, 1].
        texture: (TEXTURE_RES, TEXTURE_RES) multiplicative skin texture around 1 (pores, blotches).
        temp_base: skin temperature of the forehead, degrees Celsius.
        temp_nose: cooling of the nose tip (degrees), temp_canthus: warming of the inner canthi,
        temp_cheek: cooling of the cheeks, thermal_texture: (TEXTURE_RES, TEXTURE_RES) degrees
        (superficial vessels).
        expressiveness: multiplies this subject's AU intensities when sequences are drawn (0.8-1.2).
    """

    name: str
    shape: np.ndarray
    skin: np.ndarray
    lip: np.ndarray
    brow: np.ndarray
    iris: np.ndarray
    texture: np.ndarray
    temp_base: float
    temp_nose: float
    temp_canthus: float
    temp_cheek: float
    thermal_texture: np.ndarray
    expressiveness: float


def smooth_noise(rng: np.random.Generator, size: int, cells: int, octaves: int = 3) -> np.ndarray:
    """Zero-mean, unit-std smooth noise (size x size) from bilinear-upsampled random grids (value noise)."""
    out = np.zeros((size, size))
    amp = 1.0
    for o in range(octaves):
        n = cells * 2 ** o + 1
        grid = rng.standard_normal((n, n))
        t = np.linspace(0, n - 1, size)
        i0 = np.clip(np.floor(t).astype(int), 0, n - 2)
        f = t - i0
        rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
        out += amp * (rows[:, i0] * (1 - f)[None] + rows[:, i0 + 1] * f[None])
        amp *= 0.5
    return (out - out.mean()) / (out.std() + 1e-12)


def _bump(points: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    d2 = ((points - centre) ** 2).sum(-1)
    return np.exp(-0.5 * d2 / sigma ** 2)


def make_identity(model: FaceModel, name: str, seed_seq: np.random.SeedSequence) -> Identity:
    """Draw one identity from ``seed_seq`` (deterministic)."""
    rng = np.random.default_rng(seed_seq)
    v = model.neutral.double().cpu().numpy()  # (478, 3)
    off = np.zeros_like(v)
    # global face width / length / depth
    off[:, 0] += v[:, 0] * rng.normal(0, 0.06)
    off[:, 1] += v[:, 1] * rng.normal(0, 0.05)
    off[:, 2] += v[:, 2] * rng.normal(0, 0.08)
    # nose: length (z of the tip region), width
    w_nose = _bump(v, v[NOSE_TIP], 0.18)
    off[:, 2] += w_nose * rng.normal(0, 0.06)
    off[:, 0] += w_nose * v[:, 0] * rng.normal(0, 0.12)
    off[:, 1] += w_nose * rng.normal(0, 0.03)
    # jaw width and chin length: vertices below the mouth
    below = np.clip((v[CHIN, 1] * 0.3 - v[:, 1]) / (abs(v[CHIN, 1]) * 0.7), 0, 1)  # 0 above, 1 at chin
    off[:, 0] += below * v[:, 0] * rng.normal(0, 0.08)
    off[:, 1] += below * rng.normal(0, 0.04)
    # eye spacing: shift each eye region sideways, symmetric
    spacing = rng.normal(0, 0.035)
    for ring, iris in zip(EYE_RINGS, IRIS):
        c = v[iris[0]]
        w = _bump(v, c, 0.16)
        off[:, 0] += w * np.sign(c[0]) * spacing
    # brow height
    brow_c = v[list(BROWS)].mean(0)
    off[:, 1] += _bump(v[:, :2], brow_c[None, :2] * np.array([0.0, 1.0]), 0.45) * rng.normal(0, 0.03)
    # a small asymmetry
    off[:, 1] += 0.01 * rng.normal() * v[:, 0]
    off[468:] = off[468:]  # iris vertices move with their eye region (already included by the bumps)

    tone = rng.uniform(0, len(SKIN_LADDER) - 1)
    i = min(int(tone), len(SKIN_LADDER) - 2)
    skin = SKIN_LADDER[i] * (1 - (tone - i)) + SKIN_LADDER[i + 1] * (tone - i)
    skin = np.clip(skin * rng.normal(1, 0.03, 3), 0, 1)
    lip = np.clip(skin * np.array([0.95, 0.62, 0.62]) * rng.uniform(0.85, 1.05) + np.array([0.06, 0, 0.02]), 0, 1)
    brow = np.clip(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.8, 1.2), 0, 1)
    brow = np.minimum(brow, skin * 0.7)
    iris = np.clip(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))] * rng.uniform(0.8, 1.2), 0, 1)
    texture = 1.0 + 0.06 * smooth_noise(rng, TEXTURE_RES, 4, 4) + 0.03 * rng.standard_normal((TEXTURE_RES, TEXTURE_RES))
    thermal_texture = 0.25 * smooth_noise(rng, TEXTURE_RES, 3, 3)
    return Identity(name=name, shape=off, skin=skin, lip=lip, brow=brow, iris=iris,
                    texture=np.clip(texture, 0.7, 1.3), temp_base=float(rng.normal(34.6, 0.4)),
                    temp_nose=float(rng.uniform(0.8, 2.6)), temp_canthus=float(rng.uniform(0.8, 1.6)),
                    temp_cheek=float(rng.uniform(0.3, 1.2)), thermal_texture=thermal_texture,
                    expressiveness=float(rng.uniform(0.8, 1.2)))


def vertex_albedo(model: FaceModel, ident: Identity) -> torch.Tensor:
    """Per-vertex RGB reflectance (V, 3) of the full face (skin, lips, brows, lid lines, eyes, mouth)."""
    topo = model.topology
    V = topo.n_vertices
    alb = np.tile(ident.skin, (V, 1))
    v = model.neutral.double().cpu().numpy()
    alb[list(LIPS)] = ident.lip
    for k in (0, 20, 40, 60):  # outer ring of the lips: half way to skin
        alb[list(LIPS[k:k + 20])] = ident.lip if k else 0.5 * (ident.lip + ident.skin)
    alb[list(BROWS)] = ident.brow
    for ring in EYE_RINGS:  # lash line
        alb[list(ring)] = ident.skin * 0.55
    # nostrils and a little redness of the cheeks
    alb[:478] *= (1 - 0.08 * _bump(v, v[NOSE_TIP] + np.array([0, -0.18, -0.05]), 0.06))[:, None]
    mat = topo.eye_material.cpu().numpy()
    eye = topo.part.cpu().numpy() == 1
    colours = np.stack([np.array([0.03, 0.03, 0.03]), ident.iris, ident.iris * 0.55, np.array([0.88, 0.86, 0.82])])
    alb[eye] = colours[mat[eye]]
    part = topo.part.cpu().numpy()
    alb[part == 2] = np.array([0.22, 0.06, 0.07])
    alb[part == 3] = np.array([0.92, 0.90, 0.80])
    alb[part == 4] = np.array([0.72, 0.34, 0.36])
    alb[part == 5] = ident.skin * 0.45
    cav = slice(topo.cavity_start, topo.cavity_start + 1)
    alb[cav] = np.array([0.08, 0.02, 0.02])
    return torch.tensor(alb, dtype=torch.float32, device=model.device)


def vertex_uv(model: FaceModel) -> torch.Tensor:
    """Texture coordinates (V, 2) in [-1, 1]: the neutral mesh's x, y (extra vertices: their anchor's)."""
    v = model.neutral[:, :2]
    uv = torch.zeros(model.topology.n_vertices, 2, device=model.device)
    uv[:478] = v / 1.1
    uv[478:] = 0.0
    return uv.clamp(-1, 1)

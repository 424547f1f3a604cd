"""Thermal signature: a physiologically plausible facial temperature map, in degrees Celsius.

Facial infrared thermography shows the warmest skin at the inner canthi and the periorbital region
(close to the ophthalmic and angular arteries), a warm forehead, cooler cheeks and the coolest skin at
the nose tip (an acral region whose blood flow is under autonomic control), warm lips and a warm mouth
interior (about 36 C) when the lips part. Muscle activity warms the skin above it slightly. SynthAU's
per-vertex model:

``T = base + canthus * bump(inner canthi) + 0.8 * bump(periorbital) + 0.4 * bump(forehead)
- nose * bump(nose tip) - cheek * bump(cheeks) + 0.5 * bump(lips) - 1.0 * r^2 (edge cooling)
+ 0.35 * sum_AU (FACS_AU / 5) * muscle_AU``

with identity-specific amplitudes (:class:`~.identity.Identity`), fixed temperatures for the eyes
(34.5 C), mouth cavity (36.5 C), tongue (36 C) and teeth (34 C), a background at the room temperature
of each video (22-25 C), and a view-dependent emissivity factor (skin seen at grazing angles looks
cooler). Stored thermal images are normalised as ``(T - THERMAL_MIN) / (THERMAL_MAX - THERMAL_MIN)``.
"""

from __future__ import annotations

import numpy as np
import torch

from au_lib.data.synth.facemodel import (FOREHEAD, INNER_CANTHI, IRIS, LIPS, NOSE_TIP, PART_BACK, PART_CAVITY, PART_EYE,
                                         PART_TEETH, PART_TONGUE, FaceModel)
from au_lib.data.synth.identity import Identity, _bump

THERMAL_MIN, THERMAL_MAX = 20.0, 40.0
CHEEKS = (50, 280)
PART_TEMPERATURE = {PART_EYE: 34.5, PART_CAVITY: 36.5, PART_TONGUE: 36.0, PART_TEETH: 34.0}
MUSCLE_WARMING = 0.35  # degrees at full (E) intensity


def vertex_temperature(model: FaceModel, ident: Identity) -> torch.Tensor:
    """Per-vertex resting temperature (V,) in degrees Celsius for identity ``ident``."""
    v = model.neutral.double().cpu().numpy()
    t = np.full(v.shape[0], ident.temp_base)
    for k in INNER_CANTHI:
        t += ident.temp_canthus * _bump(v, v[k], 0.07)
    for iris in IRIS:
        t += 0.8 * _bump(v, v[iris[0]], 0.2)
    t += 0.4 * _bump(v, v[FOREHEAD], 0.35)
    t -= ident.temp_nose * _bump(v, v[NOSE_TIP], 0.2)
    for k in CHEEKS:
        t -= ident.temp_cheek * _bump(v, v[k], 0.22)
    t += 0.5 * _bump(v, v[list(LIPS)].mean(0), 0.15)
    t -= 1.0 * (v[:, 0] ** 2 / 0.8 + v[:, 1] ** 2 / 1.2)  # cooler towards the face edge
    part = model.topology.part.cpu().numpy()
    full = np.zeros(model.topology.n_vertices)
    full[:478] = t
    full[part == PART_BACK] = ident.temp_base - 1.5
    for p, temp in PART_TEMPERATURE.items():
        full[part == p] = temp + (ident.temp_base - 34.6) * 0.5
    return torch.tensor(full, dtype=torch.float32, device=model.device)


def muscle_warming_basis(model: FaceModel) -> torch.Tensor:
    """(20, V) warming per unit detector-scale intensity of each model AU over its muscles' vertices."""
    basis = np.zeros((len(model.au_columns), model.topology.n_vertices))
    col = {au: i for i, au in enumerate(model.au_columns)}
    for _name, (au, verts) in model.assets.muscles.items():
        if au in col:
            basis[col[au], verts] = 1.0
    # smooth the edges a little: average each vertex with its triangle neighbours once
    tri = model.assets.triangles
    sm = basis[:, :478].copy()
    acc = np.zeros_like(sm)
    cnt = np.zeros(478)
    for k in range(3):
        for j in range(3):
            np.add.at(acc.T, tri[:, k], sm[:, tri[:, j]].T)
            np.add.at(cnt, tri[:, k], 1)
    basis[:, :478] = acc / np.maximum(cnt, 1)
    return torch.tensor(MUSCLE_WARMING * basis, dtype=torch.float32, device=model.device)


def normalise_temperature(t: torch.Tensor) -> torch.Tensor:
    """Degrees Celsius -> the stored [0, 1] thermal scale."""
    return ((t - THERMAL_MIN) / (THERMAL_MAX - THERMAL_MIN)).clamp(0, 1)


def denormalise_temperature(x: torch.Tensor) -> torch.Tensor:
    """Stored [0, 1] thermal values -> degrees Celsius."""
    return x * (THERMAL_MAX - THERMAL_MIN) + THERMAL_MIN

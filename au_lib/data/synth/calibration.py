"""How big each AU is: localised motion, a gain per AU in face units, the intensity curve, label targets.

py-feat's AU-to-mesh model (a PLS fit) spreads some of every AU's motion over the whole face: its
largest displacements for AU1, AU10 and AU23 are on the face outline, for AU7 on the chin. SynthAU v3
keeps the model's direction of motion *inside each AU's own region* (the muscles py-feat maps to
that AU, grown by a Gaussian fall-off, see :func:`region_weights`) and rescales it so that the
largest vertex displacement at intensity E is :data:`TARGET_E_IOD` times the inter-ocular distance
(IOD, the distance between the iris centres; a face-size unit that aligned crops normalise).

**The targets are our estimates, not measurements.** No sourced per-AU table of displacements on
real faces was available to this project. The values are of the size one sees on FACS training
material at apex (brows raise by about a sixth of the IOD, a smile moves the lip corners by about a
fifth, the jaw drops by about a third), and the ordering (AU26 > AU12 > brows > lids) follows what
FACS describes. They are one table, in one place, so that anyone holding measurements can replace
them; the data chapter shows the resulting motion per AU at A, C and E in pixels.

**Intensity curve.** FACS levels are ordinal (A trace, B slight, C marked, D severe, E maximum) and
a trace is defined as *visible*, so displacement is not proportional to the level number: SynthAU
uses ``curve(I) = 1 - (1 - I / 5) ** CURVE_POWER`` of the E displacement (A = 0.36, B = 0.64,
C = 0.84, D = 0.96, E = 1).

**Occurrence targets.** :data:`BP4D_RATES` are BP4D's per-AU occurrence rates, derived from the class
weights that ME-GraphAU and JAA-Net ship for BP4D fold 1 (``w_i ∝ 1 / r_i``, so ``r_i ∝ 1 / w_i``;
../shared/research/peers.md section 2.8), anchored at AU12 = 0.56 (the absolute level is the one
assumption). The generator's event and hold frequencies are tuned to these (see
:mod:`.sequences`).
"""

from __future__ import annotations

import numpy as np
import torch

from au_lib.facs import BP4D_AUS

# largest vertex displacement at intensity E, as a fraction of the inter-ocular distance (estimates)
TARGET_E_IOD: dict[int, float] = {
    1: 0.16, 2: 0.16, 4: 0.14, 5: 0.09, 6: 0.15, 7: 0.11, 9: 0.13, 10: 0.13, 11: 0.07, 12: 0.22,
    14: 0.15, 15: 0.18, 17: 0.15, 20: 0.14, 23: 0.13, 24: 0.13, 25: 0.16, 26: 0.32, 28: 0.10, 43: 0.14,
}
CURVE_POWER = 2.0
REGION_SIGMA = 0.05  # model units (about 0.06 IOD): fall-off of an AU's motion outside its muscles

# ME-GraphAU data/BP4D/list/BP4D_weight_fold1.txt, order AU 1,2,4,6,7,10,12,14,15,17,23,24
BP4D_WEIGHTS_FOLD1 = (1.342985, 1.689665, 1.248091, 0.561356, 0.433044, 0.435894, 0.457287, 0.541004,
                      1.408054, 0.722762, 1.493145, 1.666711)
BP4D_AU12_RATE = 0.56  # anchor of the absolute level (assumption)
BP4D_RATES: dict[int, float] = {
    au: round(BP4D_AU12_RATE * BP4D_WEIGHTS_FOLD1[BP4D_AUS.index(12)] / w, 3)
    for au, w in zip(BP4D_AUS, BP4D_WEIGHTS_FOLD1)}


def intensity_curve(facs: torch.Tensor) -> torch.Tensor:
    """Fraction of the E displacement shown at FACS intensity ``facs`` (0-5, continuous; any shape)."""
    x = (facs.clamp(0, 5) / 5.0)
    return 1.0 - (1.0 - x) ** CURVE_POWER


def region_vertices(model) -> dict[int, np.ndarray]:
    """Mesh vertices (indices < 478) of each model AU's region: py-feat's muscle map, plus regions for
    the AUs it does not map (23, 24, 25, 28: the lips; 26: the jaw below the mouth; 43: the lids)."""
    from au_lib.data.synth.facemodel import EYE_RINGS, LIPS, N_MESH

    v = model.assets.neutral
    regions: dict[int, set[int]] = {}
    for _name, (au, verts) in model.assets.muscles.items():
        regions.setdefault(int(au), set()).update(int(i) for i in verts if int(i) < N_MESH)
    lips = set(LIPS)
    oris = regions.get(24, set())
    regions[23] = lips | oris
    regions[24] = lips | oris
    regions[25] = lips | regions.get(16, set())
    regions[28] = set(lips)
    corners_y = v[[61, 291], 1].mean()
    regions[26] = set(np.nonzero(v[:468, 1] < corners_y)[0].tolist())
    regions[43] = set(i for ring in EYE_RINGS for i in ring) | regions.get(7, set())
    return {au: np.array(sorted(regions[au])) for au in model.au_columns}


def region_weights(model, sigma: float = REGION_SIGMA) -> np.ndarray:
    """(20, 478) weight of each model AU's motion at each vertex: 1 in its region, Gaussian fall-off
    (``sigma`` model units) with the 3-D distance to the nearest region vertex."""
    from au_lib.data.synth.facemodel import UNIT

    v = (model.assets.neutral - model.centre) / UNIT
    regions = region_vertices(model)
    out = np.zeros((len(model.au_columns), v.shape[0]))
    for k, au in enumerate(model.au_columns):
        d = np.sqrt(((v[:, None, :] - v[None, regions[au], :]) ** 2).sum(-1)).min(1)
        out[k] = np.exp(-0.5 * (d / sigma) ** 2)
    return out


def inter_ocular(vertices: torch.Tensor) -> torch.Tensor:
    """Distance between the iris centres (vertices 468 and 473) of meshes (..., V, 3) -> (...)."""
    return (vertices[..., 468, :] - vertices[..., 473, :]).norm(dim=-1)


def visibility(aus: tuple[int, ...], subjects: tuple[str, ...] = ("B001", "B002", "B003", "B004"),
               levels: tuple[int, ...] = (1, 3, 5), image_size: int = 64):
    """How visible each AU is at each FACS level, beside the nuisance variation, averaged over ``subjects``.

    Returns a pandas DataFrame with one row per AU (``AUxx``) and per nuisance (``identity``: another
    subject at rest; ``yaw 5°``: the same subject turned by 5 degrees), and columns
    ``motion_<L>_px`` (largest vertex displacement in pixels at level L, 1 = A ... 5 = E) and
    ``region_<L>`` (mean absolute RGB change, in 1/255, over the AU's region: the pixels its apex
    changes by more than 4/255), plus ``image_<L>`` (mean absolute change over the whole image, 1/255).
    """
    import numpy as np
    import pandas as pd

    from au_lib.data.synth.generate import project_vertices, render_face

    def img(s, au=None, pose=(0, 0, 0)):
        return render_face(s, au=au, pose=pose, image_size=image_size, modalities=("rgb",))["rgb"]

    rest = {s: img(s) for s in subjects}
    marks = {s: project_vertices(s, image_size=image_size)[:478] for s in subjects}
    rows = {}
    for au in aus:
        row = {}
        regions = {s: (img(s, {au: 5}) - rest[s]).abs().amax(0) > 4 / 255 for s in subjects}
        for lvl in levels:
            shown = {s: img(s, {au: lvl}) for s in subjects}
            row[f"motion_{lvl}_px"] = np.mean([float((project_vertices(s, au={au: lvl}, image_size=image_size)[:478]
                                                      - marks[s]).norm(dim=-1).max()) for s in subjects])
            row[f"region_{lvl}"] = 255 * np.mean([float((shown[s] - rest[s]).abs().amax(0)[regions[s]].mean())
                                                  for s in subjects])
            row[f"image_{lvl}"] = 255 * np.mean([float((shown[s] - rest[s]).abs().mean()) for s in subjects])
        rows[f"AU{au}"] = row
    other = [float((rest[a] - rest[b]).abs().mean()) * 255 for a, b in zip(subjects, subjects[1:] + subjects[:1])]
    turned = [float((img(s, pose=(5, 0, 0)) - rest[s]).abs().mean()) * 255 for s in subjects]
    for name, vals in (("identity", other), ("yaw 5°", turned)):
        rows[name] = {f"image_{lvl}": float(np.mean(vals)) for lvl in levels}
    return pd.DataFrame.from_dict(rows, orient="index")

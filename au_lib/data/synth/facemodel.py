"""The face model: py-feat's linear AU->mesh model, plus eyeballs and a mouth interior.

Units. py-feat's mesh is about 175 x 200 units (y up, z towards the viewer). SynthAU centres it on
the neutral face and divides by :data:`UNIT` = 100, so a face is about 1.75 wide and 2.0 high.

AU intensity scales. The py-feat model takes AU intensities on its detector's 0-1 scale
(:func:`facs_to_detector` maps FACS 0-5 onto it linearly). SynthAU v3 works in FACS intensity, 0
(absent) and A-E = 1-5, and moves each AU by ``intensity_curve(I)`` times its *calibrated* motion at
E: py-feat's direction of motion kept inside the AU's region and scaled to a stated size in
inter-ocular distances (see :mod:`.calibration`).

Holes. The MediaPipe mesh is a mask with holes at the eyes and the mouth. :class:`FaceModel` adds

- an eyeball behind each eye opening: a dome of concentric rings around the rest position of the
  iris centre (vertex 468 / 473), with the iris radius taken from vertices 469-472 / 474-477, so
  pupil, iris and sclera show through the lids and vanish when the lids close (AU43);
- a backing shell behind the mask (the rest of the head), so openings never show the background;
- a mouth interior: a dark cavity bowl hanging from the inner-lip contour, upper teeth fixed to the skull, lower teeth and a tongue
  that move with the jaw (the displacement of the chin, vertex 152), so lips parting (AU25) and the
  jaw dropping (AU26) reveal teeth and cavity.

py-feat's mean face rests with the lips slightly parted; SynthAU closes them at rest with a smooth
offset that fades out as AU25/AU26 rise (see :meth:`FaceModel._lip_closure`), so "lips part" means
what FACS says.

All extra vertices are functions of the per-frame mesh, so every rendered pixel has an exact
surface correspondence (used for the ground-truth displacements).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from au_lib.data.synth.assets import FaceAssets, load_face_assets

UNIT = 100.0
N_MESH = 478
SEG = 24  # angular segments of the eye and mouth discs

EYE_RINGS = ((33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
             (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398))
IRIS = ((468, 469, 470, 471, 472), (473, 474, 475, 476, 477))
INNER_CANTHI = (133, 362)
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
# the inner lip contour as a counter-clockwise loop (lower lip left to right, upper lip right to left)
INNER_LIP_LOOP = LOWER_INNER_LIP + tuple(reversed(UPPER_INNER_LIP[1:-1]))
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
        78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
        76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408,
        62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407)
BROWS = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
NOSE_TIP, CHIN, FOREHEAD = 1, 152, 151

# eyeball rings: radius in iris radii, and the material of the ring (0 pupil, 1 iris, 2 limbus, 3 sclera)
EYE_RING_RADII = (0.0, 0.38, 0.48, 0.92, 1.08, 2.2, 3.8)
EYE_RING_MATERIAL = (0, 0, 1, 1, 2, 3, 3)

PART_SKIN, PART_EYE, PART_CAVITY, PART_TEETH, PART_TONGUE, PART_BACK = 0, 1, 2, 3, 4, 5


def facs_to_detector(intensity: torch.Tensor | np.ndarray | float):
    """Map FACS intensity (0 = absent, 1-5 = A-E, continuous allowed) to py-feat's 0-1 detector scale.

    Linear: ``detector = clip(facs, 0, 5) / 5`` (A -> 0.2, C -> 0.6, E -> 1.0).
    """
    if isinstance(intensity, torch.Tensor):
        return intensity.clamp(0, 5) / 5.0
    return np.clip(np.asarray(intensity, dtype=np.float64), 0, 5) / 5.0


def detector_to_facs(score):
    """Inverse of :func:`facs_to_detector` (detector 0-1 -> FACS 0-5)."""
    if isinstance(score, torch.Tensor):
        return score.clamp(0, 1) * 5.0
    return np.clip(np.asarray(score, dtype=np.float64), 0, 1) * 5.0


def weighted_sum(weights: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``weights @ basis`` for (B, K) weights and a (K, ...) basis, as an explicit sum over K (same
    bytes whatever the thread count)."""
    out = weights[:, 0].reshape(-1, *([1] * (basis.ndim - 1))) * basis[0]
    for k in range(1, basis.shape[0]):
        out = out + weights[:, k].reshape(-1, *([1] * (basis.ndim - 1))) * basis[k]
    return out


def _disc_faces(start: int, n_rings: int, seg: int) -> list[tuple[int, int, int]]:
    """Triangles of a disc: vertex ``start`` is the centre, then ``n_rings`` rings of ``seg`` vertices."""
    faces = []
    for s in range(seg):
        faces.append((start, start + 1 + s, start + 1 + (s + 1) % seg))
    for r in range(n_rings - 1):
        a0 = start + 1 + r * seg
        b0 = a0 + seg
        for s in range(seg):
            a, a2 = a0 + s, a0 + (s + 1) % seg
            b, b2 = b0 + s, b0 + (s + 1) % seg
            faces += [(a, b, b2), (a, b2, a2)]
    return faces


def _strip_faces(start: int, n: int) -> list[tuple[int, int, int]]:
    """Triangles of a strip: row 0 = ``start..start+n-1``, row 1 = the next ``n`` vertices."""
    faces = []
    for i in range(n - 1):
        a, b, c, d = start + i, start + i + 1, start + n + i, start + n + i + 1
        faces += [(a, c, d), (a, d, b)]
    return faces


@dataclass(frozen=True)
class Topology:
    """Vertex layout of the full face: mesh, eyes, mouth interior (index ranges and materials)."""

    faces: torch.Tensor  # (F, 3) int64
    part: torch.Tensor  # (V,) int64 part id per vertex (PART_*)
    eye_material: torch.Tensor  # (V,) int64 material within the eyeball (-1 elsewhere)
    n_vertices: int
    eye_start: tuple[int, int]
    cavity_start: int
    upper_teeth_start: int
    lower_teeth_start: int
    tongue_start: int
    back_start: int


class FaceModel:
    """py-feat's AU->mesh model in torch, with the holes filled (see the module docstring).

    Args:
        assets: loaded :class:`FaceAssets` (default: :func:`load_face_assets`).
        device: torch device of the model's tensors.
    """

    TEETH_IDX = (2, 3, 4, 5, 6, 7, 8)  # middle 7 of the 11 inner-lip vertices

    def __init__(self, assets: FaceAssets | None = None, device: torch.device | str = "cpu"):
        self.assets = assets or load_face_assets()
        self.device = torch.device(device)
        a = self.assets
        centre = a.neutral[:468].mean(0)
        f32 = dict(dtype=torch.float32, device=self.device)
        self.centre = centre
        self.neutral = torch.tensor((a.neutral - centre) / UNIT, **f32)  # (478, 3)
        self.au_basis = torch.tensor(a.au_basis / UNIT, **f32)  # (20, 478, 3) py-feat's, per detector unit
        self.au_columns = a.au_columns
        self.au_motion, self.au_gain = self._calibrated_motion()  # (20, 478, 3) motion at E; (20,) gains
        self.closure = torch.tensor(self._lip_closure(), **f32)  # (478, 3)
        self._open_cols = [a.au_columns.index(25), a.au_columns.index(26)]
        self.topology = self._topology()

    @cached_property
    def warming(self) -> torch.Tensor:
        """(20, V) skin warming per unit of each AU (:func:`.thermal.muscle_warming_basis`), built once."""
        from au_lib.data.synth.thermal import muscle_warming_basis

        return muscle_warming_basis(self)

    @cached_property
    def furrowed(self) -> list[int]:
        """Columns of :attr:`au_columns` whose AUs draw furrows (:data:`.appearance.FURROW_AUS`)."""
        from au_lib.data.synth.appearance import FURROW_AUS

        return [k for k, a in enumerate(self.au_columns) if a in FURROW_AUS]

    @cached_property
    def furrows(self) -> torch.Tensor:
        """(K, R, R) furrow pattern at E of the AUs in :attr:`furrowed`, over the UV chart, built once."""
        from au_lib.data.synth.appearance import furrow_textures

        return furrow_textures(self, tuple(self.au_columns[k] for k in self.furrowed))

    def _calibrated_motion(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each AU's motion at intensity E: py-feat's basis inside the AU's region
        (:func:`~.calibration.region_weights`), scaled so the largest vertex moves
        ``TARGET_E_IOD[au]`` inter-ocular distances (see :mod:`.calibration`)."""
        from au_lib.data.synth.calibration import TARGET_E_IOD, inter_ocular, region_weights

        w = torch.tensor(region_weights(self), dtype=self.au_basis.dtype, device=self.device)  # (20, 478)
        local = self.au_basis * w[..., None]
        iod = inter_ocular(self.neutral)
        peak = local.norm(dim=-1).amax(-1)  # (20,)
        target = torch.tensor([TARGET_E_IOD[a] for a in self.au_columns], dtype=peak.dtype, device=self.device)
        gain = target * iod / peak
        return local * gain[:, None, None], gain

    def _lip_closure(self, sigma: float = 0.05) -> np.ndarray:
        """Offset that closes the lips of the neutral mesh (py-feat's mean face rests with them parted).

        Each vertex above (below) the mouth moves down (up) by half the local lip gap, weighted by a
        Gaussian of its distance to the upper (lower) inner lip line. :meth:`mesh` applies it scaled by
        ``1 - min(1, AU25 + AU26)`` (detector scale), so lips part exactly as AU25/AU26 rise.
        """
        v = (self.assets.neutral - self.centre) / UNIT
        up = v[list(UPPER_INNER_LIP[1:-1])]
        lo = v[list(LOWER_INNER_LIP[1:-1])]
        gap = up[:, 1] - lo[:, 1]  # (9,) partners share the x order
        mid = 0.5 * (up[:, 1].mean() + lo[:, 1].mean())
        off = np.zeros_like(v)
        for ring, sign in ((up, -1.0), (lo, 1.0)):
            d2 = ((v[:, None, :2] - ring[None, :, :2]) ** 2).sum(-1)  # (478, 9)
            near = d2.argmin(1)
            w = np.exp(-0.5 * d2.min(1) / sigma ** 2)
            side = (v[:, 1] > mid) if sign < 0 else (v[:, 1] <= mid)
            off[:, 1] += side * sign * 0.5 * np.clip(gap[near], 0, None) * w
        off[[UPPER_INNER_LIP[0], UPPER_INNER_LIP[-1]]] = 0.0  # mouth corners stay
        return off

    # ----------------------------------------------------------------------------------- topology
    def _topology(self) -> Topology:
        # drop the triangles that close the eye and mouth openings (all three vertices on one ring)
        rings = [set(r) for r in EYE_RINGS] + [set(UPPER_INNER_LIP + LOWER_INNER_LIP)]
        faces = [tuple(t) for t in self.assets.triangles.tolist() if not any(set(t) <= r for r in rings)]
        self.n_mesh_faces = len(faces)
        n = N_MESH
        nr = len(EYE_RING_RADII) - 1
        eye_start = []
        eye_mat = [-1] * N_MESH
        for _ in range(2):
            eye_start.append(n)
            faces += _disc_faces(n, nr, SEG)
            eye_mat += [EYE_RING_MATERIAL[0]] + [m for m in EYE_RING_MATERIAL[1:] for _ in range(SEG)]
            n += 1 + nr * SEG
        cavity = n
        nl = len(INNER_LIP_LOOP)
        faces += _disc_faces(n, 2, nl)
        n += 1 + 2 * nl
        k = len(self.TEETH_IDX)
        upper = n
        faces += _strip_faces(n, k)
        n += 2 * k
        lower = n
        faces += _strip_faces(n, k)
        n += 2 * k
        tongue = n
        faces += _disc_faces(n, 2, SEG)
        n += 1 + 2 * SEG
        back = n
        faces += _disc_faces(n, 2, SEG)
        n += 1 + 2 * SEG
        eye_mat += [-1] * (n - len(eye_mat))
        part = np.zeros(n, dtype=np.int64)
        part[eye_start[0]:cavity] = PART_EYE
        part[cavity:upper] = PART_CAVITY
        part[upper:tongue] = PART_TEETH
        part[tongue:back] = PART_TONGUE
        part[back:] = PART_BACK
        dev = self.device
        return Topology(torch.tensor(faces, dtype=torch.int64, device=dev), torch.tensor(part, device=dev),
                        torch.tensor(eye_mat, dtype=torch.int64, device=dev), n, tuple(eye_start), cavity,
                        upper, lower, tongue, back)

    # ------------------------------------------------------------------------------------ geometry
    def mesh(self, au_facs: torch.Tensor, identity: torch.Tensor | None = None) -> torch.Tensor:
        """The 478-vertex mesh for FACS intensities ``au_facs`` (B, 20), in model units (B, 478, 3).

        Each AU moves by ``intensity_curve(I)`` times its calibrated motion at E (:attr:`au_motion`).

        ``identity`` (478, 3) or (B, 478, 3) is an additive shape offset (see :mod:`.identity`).
        """
        if au_facs.ndim != 2 or au_facs.shape[1] != len(self.au_columns):
            raise ValueError(f"au_facs must be (B, {len(self.au_columns)}) FACS intensities in the order "
                             f"{self.au_columns}, got {tuple(au_facs.shape)}")
        from au_lib.data.synth.calibration import intensity_curve

        amount = intensity_curve(au_facs.to(self.au_motion))  # (B, 20) fraction of the E motion
        v = self.neutral + weighted_sum(amount, self.au_motion)
        closed = 1.0 - (amount[:, self._open_cols[0]] + amount[:, self._open_cols[1]]).clamp(max=1.0)
        v = v + closed[:, None, None] * self.closure
        if identity is not None:
            v = v + identity
        return v

    def full_vertices(self, mesh: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        """Add eyeballs and the mouth interior to ``mesh`` (B, 478, 3) -> (B, V, 3).

        ``rest`` (B, 478, 3) or (478, 3) is the same identity at zero AUs: eyeballs and upper teeth are
        fixed to it (the skull); lower teeth and tongue follow the chin.
        """
        B = mesh.shape[0]
        rest = rest.expand(B, -1, -1) if rest.ndim == 2 else rest
        parts = [mesh]
        ang = torch.arange(SEG, dtype=mesh.dtype, device=mesh.device) * (2 * math.pi / SEG)
        cos, sin = torch.cos(ang), torch.sin(ang)
        # eyeballs: domes around the rest iris centres, behind the lids
        for iris in IRIS:
            c = rest[:, iris[0]]  # (B, 3)
            r = (rest[:, list(iris[1:]), :2] - c[:, None, :2]).norm(dim=-1).mean(-1)  # (B,)
            rho = torch.tensor(EYE_RING_RADII, dtype=mesh.dtype, device=mesh.device)  # (R,)
            rmax = rho[-1]
            rr = r[:, None] * rho[None, 1:]  # (B, R-1)
            dx = rr[:, :, None] * cos  # (B, R-1, SEG)
            dy = rr[:, :, None] * sin
            dz = -(0.012 + 0.16 * (rho[None, 1:, None] / rmax) ** 2).expand_as(dx)
            ring = torch.stack([dx, dy, dz], -1).reshape(B, -1, 3) + c[:, None]
            centre = (c + torch.tensor([0.0, 0.0, -0.012], dtype=mesh.dtype, device=mesh.device))[:, None]
            parts += [centre, ring]
        up = rest[:, list(UPPER_INNER_LIP)]
        lo = rest[:, list(LOWER_INNER_LIP)]
        width = (up[:, -1, 0] - up[:, 0, 0]).abs()[:, None, None]  # (B,1,1)
        jaw = (mesh[:, CHIN] - rest[:, CHIN])[:, None]  # (B,1,3)
        mid = torch.cat([up, lo], 1).mean(1, keepdim=True)  # (B,1,3)
        one = torch.ones_like(width)
        zero = torch.zeros_like(width)

        def vec(x, y, z):
            return torch.cat([x * one, y * one, z * one], -1) * width

        # cavity: a bowl hanging from the current inner-lip contour, behind the teeth
        loop = mesh[:, list(INNER_LIP_LOOP)]  # (B, 20, 3)
        lc = loop.mean(1, keepdim=True)
        back = torch.cat([zero, zero, -width], -1)  # (B, 1, 3): 1 mouth width backwards
        parts += [lc + 0.34 * back + vec(0.0, -0.05, 0.0),
                  lc + 0.55 * (loop - lc) + 0.26 * back, lc + 1.04 * (loop - lc) + 0.15 * back]
        # teeth: middle of the inner-lip rings, pulled to the centre, behind the lips
        ti = list(self.TEETH_IDX)
        ut = mid + 0.85 * (up[:, ti] - mid)
        lt = mid + 0.85 * (lo[:, ti] - mid)
        parts += [ut + vec(0.0, 0.10, -0.10), ut + vec(0.0, -0.13, -0.09)]
        parts += [lt + vec(0.0, 0.11, -0.11) + jaw, lt + vec(0.0, -0.10, -0.12) + jaw]
        # tongue: a flat ellipse on the floor of the mouth
        tc = lo.mean(1, keepdim=True) + vec(0.0, 0.0, -0.22) + jaw
        rings = []
        for scale in (0.6, 1.0):
            x = 0.32 * scale * cos
            y = 0.13 * scale * sin
            z = -0.04 * scale ** 2 * torch.ones_like(x)
            rings.append(torch.stack([x, y, z], -1)[None] * width + tc)
        parts += [tc] + rings
        # a backing shell behind the mask (the rest of the head): whatever the openings reveal at large
        # head turns is head, not background
        head = rest[:, :468].mean(1, keepdim=True)
        for k, (scale, dz) in enumerate(((0.0, -0.5), (0.5, -0.45), (1.0, -0.3))):
            if k == 0:
                parts.append(head + torch.tensor([0.0, 0.0, dz], dtype=mesh.dtype, device=mesh.device))
                continue
            ring = torch.stack([0.72 * scale * cos, 0.92 * scale * sin, torch.full_like(cos, dz)], -1)[None]
            parts.append(ring.expand(B, -1, -1) + head)
        out = torch.cat(parts, 1)
        assert out.shape[1] == self.topology.n_vertices, (out.shape, self.topology.n_vertices)
        return out

    def vertex_normals(self, verts: torch.Tensor) -> torch.Tensor:
        """Unit vertex normals (B, V, 3): area-weighted sums of the triangle normals."""
        f = self.topology.faces
        a, b, c = verts[:, f[:, 0]], verts[:, f[:, 1]], verts[:, f[:, 2]]
        fn = torch.linalg.cross(b - a, c - a)  # (B, F, 3)
        n = torch.zeros_like(verts)
        for k in range(3):
            n.index_add_(1, f[:, k], fn)
        return torch.nn.functional.normalize(n, dim=-1, eps=1e-12)


def au_vector(intensities: dict, aus: tuple[int, ...] | None = None) -> np.ndarray:
    """FACS intensities ``{"AU12": 4, 6: 3, ...}`` -> (20,) array over py-feat's model AUs.

    Raises:
        KeyError: for an unknown AU name, or an AU the face model cannot show.
        ValueError: for an intensity outside 0-5.
    """
    from au_lib.facs import PYFEAT_MESH_AUS, parse_au

    cols = aus or PYFEAT_MESH_AUS
    out = np.zeros(len(cols))
    for key, value in intensities.items():
        n = parse_au(key)
        if n not in cols:
            raise KeyError(f"AU{n} is not driven by the py-feat face model; it can show {', '.join(map(str, cols))}")
        if not 0 <= float(value) <= 5:
            raise ValueError(f"intensity of AU{n} must be on the FACS scale 0-5, got {value}")
        out[cols.index(n)] = float(value)
    return out

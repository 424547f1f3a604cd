"""Render SynthAU frames: RGB, depth and thermal from one z-buffer pass, and ground-truth displacements.

Camera: orthographic, looking down -z; image ``x`` to the right, ``y`` down. Head pose (degrees):
positive yaw turns the face towards image right, positive pitch tilts it down, positive roll turns it
clockwise. The head rotates about a pivot behind the face (:data:`PIVOT`); then every frame is framed
as the aligned crops of real AU pipelines (:func:`align_crop`): eye line level, face size fixed, so
roll, translation and scale do not show while yaw and pitch do.

Modalities (float32, 1xHxW or 3xHxW):

- ``rgb`` in [0, 1]: Lambert + Blinn-Phong shading of the per-vertex albedo times a per-subject skin
  texture, tinted by the light colour, composited over a per-video background;
- ``depth`` in [0, 1]: ``(DEPTH_NEAR - z) / (DEPTH_NEAR - DEPTH_FAR)`` with ``z`` the camera-space depth in
  model units (larger = closer); background = 1 (far);
- ``thermal`` in [0, 1]: temperature (see :mod:`.thermal`) normalised by ``(T - 20) / 20``.

Ground truth (:func:`displacement`): for every pixel of an output render, the surface point it shows is
located in the source render (same triangle, same barycentrics), giving the displacement
``d = p_out - p_src`` in pixels with the pull convention ``output(x, y) = source(x - dx, y - dy)``;
``vis`` is 1 where that point is visible in the source (depth test) and inside the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from au_lib.data.synth.appearance import DENT
from au_lib.data.synth.calibration import intensity_curve
from au_lib.data.synth.facemodel import PART_SKIN, FaceModel, weighted_sum
from au_lib.data.synth.identity import Identity, smooth_noise, vertex_albedo, vertex_uv
from au_lib.data.synth.raster import Fragments, interpolate, rasterize
from au_lib.data.synth.sequences import Scene
from au_lib.data.synth.thermal import normalise_temperature, vertex_temperature

PIVOT = (0.0, -0.1, -0.7)
DEPTH_NEAR, DEPTH_FAR = 1.2, -1.2
MODALITIES = ("rgb", "depth", "thermal")
# Aligned crop (see :func:`align_crop`): landmarks of the *rest* face (iris centres, mouth corners),
# crop side = CROP_SIDE * max(|eye-to-eye|, 0.9 |eye-to-mouth|), centre EYE_TO_CENTRE of the way from
# the eye midpoint to the mouth midpoint.
ALIGN_LANDMARKS = (468, 473, 61, 291)
CROP_SIDE = 2.6
EYE_TO_CENTRE = 0.3


def rotate(points: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """``points @ R^T`` for (B, N, 3) points and (B, 3, 3) rotations, written out element by element so
    that the result does not depend on the thread count (as a BLAS matmul's may)."""
    return (points[..., :, None, :] * R[:, None, :, :]).sum(-1)


def align_crop(marks: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Similarity alignment of a face crop from 2-D landmarks, as real AU pipelines crop faces.

    ``marks`` (B, 4, 2): the two iris centres and the two mouth corners in camera coordinates (x right,
    y up, model units), computed on the identity's *rest* face so that expressions never move the crop
    (only the head does). The crop's x axis is the eye line (levelled, as JAA-Net and OpenFace align),
    its side ``CROP_SIDE * max(|e2e|, 0.9 |e2m|)`` (FFHQ's size rule, stable under yaw and pitch), its
    centre on the eye-to-mouth line. In-plane rotation and scale are removed; yaw and pitch stay visible.

    Returns:
        centre (B, 2), unit x axis u (B, 2), and the scale (B,) in pixels per model unit at ``size``.
    """
    eyes = marks[:, :2]
    left_first = (eyes[:, 0, 0] <= eyes[:, 1, 0])[:, None]
    e_l = torch.where(left_first, eyes[:, 0], eyes[:, 1])
    e_r = torch.where(left_first, eyes[:, 1], eyes[:, 0])
    e2e = e_r - e_l
    eye_mid = 0.5 * (e_l + e_r)
    e2m = marks[:, 2:].mean(1) - eye_mid
    u = e2e / e2e.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    side = CROP_SIDE * torch.maximum(e2e.norm(dim=-1), 0.9 * e2m.norm(dim=-1))
    centre = eye_mid + EYE_TO_CENTRE * e2m
    return centre, u, size / side


def rotation(pose_deg: torch.Tensor) -> torch.Tensor:
    """(B, 3) yaw, pitch, roll in degrees -> (B, 3, 3) rotation matrices ``R = Rz(-roll) Rx(-pitch) Ry(yaw)``
    in model coordinates (x right, y up, z towards the camera)."""
    yaw, pitch, roll = torch.deg2rad(pose_deg).unbind(-1)
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).view(-1, 3, 3)
    cp, sp = torch.cos(-pitch), torch.sin(-pitch)
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).view(-1, 3, 3)
    cr, sr = torch.cos(-roll), torch.sin(-roll)
    rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ rx @ ry


def background(scene: Scene, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-video RGB background (3, size, size): a tinted gradient with smooth clutter."""
    rng = np.random.default_rng(scene.background_seed)
    grey = rng.uniform(0.15, 0.85)
    base = np.clip(grey * (1 + rng.normal(0, 0.25, 3)), 0, 1)  # muted colours, as in lab recordings
    other = np.clip(base + rng.normal(0, 0.12, 3), 0, 1)
    ang = rng.uniform(0, 2 * math.pi)
    g = np.linspace(-1, 1, 32)
    gx, gy = np.meshgrid(g, g)
    ramp = 0.5 + 0.5 * np.clip(gx * math.cos(ang) + gy * math.sin(ang), -1, 1)
    img = base[:, None, None] * (1 - ramp) + other[:, None, None] * ramp
    img = img * (1 + 0.15 * smooth_noise(rng, 32, 2, 3)[None] + 0.03 * np.stack([smooth_noise(rng, 32, 2, 2)
                                                                                for _ in range(3)]))
    t = torch.tensor(np.clip(img, 0, 1), dtype=torch.float32, device=device)[None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0]


@dataclass
class Rendered:
    """Output of :meth:`SubjectRenderer.render`: modality images and the geometry behind them."""

    images: dict[str, torch.Tensor]  # name -> (B, C, H, W)
    screen: torch.Tensor  # (B, V, 3) screen-space vertices (x, y pixels; z model units, larger = closer)
    frags: Fragments


class SubjectRenderer:
    """Renders one identity; holds its per-vertex attributes on ``model.device``."""

    def __init__(self, model: FaceModel, ident: Identity):
        self.model = model
        self.ident = ident
        dev = model.device
        self.shape = torch.tensor(ident.shape, dtype=torch.float32, device=dev)
        self.rest = model.neutral + self.shape  # (478, 3)
        self.albedo = vertex_albedo(model, ident)  # (V, 3)
        uv = vertex_uv(model)
        skin = (model.topology.part == PART_SKIN).float()[:, None]
        self.attr_static = torch.cat([self.albedo, uv, skin], -1)  # (V, 6)
        self.temp = vertex_temperature(model, ident)  # (V,)
        self.warm = model.warming  # (20, V), identity-independent: built once per model
        self.furrows = model.furrows  # (K, R, R) furrow pattern at E of the AUs in ``model.furrowed``
        tex = np.stack([ident.texture, ident.thermal_texture])
        self.texture = torch.tensor(tex, dtype=torch.float32, device=dev)[None]  # (1, 2, R, R)
        self._bg: dict[tuple[int, int], torch.Tensor] = {}

    def geometry(self, au: torch.Tensor, pose: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Screen-space vertices (B, V, 3) and camera-space normals (B, V, 3) for FACS ``au`` (B, 20)
        and ``pose`` (B, 6), framed as an aligned face crop (see :func:`align_crop`)."""
        m = self.model
        mesh = m.mesh(au, self.shape)
        verts = m.full_vertices(mesh, self.rest)
        R = rotation(pose[:, :3])
        pivot = torch.tensor(PIVOT, dtype=verts.dtype, device=verts.device)
        cam = rotate(verts - pivot, R) + pivot
        normals = m.vertex_normals(cam)
        marks = rotate((self.rest[list(ALIGN_LANDMARKS)] - pivot).expand(len(R), -1, -1), R) + pivot  # (B, 4, 3)
        centre, u, scale = align_crop(marks[..., :2], size)
        rel = cam[..., :2] - centre[:, None]
        a = (rel * u[:, None]).sum(-1)  # along the eye line
        b = rel[..., 0] * -u[:, None, 1] + rel[..., 1] * u[:, None, 0]  # perpendicular, up
        x = size / 2 + scale[:, None] * a - 0.5
        y = size / 2 - scale[:, None] * b - 0.5
        return torch.stack([x, y, cam[..., 2]], -1), normals

    def render(self, au: torch.Tensor, pose: torch.Tensor, scene: Scene, size: int,
               modalities: tuple[str, ...] = MODALITIES) -> Rendered:
        """Render frames with FACS intensities ``au`` (B, 20), ``pose`` (B, 6) under ``scene`` at ``size`` px."""
        bad = [mod for mod in modalities if mod not in MODALITIES]
        if bad:
            raise ValueError(f"unknown modalities {bad}; choose from {MODALITIES}")
        m = self.model
        dev = m.device
        au = au.to(dev, torch.float32)
        pose = pose.to(dev, torch.float32)
        B = au.shape[0]
        screen, normals = self.geometry(au, pose, size)
        faces = m.topology.faces
        frags = rasterize(screen, faces, size, size)
        mask = frags.mask[:, None]  # (B, 1, H, W)
        images: dict[str, torch.Tensor] = {}
        temp = self.temp + weighted_sum(au / 5.0, self.warm) if "thermal" in modalities else None
        attrs = [self.attr_static.expand(B, -1, -1), normals]
        if temp is not None:
            attrs.append(temp[..., None])
        pix = interpolate(torch.cat(attrs, -1), faces, frags)  # (B, C, H, W)
        n = pix[:, 6:9]
        n = n * torch.rsqrt((n * n).sum(1, keepdim=True).clamp_min(1e-16))  # unit normals (F.normalize over
        # dim 1 of an NCHW tensor takes a slow strided path)
        grid = pix[:, 3:5].permute(0, 2, 3, 1)
        tex = F.grid_sample(self.texture.expand(B, -1, -1, -1), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)  # skin texture, thermal texture
        amount = intensity_curve(au[:, m.furrowed])  # (B, K) AUs with furrows
        active = (amount > 0).any(0)
        if active.any():  # sample only the furrow textures of the AUs shown in this batch
            sampled = F.grid_sample(self.furrows[active][None].expand(B, -1, -1, -1), grid, mode="bilinear",
                                    padding_mode="border", align_corners=False)  # (B, K', H, W)
            furrow = (amount[:, active, None, None] * sampled).sum(1, keepdim=True) * pix[:, 5:6]  # skin only
        else:
            furrow = torch.zeros_like(pix[:, 5:6])
        if "rgb" in modalities:
            light = torch.tensor(scene.light, dtype=torch.float32, device=dev)
            half = F.normalize(light + torch.tensor([0.0, 0.0, 1.0], device=dev), dim=0)
            ndl = (n * light[None, :, None, None]).sum(1, keepdim=True).clamp(min=0)
            ndh = (n * half[None, :, None, None]).sum(1, keepdim=True).clamp(min=0)
            skin = pix[:, 5:6]
            albedo = pix[:, 0:3] * (1 + skin * (tex[:, 0:1] - 1)) * (1 - furrow)
            tint = torch.tensor(scene.tint, dtype=torch.float32, device=dev)[None, :, None, None]
            rgb = albedo * (scene.ambient + scene.diffuse * ndl) * tint + scene.specular * ndh ** 24 * tint
            bg = self._background(scene, size)
            images["rgb"] = torch.where(mask, rgb.clamp(0, 1), bg[None])
        if "depth" in modalities:
            z = frags.zbuf[:, None] - DENT * furrow.clamp(min=0)
            d = ((DEPTH_NEAR - z) / (DEPTH_NEAR - DEPTH_FAR)).clamp(0, 1)
            images["depth"] = torch.where(mask, d, torch.ones_like(d))
        if "thermal" in modalities:
            t = pix[:, 9:10] + tex[:, 1:2]
            emiss = 0.75 + 0.25 * n[:, 2:3].clamp(min=0)  # grazing view -> lower apparent temperature
            t = scene.room_temp + (t - scene.room_temp) * emiss
            tb = torch.full_like(t, scene.room_temp)
            images["thermal"] = normalise_temperature(torch.where(mask, t, tb))
        return Rendered(images, screen, frags)

    def _background(self, scene: Scene, size: int) -> torch.Tensor:
        key = (scene.background_seed, size)
        if key not in self._bg:
            self._bg = {key: background(scene, size, self.model.device)}
        return self._bg[key]


def displacement(out: Rendered, src: Rendered, faces: torch.Tensor, tol: float = 0.06
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth pull displacement from render ``src`` to render ``out`` (same subject and scene).

    Returns:
        disp: (B, 2, H, W) pixels, channel 0 = dx (width), 1 = dy, with ``out(x, y) = src(x - dx, y - dy)``.
        vis: (B, 1, H, W) float 1/0: the source point is visible in ``src`` (depth within ``tol`` model
        units) and inside the image. Background pixels do not move (d = 0) and are visible where the
        source shows background there too.
    """
    frags = out.frags
    B, H, W = frags.tri.shape
    dev = frags.tri.device
    src_pos = interpolate(src.screen, faces, frags)  # (B, 3, H, W): where each out-pixel's point is in src
    ys, xs = torch.meshgrid(torch.arange(H, device=dev, dtype=torch.float32),
                            torch.arange(W, device=dev, dtype=torch.float32), indexing="ij")
    grid = torch.stack([xs, ys])[None].expand(B, -1, -1, -1)
    fg = frags.mask[:, None]
    src_xy = torch.where(fg, src_pos[:, :2], grid)
    disp = grid - src_xy
    xi = torch.round(src_xy[:, 0]).long()
    yi = torch.round(src_xy[:, 1]).long()
    inside = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
    xi, yi = xi.clamp(0, W - 1), yi.clamp(0, H - 1)
    b = torch.arange(B, device=dev)[:, None, None].expand(B, H, W)
    z_there = src.frags.zbuf[b, yi, xi]
    vis_fg = (z_there - src_pos[:, 2]).abs() <= tol
    vis_bg = ~src.frags.mask
    vis = torch.where(frags.mask, vis_fg, vis_bg) & inside
    return disp, vis[:, None].float()

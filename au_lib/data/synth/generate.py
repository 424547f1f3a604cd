"""Generate a SynthAU view into the cache (or render it on the fly): identities, sequences, frames."""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from au_lib.data.synth import cache
from au_lib.data.synth.config import GENERATOR_VERSION, SynthConfig, check_size, get_view, view_counts
from au_lib.data.synth.facemodel import FaceModel
from au_lib.data.synth.identity import Identity, make_identity
from au_lib.data.synth.render import SubjectRenderer
from au_lib.data.synth.sequences import TASK_NAMES, Sequence, make_sequence

VIEW_IDS = {"pretrain": 1, "bp4d": 2, "disfa": 3}


def default_root() -> Path:
    """``<cache>/synthau`` (:func:`au_lib.cache.cache_root`)."""
    from au_lib.cache import cache_dir

    return cache_dir("synthau")


@lru_cache(maxsize=2)
def face_model(device: str = "cpu") -> FaceModel:
    return FaceModel(device=device)


def subject_ids(view: str, n: int) -> list[str]:
    v = get_view(view)
    return [f"{v.prefix}{i + 1:03d}" for i in range(n)]


def subject_index(view: str, name: str) -> int:
    v = get_view(view)
    if not (name.startswith(v.prefix) and name[len(v.prefix):].isdigit()):
        raise KeyError(f"{name!r} is not a subject of SynthAU view {v.name!r} (ids look like {v.prefix}001)")
    return int(name[len(v.prefix):]) - 1


def identity(view: str, name: str, seed: int, model: FaceModel | None = None) -> Identity:
    """The identity of subject ``name`` of ``view`` (a pure function of seed, view and index)."""
    i = subject_index(view, name)
    return make_identity(model or face_model(), name, np.random.SeedSequence([seed, VIEW_IDS[get_view(view).name], i, 0]))


def sequences(view: str, name: str, seed: int, n_sequences: int, n_frames: int, ident: Identity) -> list[Sequence]:
    """The videos of subject ``name``: sequence ``s`` plays task ``(index + s) mod 8``."""
    i = subject_index(view, name)
    out = []
    for s in range(n_sequences):
        rng = np.random.default_rng(np.random.SeedSequence([seed, VIEW_IDS[get_view(view).name], i, 1, s]))
        task = TASK_NAMES[(i + s) % len(TASK_NAMES)]
        out.append(make_sequence(rng, task, n_frames, gain=ident.expressiveness))
    return out


def render_subject(view: str, name: str, seed: int, cfg: SynthConfig, size: int,
                   device: str = "cpu") -> dict[str, np.ndarray]:
    """Render every frame of one subject; returns the shard arrays (see :mod:`.cache`)."""
    model = face_model(device)
    ident = identity(view, name, seed, model)
    _, n_seq = view_counts(cfg, view)
    seqs = sequences(view, name, seed, n_seq, cfg.frames, ident)
    rend = SubjectRenderer(model, ident)
    rgb, depth, thermal, au, pose, sid, fid = [], [], [], [], [], [], []
    for s, seq in enumerate(seqs):
        for a in range(0, cfg.frames, cfg.chunk):
            b = min(cfg.frames, a + cfg.chunk)
            with torch.no_grad():
                out = rend.render(torch.tensor(seq.au[a:b], dtype=torch.float32),
                                  torch.tensor(seq.pose[a:b], dtype=torch.float32), seq.scene, size)
            im = out.images
            rgb.append(torch.round(im["rgb"] * 255).to(torch.uint8).cpu().numpy())
            depth.append(torch.round(im["depth"][:, 0] * 65535).to(torch.int32).cpu().numpy().astype(np.uint16))
            thermal.append(torch.round(im["thermal"][:, 0] * 65535).to(torch.int32).cpu().numpy().astype(np.uint16))
        au.append(seq.au.astype(np.float32))
        pose.append(seq.pose.astype(np.float32))
        sid.append(np.full(cfg.frames, s, dtype=np.int32))
        fid.append(np.arange(cfg.frames, dtype=np.int32))
    return {"rgb": np.concatenate(rgb), "depth": np.concatenate(depth), "thermal": np.concatenate(thermal),
            "au": np.concatenate(au), "pose": np.concatenate(pose), "sequence": np.concatenate(sid),
            "frame": np.concatenate(fid)}


def view_key(view: str, seed: int, cfg: SynthConfig, size: int) -> dict:
    """Everything that determines the data of ``view``: hashed into the cache folder name."""
    n_sub, n_seq = view_counts(cfg, view)
    return {"generator": GENERATOR_VERSION, "view": get_view(view).name, "seed": int(seed), "image_size": int(size),
            "subjects": n_sub, "sequences": n_seq, "frames": cfg.frames}


def _progress(progress: bool | None) -> bool:
    if progress is None:
        return not os.environ.get("CI") and sys.stderr.isatty()
    return bool(progress) and not os.environ.get("CI")


def _render_one(job: tuple) -> dict[str, np.ndarray]:
    """Worker entry point: render one subject single-threaded (subjects are independent, so the bytes
    do not depend on how many workers run)."""
    torch.set_num_threads(1)
    return render_subject(*job)


def ensure_view(view: str, *, root: str | os.PathLike | None = None, seed: int = 0, cfg: SynthConfig,
                image_size: int | None = None, progress: bool | None = None, device: str = "cpu",
                workers: int = 1) -> Path:
    """Make sure ``view`` is generated and intact in the cache; return its folder.

    Missing or corrupt shards are (re)generated, by ``workers`` processes in parallel on the CPU; the
    manifest is rewritten after each shard, so an interrupted run resumes.
    """
    from tqdm.auto import tqdm

    size = check_size(image_size if image_size is not None else cfg.image_size)
    key = view_key(view, seed, cfg, size)
    base = Path(root) if root is not None else default_root()
    for old in cache.remove_stale(base, GENERATOR_VERSION):
        warnings.warn(f"removed SynthAU cache {old} of an older generator version", RuntimeWarning, stacklevel=2)
    folder = base / f"{key['view']}-{size}px-{cache.config_hash(key)}"
    man_path = folder / "manifest.json"
    manifest = cache.read_json(man_path)
    if not manifest or manifest.get("key") != key:
        manifest = {"key": key, "config": asdict(cfg), "shards": {}}
    names = subject_ids(view, key["subjects"])
    todo = []
    for name in names:
        entry = manifest["shards"].get(name)
        path = folder / f"{name}.npz"
        if entry is None:
            todo.append(name)
            continue
        ok = path.is_file() and path.stat().st_size == entry["bytes"] and cache.sha256_file(path) == entry["sha256"]
        if not ok:
            warnings.warn(f"SynthAU cache shard {path} is missing or corrupt; regenerating it", RuntimeWarning,
                          stacklevel=2)
            todo.append(name)
    if todo:
        bar = tqdm(total=len(todo), desc=f"SynthAU {key['view']} {size}px", unit="subject",
                   disable=not _progress(progress))
        jobs = [(view, name, seed, cfg, size, device) for name in todo]
        if workers > 1 and device == "cpu" and len(todo) > 1:
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(min(workers, len(todo)))
            results = pool.map(_render_one, jobs)
        else:
            pool, results = None, (render_subject(*j) for j in jobs)
        for name, arrays in zip(todo, results):
            bar.update(1)
            sha, nbytes = cache.write_shard(folder / f"{name}.npz", arrays)
            manifest["shards"][name] = {"file": f"{name}.npz", "sha256": sha, "bytes": nbytes,
                                        "frames": int(arrays["au"].shape[0])}
            cache.write_json(man_path, manifest)
        bar.close()
        if pool is not None:
            pool.shutdown()
    return folder


def render_face(subject: str = "B001", *, view: str | None = None, au: dict | None = None,
                pose: tuple[float, float, float] = (0.0, 0.0, 0.0), image_size: int = 128, seed: int = 0,
                modalities: tuple[str, ...] = ("rgb", "depth", "thermal"), scene_seed: int = 0,
                device: str = "cpu") -> dict[str, torch.Tensor]:
    """Render one frame of ``subject`` with FACS intensities ``au`` (e.g. ``{"AU12": 4}``) and head
    ``pose`` (yaw, pitch, roll degrees) under a fixed neutral scene; returns modality -> (C, H, W).

    ``view`` defaults to the one the subject id's prefix names (P, B or D).
    """
    from au_lib.data.synth.config import VIEWS
    from au_lib.data.synth.facemodel import au_vector
    from au_lib.data.synth.sequences import Scene

    if view is None:
        view = next((v.name for v in VIEWS.values() if subject.startswith(v.prefix)), None)
        if view is None:
            raise KeyError(f"cannot tell the view of subject {subject!r}; pass view=")
    size = check_size(image_size)
    model = face_model(device)
    rend = SubjectRenderer(model, identity(view, subject, seed, model))
    scene = Scene(light=np.array([0.35, 0.45, 0.82]) / np.linalg.norm([0.35, 0.45, 0.82]), ambient=0.38,
                  diffuse=0.7, specular=0.08, tint=np.ones(3), room_temp=23.0, background_seed=scene_seed)
    a = torch.tensor(au_vector(au or {}), dtype=torch.float32)[None]
    p = torch.tensor([[*pose, 0.0, 0.0, 1.0]], dtype=torch.float32)
    with torch.no_grad():
        out = rend.render(a, p, scene, size, tuple(modalities))
    return {k: v[0].cpu() for k, v in out.images.items()}


def project_vertices(subject: str = "B001", *, view: str | None = None, au: dict | None = None,
                     pose: tuple[float, float, float] = (0.0, 0.0, 0.0), image_size: int = 128, seed: int = 0,
                     device: str = "cpu") -> torch.Tensor:
    """Pixel positions (V, 2) = (x, y) of every vertex of ``subject`` as :func:`render_face` draws it."""
    from au_lib.data.synth.config import VIEWS
    from au_lib.data.synth.facemodel import au_vector

    if view is None:
        view = next((v.name for v in VIEWS.values() if subject.startswith(v.prefix)), None)
        if view is None:
            raise KeyError(f"cannot tell the view of subject {subject!r}; pass view=")
    model = face_model(device)
    rend = SubjectRenderer(model, identity(view, subject, seed, model))
    a = torch.tensor(au_vector(au or {}), dtype=torch.float32)[None]
    p = torch.tensor([[*pose, 0.0, 0.0, 1.0]], dtype=torch.float32)
    with torch.no_grad():
        return rend.geometry(a, p, check_size(image_size))[0][0, :, :2].cpu()

"""MCM supplementary Fig. 1: F1 against pre-training epochs (1a) and against the mask ratio (1b).

Two sweeps (plus one the paper did not run), all built from :mod:`au_lib.experiments.sweep` points:

- ``epochs``: one MCM pre-training run at mask ratio ``epochs_mask_ratio`` (0.5, as the paper), with
  checkpoints at ``epochs`` (0 = the initial weights, i.e. no pre-training), each fine-tuned on RGB;
- ``mask-ratio``: one run per ratio in ``mask_ratios``, the last checkpoint of each fine-tuned on
  RGB and on the fused modalities (``finetune:mcm:fusion``);
- ``nomix`` (ours): the same ratio sweep for a plain RGB MAE (the pre-training pool read with RGB only,
  so there is no channel mixing and nothing cross-modal to reconstruct), RGB fine-tuning.

Every point is scored with the project's protocol (:func:`au_lib.experiments.protocol.run_protocol`:
three subject-exclusive folds, epoch and thresholds chosen on validation subjects) and additionally
with a held-out reconstruction error (mask ratio 0.5, fixed subsets and masks) so that the
reconstruction objective can be set against the downstream F1.

Sizes live in :data:`ABLATION_PROFILES`. The ``cpu`` row compresses the paper's 100 epochs into a
short run: checkpoint epoch ``e`` of ``E`` is drawn at ``paper_epoch = 100 * e / E``
(:func:`paper_epoch`), i.e. at the same fraction of the warm-up + cosine schedule.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from au_lib.experiments.protocol import PROTOCOL_PROFILES, ProtocolSettings
from au_lib.experiments.sweep import Checkpoint, Point, Run
from au_lib.models.mcm import MCMConfig
from au_lib.profiles import pick
from au_lib.train.finetune import TrainConfig
from au_lib.train.pretrain import PRETRAIN_PROFILES, PretrainConfig

SWEEPS: tuple[str, ...] = ("epochs", "mask-ratio", "nomix")
PAPER_EPOCHS = 100


@dataclass(frozen=True)
class AblationSettings:
    """One row of :data:`ABLATION_PROFILES`.

    pretrain: the MCM pre-training recipe (its ``epochs`` is the run length; ``save_epochs`` ignored).
    epochs: checkpoint epochs of the epoch sweep (0 = no pre-training).
    epochs_mask_ratio: mask ratio of the epoch sweep's run (paper: 0.5).
    mask_ratios: ratios of the mask-ratio sweep, each scored at the end of its run.
    ratio_modalities: fine-tuning inputs of the mask-ratio sweep (``fusion``, ``rgb``).
    nomix_ratios: ratios of the RGB-only MAE sweep (empty: not run).
    method: ``finetune`` (the paper; :func:`au_lib.experiments.protocol.run_protocol`) or ``probe``
        (BatchNorm + linear probe on frozen features, RGB or fused; :func:`probe_protocol`).
    protocol: the evaluation protocol's sizes (folds, epochs, frames).
    dataset, view: the fine-tuning data (a view with depth and thermal for fusion).
    recon_samples, recon_mask_ratio: held-out frames and ratio of the reconstruction error.
    resplit: draw a new random 3-fold subject partition for each of ``protocol.seeds`` (repeated
        3-fold cross-validation: 3 x seeds runs per point, with the partition seeded by the run's seed)
        instead of scoring every seed on the same three folds. Only for ``method="probe"`` on SynthAU
        (the licensed datasets have fixed official folds).
    probe_grid: the probe's features: the encoder's patch tokens average-pooled onto
        ``probe_grid x probe_grid`` cells of the face (1: the global mean, MAE's pool).
    """

    pretrain: PretrainConfig
    epochs: tuple[int, ...]
    mask_ratios: tuple[float, ...]
    protocol: ProtocolSettings
    epochs_mask_ratio: float = 0.5
    ratio_modalities: tuple[str, ...] = ("fusion", "rgb")
    nomix_ratios: tuple[float, ...] = ()
    method: str = "finetune"
    dataset: str = "synthau"
    view: str = "bp4d"
    recon_samples: int = 64
    recon_mask_ratio: float = 0.5
    resplit: bool = False
    probe_grid: int = 1

    def __post_init__(self) -> None:
        if max(self.epochs) > self.pretrain.epochs:
            raise ValueError(f"epoch sweep asks for epoch {max(self.epochs)} of a {self.pretrain.epochs}-epoch run")
        for r in (*self.mask_ratios, *self.nomix_ratios, self.epochs_mask_ratio, self.recon_mask_ratio):
            if not 0.0 < r < 1.0:
                raise ValueError(f"mask ratios must be in (0, 1), got {r}")
        if self.method not in ("finetune", "probe"):
            raise ValueError(f"method must be finetune or probe, got {self.method!r}")
        bad = [m for m in self.ratio_modalities if m not in ("rgb", "fusion")]
        if bad:
            raise ValueError(f"ratio_modalities must be rgb/fusion, got {bad}")
        grid = self.pretrain.model.img_size // self.pretrain.model.patch_size
        if not 1 <= self.probe_grid <= grid or (self.probe_grid > 1 and self.method != "probe"):
            raise ValueError(f"probe_grid must be 1..{grid} (patches per side) and > 1 only for method='probe', "
                             f"got {self.probe_grid} with {self.method!r}")
        if self.resplit and (self.method != "probe" or self.dataset != "synthau"):
            raise ValueError(f"resplit needs method='probe' on synthau (got {self.method!r} on {self.dataset!r}): "
                             "the licensed datasets have fixed official folds")


_CPU_MODEL = MCMConfig(img_size=64, patch_size=8, embed_dim=96, depth=4, num_heads=3, decoder_embed_dim=64,
                       decoder_depth=1, decoder_num_heads=2)


def _probe(epochs: int, batch: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=batch, lr=5e-3, weight_decay=1e-4, layer_decay=1.0,
                       warmup_epochs=1, patience=15, flip=False)


def _tune(epochs: int, batch: int, lr: float = 1e-3, layer_decay: float = 0.75) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=batch, lr=lr, weight_decay=0.05, layer_decay=layer_decay,
                       warmup_epochs=1, patience=3)


# Rows are spelled out (not derived from other modules' profile tables) so that committed results
# stay reusable when another chapter retunes its own profile.
ABLATION_PROFILES: dict[str, AblationSettings] = {
    # CI: a 2-epoch run of a tiny model, 3 checkpoints, 3 ratios; a few seconds per point.
    "smoke": AblationSettings(
        pretrain=PretrainConfig(model=MCMConfig(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3,
                                                decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2),
                                epochs=2, batch_size=16, blr=1.5e-3, warmup_epochs=0.5, num_samples=48),
        epochs=(0, 1, 2), mask_ratios=(0.25, 0.5, 0.75), nomix_ratios=(0.5,), recon_samples=16, method="probe",
        protocol=ProtocolSettings(image_size=32, seeds=(0,), max_frames_per_subject=8, report_test_tuned=False,
                                  fusion_subsets=("RGB", "RDT"), probe=_probe(15, 64), finetune=_tune(1, 32),
                                  scratch=_tune(1, 32, layer_decay=1.0))),
    # This 2-core CPU: a ViT of width 96 and 4 blocks at 64 px (8 px patches), 10-epoch runs on 1024
    # frames of the pool, so that our epoch e is the paper's 10 e; a linear probe on frozen features
    # (fine-tuning 19 points x 3 folds does not fit). Power: three random subject partitions x three
    # folds = 9 runs per point (one partition gave fold spreads of 1.5-2.5 F1, a standard error of
    # about 1.2 over 3 runs; the issue asks for at most 1). The probe reads a 4 x 4 grid of pooled
    # tokens: on SynthAU v3 the mean-pooled probe scored 47.8-48.6 at every checkpoint, the
    # "every AU present" baseline (48.4), while the 4 x 4 grid scored 56.9 (initial weights) and 56.4
    # (epoch 10), standard error 0.4-0.5 (pilot, 9 runs each; a 2 x 2 grid stayed at 48.4-48.7).
    # Measured cost of the 19 points (1 thread, the other core busy): pre-training 7 min over the 8
    # runs, scoring 21 min (the fused points about twice the RGB ones).
    "cpu": AblationSettings(
        pretrain=PretrainConfig(model=_CPU_MODEL, epochs=10, batch_size=32, blr=8e-3, warmup_epochs=1,
                                num_samples=1024),
        epochs=(0, 1, 2, 4, 6, 8, 10), mask_ratios=(0.1, 0.3, 0.5, 0.7, 0.9), nomix_ratios=(0.5, 0.7, 0.9),
        method="probe", recon_samples=64, resplit=True, probe_grid=4,
        protocol=ProtocolSettings(image_size=64, seeds=(0, 1, 2), max_frames_per_subject=32, report_test_tuned=False,
                                  fusion_subsets=("RGB", "RGD", "RGT", "RDT"), probe=_probe(60, 128),
                                  finetune=_tune(5, 32), scratch=_tune(5, 32, layer_decay=1.0))),
    # The paper: ViT-B/16 at 224, 100 epochs at mask 0.5, checkpoints every 10 epochs; ratios 0.1..0.9;
    # fine-tuning (RGB and fusion) under the full protocol (3 folds x 3 seeds).
    "paper": AblationSettings(
        pretrain=replace(PRETRAIN_PROFILES["paper"], save_epochs=()),
        epochs=tuple(range(0, 101, 10)), mask_ratios=tuple(round(0.1 * k, 1) for k in range(1, 10)),
        nomix_ratios=(0.5, 0.6, 0.7, 0.75, 0.8, 0.9), protocol=PROTOCOL_PROFILES["paper"], recon_samples=256,
        method="finetune"),
}


def ablation_settings(profile: str | None = None, **overrides) -> AblationSettings:
    """The row of ``profile`` (default ``$AU_PROFILE``) with field overrides."""
    return pick(ABLATION_PROFILES, profile, **overrides)


def paper_epoch(epoch: int, settings: AblationSettings) -> float:
    """Where checkpoint ``epoch`` of our run sits on the paper's 0..100 axis (same schedule fraction)."""
    return PAPER_EPOCHS * epoch / settings.pretrain.epochs


# ----------------------------------------------------------------------------------------- points

def _run(settings: AblationSettings, mask_ratio: float, mixing: bool, epochs: Sequence[int]) -> Run:
    model = replace(settings.pretrain.model, mask_ratio=float(mask_ratio))
    cfg = replace(settings.pretrain, model=model, save_epochs=(),
                  modalities=("rgb", "depth", "thermal") if mixing else ("rgb",))
    name = f"{'mcm' if mixing else 'mae-rgb'}-r{mask_ratio:.2f}-e{cfg.epochs}"
    data = {"dataset": settings.dataset, "view": "pretrain", "version": _data_version(settings.dataset)}
    return Run(name, {"kind": "mcm-pretrain", "pretrain": cfg.to_dict(), "data": data}, tuple(epochs))


def _data_version(dataset: str) -> str | None:
    """SynthAU's generator version (results made on other synthetic data are not reused)."""
    if dataset != "synthau":
        return None
    from au_lib.data.synth.config import GENERATOR_VERSION

    return GENERATOR_VERSION


def _evaluation(settings: AblationSettings, modality: str, profile: str) -> dict:
    method = ("probe:mcm" if settings.method == "probe" else "finetune:mcm") + (":fusion" if modality == "fusion" else "")
    return {"method": method, "dataset": settings.dataset, "dataset_options": {"view": settings.view},
            "data_profile": profile, "data_version": _data_version(settings.dataset), "protocol": asdict(settings.protocol),
            "recon": {"samples": settings.recon_samples, "mask_ratio": settings.recon_mask_ratio, "seed": 0},
            **({"resplit": True} if settings.resplit else {}),
            **({"probe_grid": settings.probe_grid} if settings.probe_grid > 1 else {})}


def sweep_points(sweep: str, settings: AblationSettings | None = None, profile: str | None = None) -> list[Point]:
    """The points of ``sweep`` (``epochs``, ``mask-ratio`` or ``nomix``) for ``profile``.

    Runs shared between sweeps (the 0.5 run of the epoch sweep is the 0.5 point of the ratio sweep)
    have the same name and config, so :func:`all_points` merges them and they are trained once.
    """
    from au_lib.profiles import current_profile

    profile = profile or current_profile()
    s = settings or ablation_settings(profile)
    last = s.pretrain.epochs
    pts: list[Point] = []
    if sweep == "epochs":
        run = _run(s, s.epochs_mask_ratio, True, s.epochs)
        for e in s.epochs:
            pts.append(Point(f"{run.name}-ep{e:03d}-rgb", run, e, _evaluation(s, "rgb", profile),
                             {"sweep": "epochs", "mask_ratio": s.epochs_mask_ratio, "epoch": e,
                              "paper_epoch": paper_epoch(e, s), "modality": "rgb", "mixing": True}))
    elif sweep in ("mask-ratio", "nomix"):
        mixing = sweep == "mask-ratio"
        ratios = s.mask_ratios if mixing else s.nomix_ratios
        mods = s.ratio_modalities if mixing else ("rgb",)
        for r in ratios:
            run = _run(s, r, mixing, (last,))
            for m in mods:
                pts.append(Point(f"{run.name}-ep{last:03d}-{m}", run, last, _evaluation(s, m, profile),
                                 {"sweep": sweep, "mask_ratio": float(r), "epoch": last,
                                  "paper_epoch": paper_epoch(last, s), "modality": m, "mixing": mixing}))
    else:
        raise ValueError(f"unknown sweep {sweep!r}; choose from {', '.join(SWEEPS)}")
    return pts


def all_points(sweeps: Sequence[str] = SWEEPS, settings: AblationSettings | None = None,
               profile: str | None = None) -> list[Point]:
    """The points of several sweeps, with shared runs merged (their checkpoint epochs united) and
    identical points kept once. Point labels keep the first sweep's name."""
    pts = [p for sw in sweeps for p in sweep_points(sw, settings, profile)]
    epochs: dict[str, set[int]] = {}
    for p in pts:
        epochs.setdefault(p.run.name, set()).update(p.run.epochs)
    out: dict[str, Point] = {}
    for p in pts:
        if p.name in out:
            continue
        run = Run(p.run.name, p.run.config, tuple(sorted(epochs[p.run.name])))
        out[p.name] = Point(p.name, run, p.epoch, p.evaluation, p.labels)
    return list(out.values())


def select(results: dict[str, dict], sweep: str, points: Sequence[Point]) -> list[dict]:
    """The loaded results of ``sweep``'s points, in sweep order, with the point's labels attached
    (a point shared between sweeps is listed under both)."""
    out = []
    for p in points:
        if p.name in results:
            out.append({**results[p.name], "labels": {**p.labels, "sweep": sweep}})
    return out


# ------------------------------------------------------------------------- the real callables

def cache_dir() -> Path:
    """The package's cache folder (:func:`au_lib.cache.cache_root`)."""
    from au_lib.cache import cache_root

    return cache_root()


def initial_checkpoint(cfg: PretrainConfig, path: Path) -> None:
    """Epoch 0: write the weights :func:`au_lib.train.pretrain.pretrain` starts from (``MCM(cfg.model,
    seed=cfg.seed)``, the same draw) to ``path`` as a training checkpoint, unless a valid one is there."""
    from au_lib.cache import load_cached_torch
    from au_lib.models.mcm import MCM
    from au_lib.train.engine import save_checkpoint

    if load_cached_torch(path, what="sweep checkpoint", check=_checkpoint_at(0)) is not None:
        return
    model = MCM(cfg.model, seed=cfg.seed)
    save_checkpoint(path, model=model, epoch=0, step=0, config=cfg.to_dict())


def pretrain_pool(dataset: str, cfg: PretrainConfig, profile: str):
    """The pre-training pool (``view="pretrain"``, the run's modalities, the model's image size),
    cut to ``cfg.num_samples`` evenly spaced frames (all subjects, deterministic) when that is set.

    (A thin adapter: :func:`au_lib.train.pretrain.open_pretrain_dataset` passes ``num_samples`` to the
    registry, which SynthAU's ``open_dataset`` does not take.)
    """
    from torch.utils.data import Subset

    from au_lib.data.registry import open_dataset

    ds = open_dataset(dataset, view="pretrain", modalities=tuple(cfg.modalities), image_size=cfg.model.img_size,
                      profile=profile)
    n = cfg.num_samples
    if n is not None and n < len(ds):
        idx = np.round(np.linspace(0, len(ds) - 1, n)).astype(int).tolist()
        ds = Subset(ds, idx)
    return ds


def _checkpoint_at(epoch: int | None):
    """A cache check: a training checkpoint (after ``epoch`` epochs when given)."""
    def check(ck) -> None:
        if not isinstance(ck, dict) or "model" not in ck or "epoch" not in ck:
            raise ValueError("not a training checkpoint")
        if epoch is not None and int(ck["epoch"]) != epoch:
            raise ValueError(f"holds epoch {ck['epoch']}, not {epoch}")
    return check


def _epoch_row(ckpt: dict, epoch: int) -> dict:
    """The history record of ``epoch`` inside a checkpoint (empty if absent)."""
    return next((dict(r) for r in ckpt.get("history", []) if r.get("epoch") == epoch), {})


class MCMPretrain:
    """``pretrain_fn`` for :func:`au_lib.experiments.sweep.run_sweep`: one MCM pre-training run
    (:func:`au_lib.train.pretrain.pretrain`, resumable) with ``epoch_XXXX.pt`` at the run's epochs."""

    def __init__(self, profile: str, device: torch.device | str | None = None, progress: bool = True,
                 dataset: str = "synthau"):
        self.profile, self.device, self.progress, self.dataset = profile, device, progress, dataset

    def __call__(self, run: Run, work: Path) -> dict[int, Checkpoint]:
        from au_lib.cache import load_cached_torch
        from au_lib.train.engine import read_checkpoint
        from au_lib.train.pretrain import pretrain

        cfg = PretrainConfig.from_dict(run.config["pretrain"])
        cfg = replace(cfg, save_epochs=tuple(e for e in run.epochs if e > 0))
        work.mkdir(parents=True, exist_ok=True)
        out: dict[int, Checkpoint] = {}
        if 0 in run.epochs:
            initial_checkpoint(cfg, work / "epoch_0000.pt")
            out[0] = Checkpoint(work / "epoch_0000.pt", {"epoch": 0})
        wanted = [e for e in run.epochs if e > 0]
        if wanted:
            # the work folder is a cache: a damaged checkpoint there is reported, deleted and recomputed
            rows: dict[int, dict] = {}
            for e in wanted:
                ck = load_cached_torch(work / f"epoch_{e:04d}.pt", what="sweep checkpoint", check=_checkpoint_at(e))
                if ck is not None:
                    rows[e] = _epoch_row(ck, e)
            missing = [e for e in wanted if e not in rows]
            last = work / "last.pt"
            if missing:
                ck = load_cached_torch(last, what="pre-training checkpoint", check=_checkpoint_at(None))
                if ck is not None and int(ck["epoch"]) >= min(missing):  # passed an epoch it did not keep:
                    for f in [last, work / "log.jsonl", *work.glob("epoch_*.pt")]:  # restart (deterministic)
                        if f.name != "epoch_0000.pt":
                            f.unlink(missing_ok=True)
                del ck
                ds = pretrain_pool(self.dataset, cfg, self.profile)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(cfg.seed)  # pretrain() draws the model init from the global RNG
                    pretrain(cfg, ds, work, device=self.device, show_progress=self.progress)
                for e in missing:
                    p = work / f"epoch_{e:04d}.pt"
                    if not p.exists():
                        raise RuntimeError(f"pre-training in {work} did not write {p.name}")
                    rows[e] = _epoch_row(read_checkpoint(p), e)
            for e in wanted:  # the losses come from the checkpoint's own history (never from log.jsonl)
                h = rows[e]
                out[e] = Checkpoint(work / f"epoch_{e:04d}.pt",
                                    {"epoch": e, **{k: h[k] for k in ("loss", "loss_rgb", "loss_depth", "loss_thermal")
                                                    if k in h}})
        return out


def heldout_reconstruction(checkpoint: Path, x5: torch.Tensor, mask_ratio: float, seed: int = 0,
                           device: torch.device | str = "cpu", batch: int = 64) -> dict[str, float]:
    """Mean pixel MSE (units of [0,1] intensities) of a checkpoint's reconstructions per modality on
    ``x5`` (N,5,H,W), with subsets drawn uniformly and masks at ``mask_ratio`` from ``seed`` (so every
    checkpoint is judged on the same task, whatever ratio it was trained with)."""
    from au_lib.experiments.reconstruction import reconstruction_errors
    from au_lib.ops.masking import random_masking, sample_subsets
    from au_lib.train.pretrain import load_pretrained_mcm

    model, _, _ = load_pretrained_mcm(checkpoint, map_location=device)
    model.to(device)
    g = torch.Generator().manual_seed(seed)
    errs: dict[str, list] = {}
    for i in range(0, len(x5), batch):
        xb = x5[i:i + batch]
        s = sample_subsets(len(xb), g)
        m = random_masking(len(xb), model.cfg.num_patches, mask_ratio, g)
        for k, v in reconstruction_errors(model, xb.to(device), s, m).items():
            errs.setdefault(k, []).append(v.float().cpu())
    out = {k: float(np.nanmean(torch.cat(v).numpy())) for k, v in errs.items()}
    out["mean"] = float(np.mean([out[k] for k in ("rgb", "depth", "thermal")]))
    return out


def probe_protocol(checkpoint: str | Path, dataset: str, dataset_options: dict, modality: str,
                   settings: ProtocolSettings, profile: str, *, device: torch.device | str = "cpu",
                   progress: bool = False, resplit: bool = False, grid: int = 1) -> tuple[dict, dict]:
    """The protocol's linear probe on a frozen MCM encoder, for RGB input or for the fused modalities.

    A thin adapter over :mod:`au_lib.experiments.protocol` (whose ``probe:mcm`` reads RGB only): the
    frames are loaded once with R,G,B,D,T (:func:`~au_lib.experiments.protocol.load_table`); the
    features are the encoder's mean-pooled tokens (with ``grid`` > 1: pooled onto ``grid x grid`` cells,
    :meth:`au_lib.models.mcm.MCMEncoder.forward_features`) of the RGB image (``rgb``) or their average over
    ``settings.fusion_subsets`` channel-mixing images (``fusion``, :class:`au_lib.models.heads.SubsetFusion`
    in evaluation mode); each fold is then run by :func:`~au_lib.experiments.protocol.run_fold`
    (validation subjects choose the epoch and the thresholds) and aggregated by
    :func:`~au_lib.experiments.protocol.aggregate`. With ``resplit`` each of ``settings.seeds`` also
    seeds the subject partition (``dataset_folds(..., seed=seed)``: repeated 3-fold cross-validation),
    so the runs of a point do not all share the same three test sets. Returns ``(metrics, extra)``.
    """
    from au_lib.data.registry import dataset_folds
    from au_lib.experiments.methods import Method
    from au_lib.experiments.protocol import aggregate, load_table, run_fold
    from au_lib.models.heads import SubsetFusion
    from au_lib.models.mcm import load_pretrained_encoder
    from au_lib.train.finetune import extract_features

    if modality not in ("rgb", "fusion"):
        raise ValueError(f"modality must be rgb or fusion, got {modality!r}")
    table = load_table(dataset, dataset_options, ("rgb", "depth", "thermal"), settings.image_size, profile,
                       settings.max_frames_per_subject, progress=progress, stream=settings.stream_frames)
    enc = load_pretrained_encoder(checkpoint).to(device).eval()
    if modality == "rgb":
        feats = extract_features(lambda x: enc.forward_features(x, grid=grid), table.x[:, :3], settings.feature_batch,
                                 device=device)
    else:
        fusion = SubsetFusion(enc, settings.fusion_subsets or None, grid=grid).eval()
        feats = extract_features(fusion.forward_features, table.x[:, :5], settings.feature_batch, device=device)
    method = Method("probe", "mcm", "rgb", str(checkpoint))
    if resplit and "seed" in dataset_options:
        raise ValueError("resplit draws the partition from the protocol's seeds; drop 'seed' from dataset_options")

    def folds_for(seed: int) -> list:
        return list(dataset_folds(dataset, profile=profile, **dataset_options, **({"seed": seed} if resplit else {})))

    outcomes = [run_fold(table, fold, method, settings, seed=seed, features=feats, device=device, profile=profile)
                for seed in settings.seeds for fold in folds_for(seed)]
    extra = {"frames": len(table), "subjects": len(set(table.subject.tolist())), "feature_dim": int(feats.shape[1]),
             "partitions": len(settings.seeds) if resplit else 1}
    return aggregate(outcomes, table.aus), extra


class MCMEvaluate:
    """``evaluate_fn`` for :func:`au_lib.experiments.sweep.run_sweep`: the AU protocol on one
    checkpoint (:func:`au_lib.experiments.protocol.run_protocol`) plus the held-out reconstruction error."""

    def __init__(self, profile: str, device: torch.device | str | None = None, progress: bool = True):
        from au_lib.provenance import choose_device

        self.profile, self.progress = profile, progress
        self.device = torch.device(device) if device is not None else choose_device()
        self._x5: dict[str, torch.Tensor] = {}

    def _recon_frames(self, ev: dict, settings: ProtocolSettings) -> torch.Tensor:
        from au_lib.experiments.protocol import load_table

        key = repr((ev["dataset"], ev["dataset_options"], settings.image_size, settings.max_frames_per_subject,
                    ev["recon"]["samples"]))
        if key not in self._x5:
            from au_lib.train.finetune import take_rows

            table = load_table(ev["dataset"], ev["dataset_options"], ("rgb", "depth", "thermal"),
                               settings.image_size, ev["data_profile"], settings.max_frames_per_subject,
                               stream=settings.stream_frames)
            n = ev["recon"]["samples"]
            idx = np.round(np.linspace(0, len(table) - 1, min(n, len(table)))).astype(int)
            self._x5[key] = take_rows(table.x, idx)
        return self._x5[key]

    def __call__(self, point: Point, ck: Checkpoint, work: Path) -> dict:
        from au_lib.experiments.protocol import run_protocol
        from au_lib.train.finetune import TrainConfig as TC

        ev = point.evaluation
        pd = dict(ev["protocol"])
        for k in ("probe", "finetune", "scratch"):
            pd[k] = TC(**pd[k])
        settings = ProtocolSettings(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in pd.items()})
        if ev["method"].startswith("probe:"):
            modality = "fusion" if ev["method"].endswith(":fusion") else "rgb"
            met, extra = probe_protocol(ck.path, ev["dataset"], dict(ev["dataset_options"]), modality, settings,
                                        ev["data_profile"], device=self.device, progress=self.progress,
                                        resplit=bool(ev.get("resplit", False)), grid=int(ev.get("probe_grid", 1)))
        else:
            res = run_protocol(ev["method"], ev["dataset"], dict(ev["dataset_options"]), checkpoint=str(ck.path),
                               profile=ev["data_profile"], settings=settings, out=work / "protocol.json",
                               device=self.device, progress=self.progress)
            met, extra = res["metrics"], res["extra"]
        hon = met["honest"]
        recon = heldout_reconstruction(ck.path, self._recon_frames(ev, settings), ev["recon"]["mask_ratio"],
                                       ev["recon"]["seed"], self.device)
        return {"aus": met["aus"], "per_au": hon["per_au"], "mean": hon["mean"],
                "std_over_folds": hon["std_over_folds"], "per_fold_mean": hon["per_fold_mean"],
                "std_over_seeds": hon.get("std_over_seeds"),
                "fixed_threshold_mean": met["fixed_threshold"]["mean"],
                "best_epochs": [r["best_epoch"] for r in met["runs"]],
                "recon_heldout": recon, "frames": extra.get("frames"), "subjects": extra.get("subjects")}


def default_dirs(profile: str) -> tuple[Path, Path]:
    """``(results_dir, work_dir)``: ``$AU_RESULTS/ablations/<profile>`` when ``$AU_RESULTS`` is set
    for the ``cpu`` profile (the book's build points it at its committed ``book/results``), else
    ``<cache>/ablations/results/<profile>``; work under ``<cache>/ablations/work/<profile>``."""
    committed = os.environ.get("AU_RESULTS", "").strip()
    res = (Path(committed).expanduser() / "ablations" / profile if committed and profile == "cpu"
           else cache_dir() / "ablations" / "results" / profile)
    return res, cache_dir() / "ablations" / "work" / profile


def run_ablations(sweeps: Sequence[str] = SWEEPS, profile: str | None = None, *,
                  settings: AblationSettings | None = None, results_dir: str | Path | None = None,
                  work_dir: str | Path | None = None, device: torch.device | str | None = None,
                  shard: tuple[int, int] | None = None, reuse: bool = True, progress: bool = True,
                  log=None):
    """Run (or reuse) the requested sweeps with the real MCM pre-training and the AU protocol.

    Returns ``(points, report)``: the merged :class:`~au_lib.experiments.sweep.Point` list and the
    :class:`~au_lib.experiments.sweep.SweepReport`.
    """
    from au_lib.experiments.sweep import run_sweep
    from au_lib.profiles import current_profile
    from au_lib.provenance import choose_device

    profile = profile or current_profile()
    s = settings or ablation_settings(profile)
    res_d, work_d = default_dirs(profile)
    dev = torch.device(device) if device is not None else choose_device()
    pts = all_points(sweeps, s, profile)
    report = run_sweep(pts, results_dir or res_d, work_dir or work_d, MCMPretrain(profile, dev, progress),
                       MCMEvaluate(profile, dev, progress), profile=profile, device=dev, shard=shard,
                       reuse=reuse, progress=progress, log=log)
    return pts, report


def all_present_baseline(settings: AblationSettings, profile: str) -> dict[str, float]:
    """The "every AU present" baseline on exactly the test sets the sweep's probe is scored on
    (``settings.protocol.seeds`` x 3 folds, one partition per seed with ``resplit``): predicting every
    AU in every frame. Returns ``{"mean", "se"}`` in F1 points (%), over those runs."""
    from au_lib.data.registry import dataset_folds
    from au_lib.experiments.protocol import load_table
    from au_lib.metrics import f1_per_au

    p = settings.protocol
    table = load_table(settings.dataset, {"view": settings.view}, ("rgb", "depth", "thermal"), p.image_size, profile,
                       p.max_frames_per_subject, stream=p.stream_frames)
    y = table.au.numpy()
    runs = []
    for seed in p.seeds:
        extra = {"seed": seed} if settings.resplit else {}
        for fold in dataset_folds(settings.dataset, profile=profile, view=settings.view, **extra):
            te = table.rows(fold.test)
            runs.append(100 * f1_per_au(y[te], np.ones((len(te), y.shape[1]))).mean)
    v = np.asarray(runs)
    return {"mean": float(v.mean()), "se": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")}


def curve(rows: Sequence[dict], x: str) -> dict[str, np.ndarray]:
    """Arrays for plotting: ``x`` (a label), ``mean``, ``std`` (over folds) in F1 % and ``n_folds``."""
    rows = sorted(rows, key=lambda r: r["labels"][x])
    return {"x": np.array([r["labels"][x] for r in rows], dtype=float),
            "mean": np.array([100 * r["metrics"]["mean"] for r in rows]),
            "std": np.array([100 * r["metrics"]["std_over_folds"] for r in rows]),
            "n_folds": np.array([len(r["metrics"]["per_fold_mean"]) for r in rows])}


__all__ = ["AblationSettings", "ABLATION_PROFILES", "ablation_settings", "paper_epoch", "sweep_points",
           "all_points", "select", "MCMPretrain", "MCMEvaluate", "heldout_reconstruction", "run_ablations",
           "default_dirs", "curve", "SWEEPS", "all_present_baseline", "initial_checkpoint"]


# ------------------------------------------------------------------------ the paper's claims

PAPER_CLAIMS: dict[str, str] = {
    "epochs": ("Fig. 1a (RGB, 50% mask, pre-trained on BP4D+): \"Performance steadily improved during the "
               "training process and reached its optimum at the 100 epoch.\""),
    "mask-ratio": ("Fig. 1b (fusion, epoch 100, pre-trained on BP4D+): \"Performance is improved as the mask "
                   "ratio is increased, while the optimal ratio is 50%. When the ratio is greater than 50%, "
                   "the f1 score is obviously decreased, because much more detailed information is missed.\""),
}
"""Quoted from the MCM supplementary, Section 1 (no numeric values are given there)."""


def hidden_fraction(mask_ratio: float | np.ndarray, kept_channels: int = 3, channels: int = 5):
    """Fraction of the 5-channel input an MCM encoder does not see: all values of the 2 dropped
    channels plus ``mask_ratio`` of the 3 kept ones, ``1 - (3/5)(1 - r)``. (A plain RGB MAE: ``r``.)"""
    return 1.0 - kept_channels / channels * (1.0 - np.asarray(mask_ratio, dtype=float))


def assess_epochs(rows: Sequence[dict]) -> dict:
    """Numbers behind the verdict on Fig. 1a: best epoch, gain from no pre-training to the end, the
    share of steps that go up, and whether the end is within one fold-spread of the best."""
    c = curve(rows, "epoch")
    steps = np.diff(c["mean"])
    best = int(np.argmax(c["mean"]))
    spread = float(np.mean(c["std"]))
    return {"best_epoch": int(c["x"][best]), "best_f1": float(c["mean"][best]),
            "last_epoch": int(c["x"][-1]), "last_f1": float(c["mean"][-1]), "first_f1": float(c["mean"][0]),
            "gain": float(c["mean"][-1] - c["mean"][0]), "steps_up": int((steps > 0).sum()), "steps": int(len(steps)),
            "fold_std": spread, "best_is_last": best == len(c["x"]) - 1,
            "last_within_spread_of_best": float(c["mean"][best] - c["mean"][-1]) <= spread}


def assess_mask_ratio(rows: Sequence[dict], paper_optimum: float = 0.5) -> dict:
    """Numbers behind the verdict on Fig. 1b: best ratio, F1 at the paper's optimum, the mean drop
    from there to the ratios above it, the rise from the lowest ratio to it."""
    c = curve(rows, "mask_ratio")
    best = int(np.argmax(c["mean"]))
    at = np.isclose(c["x"], paper_optimum)
    f_opt = float(c["mean"][at][0]) if at.any() else float("nan")
    above, below = c["x"] > paper_optimum + 1e-9, c["x"] < paper_optimum - 1e-9
    return {"best_ratio": float(c["x"][best]), "best_f1": float(c["mean"][best]), "f1_at_paper_optimum": f_opt,
            "drop_above": float(f_opt - c["mean"][above].mean()) if above.any() else float("nan"),
            "rise_below": float(f_opt - c["mean"][below].mean()) if below.any() else float("nan"),
            "fold_std": float(np.mean(c["std"]))}


def verdict_epochs(a: dict) -> str:
    """A one-line, computed comparison with the paper's Fig. 1a statement."""
    rises = a["gain"] > a["fold_std"]
    steady = a["steps_up"] >= max(1, a["steps"] - 1)
    if a["best_is_last"] and rises and steady:
        word = "agrees"
    elif rises and a["last_within_spread_of_best"]:
        word = "partly agrees (F1 rises overall, but not at every step / the best is not the last epoch)"
    else:
        word = "does not agree"
    return (f"ours {word}: F1 {a['first_f1']:.1f} at epoch 0 -> {a['last_f1']:.1f} at the end "
            f"(best {a['best_f1']:.1f} at our epoch {a['best_epoch']}); {a['steps_up']}/{a['steps']} steps up; "
            f"mean fold spread {a['fold_std']:.1f}")


def verdict_mask_ratio(a: dict, paper_optimum: float = 0.5) -> str:
    """A one-line, computed comparison with the paper's Fig. 1b statement."""
    drop = a["drop_above"] > a["fold_std"]
    if np.isclose(a["best_ratio"], paper_optimum) and drop:
        word = "agrees"
    elif drop or np.isclose(a["best_ratio"], paper_optimum):
        word = "partly agrees"
    else:
        word = "does not agree"
    return (f"ours {word}: best ratio {a['best_ratio']:g} (F1 {a['best_f1']:.1f}); at {paper_optimum:g}: "
            f"{a['f1_at_paper_optimum']:.1f}; mean drop to the higher ratios {a['drop_above']:+.1f}, "
            f"gain over the lower ones {a['rise_below']:+.1f}; mean fold spread {a['fold_std']:.1f}")


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (ties averaged)."""
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


# ------------------------------------------------------------------------ verdicts with intervals

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"


@dataclass(frozen=True)
class Verdict:
    """The computed verdict on one claim of the paper.

    status: ``supported``, ``contradicted`` or ``inconclusive``; reasons: the tests behind it, in
    words, with their numbers; numbers: the same as a dict (F1 in the units of the curve, z scores).
    """

    claim: str
    status: str
    reasons: tuple[str, ...]
    numbers: dict


def curve_se(rows: Sequence[dict], x: str) -> dict[str, np.ndarray]:
    """:func:`curve` plus ``se``: the standard error of each point's mean F1 (%) over its runs
    (folds x seeds), ``sample std / sqrt(n)``; NaN where a point has a single run."""
    c = curve(rows, x)
    runs = [np.asarray(100 * np.asarray(r["metrics"]["per_fold_mean"], dtype=float))
            for r in sorted(rows, key=lambda r: r["labels"][x])]
    c["se"] = np.array([np.std(v, ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.nan for v in runs])
    return c


def _check(x, mean, se) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, mean, se = (np.asarray(v, dtype=float) for v in (x, mean, se))
    if not (x.shape == mean.shape == se.shape) or x.ndim != 1 or len(x) < 3:
        raise ValueError(f"a curve needs x, mean and se of one equal length >= 3, got {x.shape}, {mean.shape}, {se.shape}")
    if not np.all(np.isfinite(se)) or np.any(se <= 0):
        raise ValueError("every point needs a positive, finite standard error (more than one fold or seed)")
    order = np.argsort(x)
    return x[order], mean[order], se[order]


def weighted_trend(x, mean, se) -> tuple[float, float]:
    """Inverse-variance weighted least-squares slope of ``mean`` on ``x`` and its standard error
    (F1 per unit of ``x``)."""
    x, mean, se = (np.asarray(v, dtype=float) for v in (x, mean, se))
    w = 1.0 / se ** 2
    xm = np.sum(w * x) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = float(np.sum(w * (x - xm) * (mean - np.sum(w * mean) / np.sum(w))) / sxx)
    return slope, float(1.0 / np.sqrt(sxx))


def _power_note(se: np.ndarray, max_se: float | None) -> list[str]:
    if max_se is not None and np.max(se) > max_se:
        return [f"underpowered: the largest standard error is {np.max(se):.2f} F1 points (> {max_se:g})"]
    return []


def verdict_rises_to_last(x, mean, se, *, z: float = 1.96, max_se: float | None = 1.0) -> Verdict:
    """Fig. 1a's claim, "F1 rises with pre-training and is best at the last epoch", from a measured
    curve (``x`` epochs, ``mean`` F1 and its standard error ``se`` per point).

    - supported: the inverse-variance weighted trend is significantly positive (slope / SE > ``z``)
      and the last point is not significantly below the best one ((best - last) / SE < ``z``);
    - contradicted: the last point is significantly below the best (the optimum is earlier), or the
      trend is significantly negative;
    - inconclusive: otherwise (e.g. a curve flat within its noise).

    The best point is chosen on the data, so the "below the best" test is slightly liberal; a
    contradiction is only declared when the gap exceeds ``z`` standard errors of the difference.
    """
    x, mean, se = _check(x, mean, se)
    slope, slope_se = weighted_trend(x, mean, se)
    best = int(np.argmax(mean))
    gap = float(mean[best] - mean[-1])
    gap_z = gap / float(np.hypot(se[best], se[-1])) if best != len(x) - 1 else 0.0
    trend_z = slope / slope_se
    nums = {"slope_per_unit": slope, "slope_se": slope_se, "trend_z": trend_z, "best_x": float(x[best]),
            "best": float(mean[best]), "last_x": float(x[-1]), "last": float(mean[-1]), "gap_best_minus_last": gap,
            "gap_z": gap_z, "max_se": float(np.max(se)), "z": z}
    reasons = [f"weighted trend {slope * (x[-1] - x[0]):+.2f} F1 over the range (z = {trend_z:+.2f})",
               f"best {mean[best]:.2f} at {x[best]:g}, last {mean[-1]:.2f} at {x[-1]:g} (gap z = {gap_z:.2f})"]
    if gap_z > z:
        status = CONTRADICTED
        reasons.append(f"the last point is significantly below the best at {x[best]:g}")
    elif trend_z < -z:
        status = CONTRADICTED
        reasons.append("F1 falls significantly with pre-training")
    elif trend_z > z:
        status = SUPPORTED
        reasons.append("F1 rises significantly and the last point is not significantly below the best")
    else:
        status = INCONCLUSIVE
        reasons.append("no significant trend: the curve is flat within its standard errors")
    return Verdict("F1 rises with pre-training epochs up to the last one (Fig. 1a)", status,
                   tuple(reasons + _power_note(se, max_se)), nums)


def _diff_z(a: float, se_a: float, b: np.ndarray, se_b: np.ndarray) -> tuple[float, float]:
    """``a - mean(b)`` and its z score (independent points)."""
    d = float(a - np.mean(b))
    s = float(np.sqrt(se_a ** 2 + np.sum(se_b ** 2) / len(b) ** 2))
    return d, d / s


def verdicts_mask_ratio(x, mean, se, *, optimum: float = 0.5, z: float = 1.96,
                        max_se: float | None = 1.0) -> dict[str, Verdict]:
    """Fig. 1b's claims from a measured curve of F1 against the mask ratio (``mean`` with ``se``):

    - ``optimum``: "the optimal ratio is 50 %". Contradicted if some other ratio is significantly
      above the one at ``optimum`` (z > ``z``, naming it); supported if ``optimum`` is the best point
      and significantly above at least one ratio on each side (an interior peak, not a plateau);
      else inconclusive.
    - ``falls_above``: "above 50 % F1 decreases": the F1 at ``optimum`` minus the mean over the
      higher ratios, supported if significantly positive, contradicted if significantly negative.
    - ``rises_below``: "performance improves as the ratio increases" up to ``optimum``: the same
      difference against the lower ratios.
    """
    x, mean, se = _check(x, mean, se)
    at = np.flatnonzero(np.isclose(x, optimum))
    if len(at) != 1:
        raise ValueError(f"the curve has no point at the claimed optimum {optimum:g} (x = {x.tolist()})")
    i = int(at[0])
    above, below = x > optimum + 1e-9, x < optimum - 1e-9
    z_vs = {float(x[j]): float((mean[j] - mean[i]) / np.hypot(se[j], se[i])) for j in range(len(x)) if j != i}
    best = int(np.argmax(mean))
    power = _power_note(se, max_se)
    out: dict[str, Verdict] = {}

    better = {r: v for r, v in z_vs.items() if v > z}
    reasons = [f"F1 {mean[i]:.2f} at {optimum:g}; best {mean[best]:.2f} at {x[best]:g}"]
    if better:
        top = max(better, key=better.get)
        status = CONTRADICTED
        reasons.append(f"ratio {top:g} is significantly better than {optimum:g} (z = {better[top]:.2f})")
    elif best == i and any(z_vs[float(r)] < -z for r in x[below]) and any(z_vs[float(r)] < -z for r in x[above]):
        status = SUPPORTED
        reasons.append(f"{optimum:g} is the best point and significantly above ratios on both sides")
    else:
        status = INCONCLUSIVE
        reasons.append(f"no ratio is significantly better than {optimum:g}, but {optimum:g} is not a significant "
                       f"interior peak either")
    out["optimum"] = Verdict(f"the optimal mask ratio is {optimum:g} (Fig. 1b)", status, tuple(reasons + power),
                             {"best_x": float(x[best]), "best": float(mean[best]), "at_optimum": float(mean[i]),
                              "z_vs_optimum": z_vs, "max_se": float(np.max(se)), "z": z})

    for key, side, claim in (("falls_above", above, f"F1 falls above a ratio of {optimum:g} (Fig. 1b)"),
                             ("rises_below", below, f"F1 rises with the ratio up to {optimum:g} (Fig. 1b)")):
        if not side.any():
            out[key] = Verdict(claim, INCONCLUSIVE, (f"no measured ratio on that side of {optimum:g}",), {})
            continue
        d, dz = _diff_z(mean[i], se[i], mean[side], se[side])
        where = "higher" if key == "falls_above" else "lower"
        reasons = [f"F1 at {optimum:g} minus the mean over the {where} ratios: {d:+.2f} (z = {dz:+.2f})"]
        if dz > z:
            status, note = SUPPORTED, f"the {where} ratios score significantly lower"
        elif dz < -z:
            status, note = CONTRADICTED, f"the {where} ratios score significantly higher"
        else:
            status, note = INCONCLUSIVE, "the difference is within the standard errors"
        out[key] = Verdict(claim, status, tuple(reasons + [note] + power),
                           {"difference": d, "z_score": dz, "max_se": float(np.max(se)), "z": z})
    return out


def verdicts_from_rows(epoch_rows: Sequence[dict] | None = None, ratio_rows: Sequence[dict] | None = None, *,
                       z: float = 1.96, max_se: float | None = 1.0) -> dict[str, Verdict]:
    """The verdicts on the paper's Fig. 1 claims from loaded sweep results (:func:`select` rows):
    ``epochs`` (:func:`verdict_rises_to_last`) and ``optimum``/``falls_above``/``rises_below``
    (:func:`verdicts_mask_ratio`), each point's standard error taken over its folds and seeds."""
    out: dict[str, Verdict] = {}
    if epoch_rows:
        c = curve_se(epoch_rows, "epoch")
        out["epochs"] = verdict_rises_to_last(c["x"], c["mean"], c["se"], z=z, max_se=max_se)
    if ratio_rows:
        c = curve_se(ratio_rows, "mask_ratio")
        out.update(verdicts_mask_ratio(c["x"], c["mean"], c["se"], z=z, max_se=max_se))
    return out


__all__ += ["Verdict", "curve_se", "weighted_trend", "verdict_rises_to_last", "verdicts_mask_ratio",
            "verdicts_from_rows", "SUPPORTED", "CONTRADICTED", "INCONCLUSIVE"]

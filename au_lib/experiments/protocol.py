"""The AU detection protocol every chapter and ablation uses: 3 subject-exclusive folds, honest selection.

For each seed and each of the dataset's three folds (from :func:`au_lib.data.registry.dataset_folds`):

1. carve validation subjects out of the fold's *training* subjects
   (:func:`au_lib.data.folds.validation_split`); in a label-scarce setting
   (``label_fraction``) only a seeded subset of whole training subjects is labelled
   (:func:`au_lib.data.folds.labelled_subset`) and validation comes out of that subset;
2. train the classifier on the rest with the class-weighted masked BCE (weights from the training
   split only), keeping the epoch with the best validation mean F1 (early stopping);
3. choose one threshold per AU on the validation frames (:func:`au_lib.metrics.choose_thresholds`);
4. score the untouched test fold: per-AU F1 with the validation thresholds (the headline number),
   and at the fixed threshold 0.5.

Public code often picks the epoch and the threshold *on the test fold*. So that its effect can be
shown, each fold also records that optimistic number (best epoch and per-AU thresholds chosen on the
test labels), always under the key ``test_tuned``; nothing in steps 1-4 depends on it.

The methods (``probe:mcm``, ``scratch:vit``, ``finetune:mcm:fusion``...) are parsed and built in
:mod:`au_lib.experiments.methods`; results are read with :mod:`au_lib.experiments.analysis`.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from au_lib.cache import load_cached_torch
from au_lib.data.folds import Fold, labelled_subset, validation_split
from au_lib.experiments.methods import Method, checkpoint_sha, make_extractor, make_network
from au_lib.metrics import choose_thresholds, class_weights, f1_per_au
from au_lib.profiles import current_profile, pick
from au_lib.train.finetune import FrameTable, TrainConfig, extract_features, fit, materialize, predict


@dataclass(frozen=True)
class ProtocolSettings:
    """Sizes of one protocol run (a row of :data:`PROTOCOL_PROFILES`)."""

    image_size: int
    seeds: tuple[int, ...]
    probe: TrainConfig
    finetune: TrainConfig
    scratch: TrainConfig
    val_fraction: float = 0.2
    drop_path: float = 0.1
    max_frames_per_subject: int | None = None  # evenly spaced subsample (keeps cpu runs short)
    feature_batch: int = 128
    fusion_subsets: tuple[str, ...] = ("RGB", "RGD", "RGT", "RDT", "GDT", "BDT")
    report_test_tuned: bool = True
    label_fraction: float | None = None  # label-scarce: keep this fraction of each fold's training subjects (seeded)
    stream_frames: bool = False  # read frames from memory-mapped files on disk instead of memory (real data at 224 px)
    amp: bool | str = True  # training autocast: True = bf16 on CUDA, fp32 on CPU (as pre-training); "bf16" also on CPU


PROTOCOL_PROFILES: dict[str, ProtocolSettings] = {
    "smoke": ProtocolSettings(
        image_size=32, seeds=(0,), max_frames_per_subject=12,
        probe=TrainConfig(epochs=40, batch_size=32, lr=3e-2, weight_decay=1e-4, layer_decay=1.0,
                          warmup_epochs=0, patience=40, flip=False),
        finetune=TrainConfig(epochs=2, batch_size=32, lr=1e-3, layer_decay=0.75, warmup_epochs=0.5, patience=2),
        scratch=TrainConfig(epochs=2, batch_size=32, lr=1e-3, layer_decay=1.0, warmup_epochs=0.5, patience=2)),
    # Sized so that the networks learn (issue 14's one-fold pilots, 1 thread: at 10 frames per subject
    # and 5 epochs the ViT sat at the all-present baseline, as every network did in the SynthAU v2
    # chapter; at 32 and 10 epochs the ResNet-18 scored 80 and the fine-tuned MCM 58 against 48):
    # 16 frames per subject, 10 epochs, no early stop before the end; fusion averages two channel
    # subsets. The detection chapter's runs take about 3.3 hours of one thread: far above a chapter's
    # 30 minutes, so a reader's chapter reuses stored results.
    "cpu": ProtocolSettings(
        image_size=64, seeds=(0,), max_frames_per_subject=16, fusion_subsets=("RGB", "RDT"),
        probe=TrainConfig(epochs=60, batch_size=64, lr=1e-2, weight_decay=1e-4, layer_decay=1.0,
                          warmup_epochs=1, patience=20, flip=False),
        finetune=TrainConfig(epochs=10, batch_size=32, lr=1e-3, layer_decay=0.75, warmup_epochs=1, patience=10),
        scratch=TrainConfig(epochs=10, batch_size=32, lr=1e-3, layer_decay=1.0, warmup_epochs=1, patience=10)),
    "paper": ProtocolSettings(
        image_size=224, seeds=(0, 1, 2), max_frames_per_subject=None, fusion_subsets=(),  # () = all 10
        stream_frames=True,  # real BP4D at 224 px is ~88 GB as float32: stream it from disk
        probe=TrainConfig(epochs=90, batch_size=256, lr=1e-3, weight_decay=0.0, layer_decay=1.0,
                          warmup_epochs=2, patience=15, flip=False),
        finetune=TrainConfig(epochs=30, batch_size=64, lr=5e-4, weight_decay=0.05, layer_decay=0.65,
                             warmup_epochs=3, patience=6),
        scratch=TrainConfig(epochs=30, batch_size=64, lr=5e-4, weight_decay=0.05, layer_decay=1.0,
                            warmup_epochs=3, patience=6)),
}


def protocol_settings(profile: str | None = None, **overrides) -> ProtocolSettings:
    """The protocol row of ``profile`` (default ``$AU_PROFILE``) with field overrides."""
    return pick(PROTOCOL_PROFILES, profile, **overrides)


# --------------------------------------------------------------------------------------------
# One fold
# --------------------------------------------------------------------------------------------

def training_weights(labels: np.ndarray, aus: Sequence[int]) -> np.ndarray:
    """JAA-Net/ME-GraphAU weights (:func:`au_lib.metrics.class_weights`) of the training labels.

    An AU that never occurs in a (tiny) training split would get an infinite weight; it is counted
    as if it occurred once (rate ``1/N_known``), with a warning naming it, instead of failing the run.
    """
    import warnings

    from au_lib.metrics import known_mask

    known = known_mask(labels)
    pos = ((labels == 1) & known).sum(0)
    if (pos > 0).all():
        return class_weights(labels, aus)
    missing = [f"AU{a}" for a, p in zip(aus, pos) if p == 0]
    warnings.warn(f"{', '.join(missing)} never occur(s) in this training split; weighted as one occurrence",
                  stacklevel=2)
    rate = np.maximum(pos, 1) / np.maximum(known.sum(0), 1)
    inv = 1.0 / rate
    return inv / inv.sum() * len(rate)


@dataclass
class FoldOutcome:
    """Everything one (seed, fold) run produced. F1 values in [0, 1]."""

    fold: int
    seed: int
    val_subjects: tuple[str, ...]
    best_epoch: int
    thresholds: np.ndarray  # (A,) chosen on validation
    f1: np.ndarray  # (A,) test F1 with validation thresholds (headline)
    f1_fixed: np.ndarray  # (A,) test F1 at 0.5
    f1_test_tuned: np.ndarray | None  # (A,) epoch and thresholds chosen on test labels (optimistic)
    test_tuned_epoch: int | None
    history: list[dict]
    test_rows: np.ndarray  # indices into the FrameTable
    test_scores: np.ndarray  # (n_test, A) probabilities
    train_subjects: tuple[str, ...] | None = None  # the subjects trained on (after any label fraction)

    def summary(self) -> dict:
        nan = lambda a: [None if not np.isfinite(v) else float(v) for v in a]  # noqa: E731
        return {"fold": self.fold, "seed": self.seed, "val_subjects": list(self.val_subjects),
                "train_subjects": None if self.train_subjects is None else list(self.train_subjects),
                "best_epoch": self.best_epoch, "thresholds": self.thresholds.tolist(),
                "f1": nan(self.f1), "mean": float(np.nanmean(self.f1)),
                "f1_fixed": nan(self.f1_fixed), "mean_fixed": float(np.nanmean(self.f1_fixed)),
                "f1_test_tuned": None if self.f1_test_tuned is None else nan(self.f1_test_tuned),
                "mean_test_tuned": None if self.f1_test_tuned is None else float(np.nanmean(self.f1_test_tuned)),
                "test_tuned_epoch": self.test_tuned_epoch, "history": self.history}


def _inputs(table: FrameTable, method: Method) -> torch.Tensor:
    """The network input: RGB, or for fusion the 5 channels R,G,B,D,T."""
    if method.modality == "rgb":
        return table.x[:, :3]
    need = ("r", "g", "b", "depth", "thermal")
    missing = [c for c in need if c not in table.channels]
    if missing:
        raise ValueError(f"fusion needs depth and thermal; this dataset has channels {table.channels}")
    return table.x[:, [table.channels.index(c) for c in need]]


def run_fold(table: FrameTable, fold: Fold, method: Method, settings: ProtocolSettings, *, seed: int = 0,
             features: torch.Tensor | None = None, device: torch.device | str = "cpu",
             progress: bool = False, profile: str | None = None, checkpoint: Path | None = None,
             save_detector: str | Path | None = None) -> FoldOutcome:
    """Train and evaluate one fold (see the module docstring for the steps).

    ``features`` (``(N, D)``, rows of ``table``) is required for probes. The test fold's labels are
    read only after training and threshold selection, and only to score. ``save_detector``: also write
    the trained classifier with its thresholds as a detector file there (:mod:`au_lib.experiments.export`).
    """
    labelled = labelled_subset(fold.train, settings.label_fraction, seed=(seed, fold.index))
    tr_subj, val_subj = validation_split(labelled, settings.val_fraction, seed=seed + fold.index)
    tr, va, te = table.rows(tr_subj), table.rows(val_subj), table.rows(fold.test)
    if set(table.subject[te]) & set(table.subject[np.concatenate([tr, va])]):
        raise RuntimeError(f"fold {fold.index}: test subjects leak into training")  # pragma: no cover
    x = features if method.kind == "probe" else _inputs(table, method)
    if x is None:
        raise ValueError("a probe needs features: pass features=extract_features(...)")
    y = table.au
    weights = training_weights(y[tr].numpy(), table.aus)
    if method.kind == "probe":
        from au_lib.models.heads import LinearProbe

        cfg = settings.probe
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model: nn.Module = LinearProbe(x.shape[1], len(table.aus))
    else:
        cfg = settings.finetune if method.kind == "finetune" else settings.scratch
        model = make_network(method, len(table.aus), settings, profile=profile, seed=seed)

    monitor = None
    if settings.report_test_tuned:
        x_te, y_te = x[te], y[te].numpy()

        def monitor(m: nn.Module, epoch: int) -> dict:  # reported, never used to select
            s = predict(m, x_te, device=device)
            thr = choose_thresholds(y_te, s)
            return {"test_f1_fixed": f1_per_au(y_te, s).mean,
                    "test_tuned_f1": f1_per_au(y_te, s, thr).mean,
                    "_test_tuned_per_au": f1_per_au(y_te, s, thr).per_au.tolist()}

    res = fit(model, (x[tr], y[tr]), (x[va], y[va]), cfg, weights=weights, seed=seed * 1000 + fold.index,
              device=device, checkpoint=checkpoint, monitor=monitor, progress=progress,
              desc=f"{method.name} fold {fold.index}", amp=settings.amp)
    val_scores = predict(res.model, x[va], device=device)
    thresholds = choose_thresholds(y[va].numpy(), val_scores)
    test_scores = predict(res.model, x[te], device=device)
    y_te = y[te].numpy()
    f1 = f1_per_au(y_te, test_scores, thresholds).per_au
    f1_fixed = f1_per_au(y_te, test_scores).per_au
    if save_detector is not None:
        from au_lib.experiments.export import save_fold_detector

        save_fold_detector(save_detector, res.model, method, table, settings, profile=profile, fold=fold.index,
                           seed=seed, val_subjects=val_subj, thresholds=thresholds, test_f1=f1, test_subjects=fold.test)
    tuned, tuned_epoch = None, None
    hist = [{k: v for k, v in h.items() if not k.startswith("_")} for h in res.history]
    if settings.report_test_tuned and res.history:
        best = max(res.history, key=lambda h: h["test_tuned_f1"])
        tuned, tuned_epoch = np.asarray(best["_test_tuned_per_au"], dtype=float), int(best["epoch"])
    return FoldOutcome(fold=fold.index, seed=seed, val_subjects=tuple(val_subj), best_epoch=res.best_epoch,
                       thresholds=thresholds, f1=f1, f1_fixed=f1_fixed, f1_test_tuned=tuned,
                       test_tuned_epoch=tuned_epoch, history=hist, test_rows=te, test_scores=test_scores,
                       train_subjects=tuple(tr_subj))


# --------------------------------------------------------------------------------------------
# Data and features, loaded once
# --------------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """The package's cache folder (:func:`au_lib.cache.cache_root`)."""
    from au_lib.cache import cache_root

    return cache_root()


def subsample(table: FrameTable, per_subject: int | None) -> FrameTable:
    """Keep at most ``per_subject`` evenly spaced frames of each subject (deterministic)."""
    if per_subject is None:
        return table
    keep = []
    for s in dict.fromkeys(table.subject.tolist()):
        idx = np.flatnonzero(table.subject == s)
        if len(idx) > per_subject:
            idx = idx[np.round(np.linspace(0, len(idx) - 1, per_subject)).astype(int)]
        keep.append(idx)
    k = np.sort(np.concatenate(keep))
    return replace(table, x=table.x[k], au=table.au[k], subject=table.subject[k],
                   au_intensity=None if table.au_intensity is None else table.au_intensity[k],
                   sequence=None if table.sequence is None else table.sequence[k],
                   frame=None if table.frame is None else table.frame[k])


def open_for_protocol(dataset: str, dataset_options: dict, modalities: Sequence[str], image_size: int,
                      profile: str):
    """Open ``dataset`` (all subjects) through the registry; returns ``(dataset, fingerprint)``.

    The fingerprint identifies the data version so cached tables and results are not reused across
    versions: the dataset's own ``fingerprint`` when it has one (prepared data: a hash of its
    ``index.csv`` and ``prepare.json`` content, so re-prepared labels with the same frame count get a
    new key), else the folder name (SynthAU's holds a hash of its generator settings) and row count.
    """
    from au_lib.data.registry import open_dataset

    ds = open_dataset(dataset, modalities=tuple(modalities), image_size=image_size, profile=profile,
                      **dataset_options)
    own = getattr(ds, "fingerprint", None)
    if isinstance(own, str) and own:
        return ds, own
    folder = getattr(ds, "folder", None) or getattr(ds, "root", None)
    return ds, f"{Path(folder).name if folder else type(ds).__name__}:{len(ds)}"


def table_key(dataset: str, dataset_options: dict, modalities: Sequence[str], image_size: int, profile: str,
              per_subject: int | None, fingerprint: str) -> str:
    """The cache key of a protocol frame table (in memory or streamed): what was read, and which data version."""
    from au_lib.results import config_key

    return config_key({"dataset": dataset, "options": dataset_options, "modalities": list(modalities),
                       "image_size": image_size, "profile": profile, "per_subject": per_subject,
                       "data": fingerprint})


def load_table(dataset: str, dataset_options: dict, modalities: Sequence[str], image_size: int,
               profile: str, per_subject: int | None, progress: bool = False, cache: bool = True,
               stream: bool = False) -> FrameTable:
    """Open ``dataset`` through the registry (all subjects) and return its frames, subsampled.

    In memory (default): the frames are read into one tensor, cached on disk as a ``.pt`` file. With
    ``stream=True`` they are written once to memory-mapped arrays in
    ``<cache>/detection/frames/<dataset>-<key>.frames/`` (:func:`au_lib.train.finetune.materialize_to_disk`)
    and the table's ``x`` is a lazy :class:`~au_lib.train.finetune.FrameArray`: memory holds the
    labels and one batch of frames at a time, whatever the dataset's size. Both give the same values
    when the data are 8-bit RGB / 16-bit depth and thermal (SynthAU, prepared crops at their size).
    """
    from au_lib.data.registry import dataset_module
    from au_lib.provenance import atomic_torch_save
    from au_lib.train.finetune import materialize_to_disk, open_frame_folder

    ds, fingerprint = open_for_protocol(dataset, dataset_options, modalities, image_size, profile)
    key = table_key(dataset, dataset_options, modalities, image_size, profile,
                    None if stream else per_subject, fingerprint)
    aus = getattr(ds, "aus", None) or getattr(dataset_module(dataset), "AUS", None)
    if stream:  # every frame on disk (written once), subsampled as a view
        folder = cache_dir() / "detection" / "frames" / f"{dataset}-{key}.frames"
        if cache and (folder / "meta.pt").is_file():
            table = open_frame_folder(folder)
        else:
            table = materialize_to_disk(ds, folder, modalities, aus=aus, progress=progress)
        return subsample(table, per_subject)
    path = cache_dir() / "detection" / "frames" / f"{dataset}-{key}.pt"
    if cache and (hit := load_cached_torch(path, what="frame table cache", check=lambda d: FrameTable(**d))) is not None:
        return FrameTable(**hit)
    table = subsample(materialize(ds, modalities, aus=aus, progress=progress), per_subject)
    if cache:
        atomic_torch_save(asdict(table), path)
    return table


# --------------------------------------------------------------------------------------------
# The whole protocol
# --------------------------------------------------------------------------------------------

def aggregate(outcomes: Sequence[FoldOutcome], aus: Sequence[int]) -> dict:
    """Per-AU and mean F1 averaged over folds (then seeds), with spreads. Values in [0, 1]."""
    def block(get) -> dict:
        arr = np.array([get(o) for o in outcomes], dtype=float)  # (runs, A)
        seeds = sorted({o.seed for o in outcomes})
        per_seed = np.array([np.nanmean(arr[[o.seed == s for o in outcomes]], 0) for s in seeds])
        fold_means = np.nanmean(arr, 1)
        return {"per_au": np.nanmean(per_seed, 0).tolist(), "mean": float(np.nanmean(per_seed)),
                "std_over_folds": float(np.std(fold_means)),
                "std_over_seeds": float(np.std(np.nanmean(per_seed, 1))) if len(seeds) > 1 else None,
                "per_fold_mean": fold_means.tolist()}

    out = {"aus": list(aus), "honest": block(lambda o: o.f1), "fixed_threshold": block(lambda o: o.f1_fixed),
           "runs": [o.summary() for o in outcomes]}
    if all(o.f1_test_tuned is not None for o in outcomes):
        out["test_tuned"] = block(lambda o: o.f1_test_tuned)
    return out


def result_path(dataset: str, dataset_options: dict, method: Method, profile: str, root: Path | None = None,
                tag: str | None = None) -> Path:
    """Default result file: ``<cache>/results/detection/<profile>/<dataset>[-<view>]-<method>[-<tag>].json``
    (``tag`` tells apart runs of one method with different checkpoints, e.g. ``init``)."""
    view = dataset_options.get("view")
    stem = f"{dataset}{'-' + str(view) if view else ''}-{method.name.replace(':', '_')}{'-' + tag if tag else ''}"
    return (root or cache_dir() / "results" / "detection" / profile) / f"{stem}.json"


def run_protocol(method: Method | str, dataset: str = "synthau", dataset_options: dict | None = None, *,
                 checkpoint: str | None = None, profile: str | None = None, settings: ProtocolSettings | None = None,
                 out: str | Path | None = None, device: torch.device | str | None = None,
                 progress: bool = True, reuse: bool = True, folds: Sequence[Fold] | None = None,
                 save_detector: str | Path | None = None, tag: str | None = None) -> dict:
    """Run the whole protocol for ``method`` on ``dataset`` and write a result file; return it loaded.

    The file is ``out``, else :func:`result_path` (with ``tag`` in its name: one method run from two
    checkpoints, such as a pre-trained encoder and its initial weights, needs two tags or two files).

    Re-running with the same config returns the stored result (:func:`au_lib.results.reusable`).
    Test-fold predictions are saved beside it (``.preds.npz``) for error analysis. ``save_detector``:
    write the classifier of the first seed's first fold as a detector file there (that fold is
    retrained if its outcome was cached without one).
    """
    from au_lib.data.registry import dataset_folds
    from au_lib.provenance import atomic_write_bytes, choose_device, make_provenance, timed
    from au_lib.results import config_key, load_result, reusable, save_result

    profile = profile or current_profile()
    settings = settings or protocol_settings(profile)
    dataset_options = dict(dataset_options or {})
    m = Method.parse(method, checkpoint) if isinstance(method, str) else method
    device = torch.device(device) if device is not None else choose_device()
    folds = list(folds) if folds is not None else list(dataset_folds(dataset, profile=profile, **dataset_options))
    _, fingerprint = open_for_protocol(dataset, dataset_options, m.modalities, settings.image_size, profile)
    config = {"task": "au-detection", "method": m.name, "checkpoint_sha": checkpoint_sha(m.checkpoint),
              "dataset": dataset, "dataset_options": dataset_options, "data": fingerprint, "profile": profile,
              "settings": asdict(settings), "folds": [asdict(f) for f in folds]}
    path = Path(out) if out is not None else result_path(dataset, dataset_options, m, profile, tag=tag)
    preds_path = path.with_suffix(".preds.npz")
    if reuse and (hit := reusable(path, config)) is not None and preds_path.exists() and (
            save_detector is None or Path(save_detector).is_file()):
        return hit
    work_dir = path.parent / "work" / f"{path.stem}-{config_key(config)}"
    with timed() as t:
        table = load_table(dataset, dataset_options, m.modalities, settings.image_size, profile,
                           settings.max_frames_per_subject, progress=progress, stream=settings.stream_frames)
        table.meta["source"] = {"dataset": dataset, "options": dataset_options, "data": fingerprint}
        features = None
        outcomes = []
        for seed in settings.seeds:
            if m.kind == "probe":
                features = probe_features(table, m, settings, seed=seed, device=device, progress=progress,
                                          profile=profile)
            for fold in folds:
                first = not outcomes
                outcomes.append(_resumable_fold(table, fold, m, settings, seed, features, device, progress, profile,
                                                work_dir / f"seed{seed}-fold{fold.index}",
                                                save_detector if first else None))
    metrics = aggregate(outcomes, table.aus)
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, rows=np.concatenate([o.test_rows for o in outcomes]),
                        scores=np.concatenate([o.test_scores for o in outcomes]),
                        fold=np.concatenate([np.full(len(o.test_rows), o.fold) for o in outcomes]),
                        seed=np.concatenate([np.full(len(o.test_rows), o.seed) for o in outcomes]),
                        thresholds=np.stack([o.thresholds for o in outcomes]))
    atomic_write_bytes(preds_path, buf.getvalue())
    save_result(path, config, metrics, make_provenance(profile, t["seconds"], device),
                extra={"frames": len(table), "subjects": len(set(table.subject.tolist())),
                       "channels": list(table.channels), "preds": preds_path.name})
    shutil.rmtree(work_dir, ignore_errors=True)
    return load_result(path)


def _resumable_fold(table, fold, method, settings, seed, features, device, progress, profile,
                    stem: Path, save_detector: str | Path | None = None) -> FoldOutcome:
    """:func:`run_fold` with resume: a finished fold is read back from ``stem.outcome.pt``; an
    interrupted one resumes from its last epoch checkpoint, which is deleted once the fold is done.
    Both are work files: a damaged one is reported, deleted and the fold recomputed."""
    import warnings

    from au_lib.cache import DamagedFileError
    from au_lib.provenance import atomic_torch_save

    done, ckpt = stem.with_suffix(".outcome.pt"), stem.with_suffix(".ckpt.pt")
    if save_detector is None or Path(save_detector).is_file():
        if (hit := load_cached_torch(done, what="finished fold", check=lambda d: FoldOutcome(**d))) is not None:
            return FoldOutcome(**hit)
    stem.parent.mkdir(parents=True, exist_ok=True)
    kw = dict(seed=seed, features=features, device=device, progress=progress, profile=profile, checkpoint=ckpt,
              save_detector=save_detector)
    try:
        out = run_fold(table, fold, method, settings, **kw)
    except DamagedFileError as exc:
        if exc.path != ckpt:
            raise
        warnings.warn(f"{exc}; restarting the fold", stacklevel=2)
        ckpt.unlink(missing_ok=True)
        out = run_fold(table, fold, method, settings, **kw)
    atomic_torch_save(asdict(out), done)
    ckpt.unlink(missing_ok=True)
    return out


def _pixel_sum(x) -> float:
    """float64 sum of the frames (a tensor, or a streamed FrameArray read in chunks)."""
    return float(x.double().sum()) if isinstance(x, torch.Tensor) else x.channel_sum()


def _rows(n: int):
    """A cache check: a 2-D tensor with ``n`` rows."""
    def check(t) -> None:
        if not isinstance(t, torch.Tensor) or t.ndim != 2 or len(t) != n:
            raise ValueError(f"expected a 2-D tensor of {n} rows, got {type(t).__name__}")
    return check


def probe_features(table: FrameTable, method: Method, settings: ProtocolSettings, *, seed: int = 0,
                   device: torch.device | str = "cpu", progress: bool = False, profile: str | None = None,
                   cache: bool = True) -> torch.Tensor:
    """Frozen features ``(N, D)`` of every frame of ``table``, extracted once and cached on disk."""
    from au_lib.provenance import atomic_torch_save
    from au_lib.results import config_key

    key = config_key({"extractor": method.backbone, "ckpt": checkpoint_sha(method.checkpoint), "seed": seed,
                      "n": len(table), "x": _pixel_sum(table.x[:, :3]), "size": settings.image_size,
                      "profile": profile})
    path = cache_dir() / "detection" / "features" / f"{method.backbone}-{key}.pt"
    if cache and (hit := load_cached_torch(path, what="feature cache", check=_rows(len(table)))) is not None:
        return hit
    ext = make_extractor(method.backbone, image_size=settings.image_size, checkpoint=method.checkpoint,
                         seed=seed, profile=profile).to(device)
    feats = extract_features(ext, table.x[:, :3], settings.feature_batch, device=device, progress=progress)
    if cache:
        atomic_torch_save(feats, path)
    return feats

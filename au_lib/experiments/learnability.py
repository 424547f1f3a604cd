"""Can a model see the AUs? A supervised bar for SynthAU, and a linear probe on raw pixels.

``run_learnability(view)`` trains a small ResNet from scratch (torchvision, random initialisation) on the
training subjects of fold 1 of a SynthAU view, chooses per-AU thresholds on validation subjects carved
from the training subjects, and scores the held-out test subjects (per-AU F1, pooled frames). Beside
it: a logistic-regression probe on 32x32 grey pixels (same split, same threshold rule), the
"every AU present" baseline (F1 = 2p / (1 + p) per AU), and F1 on the training frames, so that a
model that memorises identities shows as a train/test gap.

This is the data's learnability bar (issue: SynthAU v3), not a method of the papers.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from au_lib.metrics import choose_thresholds, f1_per_au
from au_lib.profiles import pick


@dataclass(frozen=True)
class LearnabilitySettings:
    """Budget of the bar: the network (``resnet18``, or ``resnet10``: torchvision's ResNet with one
    basic block per stage), optimiser steps per view, batch size, learning rate (AdamW, one-cycle),
    weight decay, random shift in pixels, validation fraction of the training subjects."""

    steps: int
    arch: str = "resnet10"
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    shift: int = 4
    val_fraction: float = 0.2
    probe_size: int = 32
    probe_steps: int = 100


LEARNABILITY_PROFILES: dict[str, LearnabilitySettings] = {
    "smoke": LearnabilitySettings(steps=4, batch=16, probe_steps=20),
    "cpu": LearnabilitySettings(steps=700),
    "paper": LearnabilitySettings(steps=3000, batch=128),
}


def _network(arch: str, n_out: int) -> torch.nn.Module:
    """A torchvision ResNet at random initialisation: ``resnet18`` or ``resnet10`` (one basic block per stage)."""
    from torchvision.models import resnet18
    from torchvision.models.resnet import BasicBlock, ResNet

    if arch == "resnet18":
        return resnet18(weights=None, num_classes=n_out)
    if arch == "resnet10":
        return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=n_out)
    raise ValueError(f"unknown network {arch!r}: use 'resnet18' or 'resnet10'")


def _split(view: str, profile: str | None, seed: int) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    from au_lib.data.folds import validation_split
    from au_lib.data.synth import folds

    fold = folds(view=view, profile=profile, seed=seed)[0]
    train, val = validation_split(fold.train, 0.2, seed)
    return train, val, tuple(fold.test)


def _tensors(ds) -> tuple[torch.Tensor, np.ndarray]:
    """All RGB frames of ``ds`` as one uint8 tensor (N, 3, H, W) and the labels (N, A)."""
    return ds._images["rgb"], ds.labels


def _augment(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random shift (reflect padding) and horizontal flip of a float batch (B, 3, H, W)."""
    B, _, H, W = x.shape
    if shift:
        x = F.pad(x, (shift,) * 4, mode="reflect")
        dx, dy = torch.randint(0, 2 * shift + 1, (2,), generator=gen).tolist()
        x = x[:, :, dy:dy + H, dx:dx + W]
    flip = torch.rand(B, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _pos_weight(labels: np.ndarray) -> torch.Tensor:
    """sqrt of the negative/positive ratio per AU, at most sqrt(10); an AU without positives gets 1."""
    pos = (labels == 1).sum(0)
    ratio = np.where(pos > 0, (len(labels) - pos) / np.maximum(pos, 1), 1.0)
    return torch.tensor(np.sqrt(np.clip(ratio, 0, 10)), dtype=torch.float32)


def _scores(model: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(torch.sigmoid(model(images[i:i + batch].float() / 255.0)))
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def _evaluate(labels_val, scores_val, labels_test, scores_test, aus) -> dict:
    thr = choose_thresholds(labels_val, scores_val)
    return {"thresholds": thr.tolist(), "test": f1_per_au(labels_test, scores_test, thr, aus).as_dict()}


def _probe(x_tr, y_tr, x_val, y_val, x_te, y_te, aus, size: int, steps: int) -> dict:
    """Logistic regression (one per AU, L2, full-batch L-BFGS) on ``size``-px grey pixels."""
    def feats(x):
        g = (x.float() / 255.0).mean(1, keepdim=True)
        g = F.interpolate(g, size=(size, size), mode="area").flatten(1)
        return g

    f_tr, f_val, f_te = feats(x_tr), feats(x_val), feats(x_te)
    mu, sd = f_tr.mean(0), f_tr.std(0) + 1e-6
    f_tr, f_val, f_te = (f_tr - mu) / sd, (f_val - mu) / sd, (f_te - mu) / sd
    lin = torch.nn.Linear(f_tr.shape[1], y_tr.shape[1])
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    yt = torch.tensor(y_tr, dtype=torch.float32)
    pw = _pos_weight(y_tr)
    opt = torch.optim.LBFGS(lin.parameters(), lr=0.5, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(lin(f_tr), yt, pos_weight=pw) + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        s_val, s_te = torch.sigmoid(lin(f_val)).numpy(), torch.sigmoid(lin(f_te)).numpy()
    return _evaluate(y_val, s_val, y_te, s_te, aus)


def run_learnability(view: str = "bp4d", *, profile: str | None = None, seed: int = 0,
                     settings: LearnabilitySettings | None = None, progress: bool = True,
                     save_detector: str | Path | None = None) -> dict:
    """Train and score the supervised bar and the pixel probe on SynthAU ``view`` (fold 1).

    ``save_detector``: also write the trained ResNet, its validation thresholds and the SynthAU crop
    rule as a detector file there (:mod:`au_lib.detect.file`).

    Returns a JSON-friendly dict: ``settings``, ``split`` (subject counts and frames), ``cnn`` (test
    F1 per AU with validation thresholds, and train F1), ``probe`` (pixel probe), ``all_present``
    (baseline F1 per AU on the test frames), ``rates`` (test occurrence) and ``wall_s``.
    """
    from tqdm.auto import tqdm

    from au_lib.data.synth import open_dataset

    cfg = settings or pick(LEARNABILITY_PROFILES, profile)
    t0 = time.perf_counter()
    train_s, val_s, test_s = _split(view, profile, seed)
    sets = {name: open_dataset(view=view, subjects=subs, profile=profile, seed=seed, progress=progress)
            for name, subs in (("train", train_s), ("val", val_s), ("test", test_s))}
    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = (_tensors(sets[k]) for k in ("train", "val", "test"))
    aus = sets["train"].aus
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = _network(cfg.arch, len(aus))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    pw = _pos_weight(y_tr)
    yt = torch.tensor(y_tr, dtype=torch.float32)
    model.train()
    bar = tqdm(range(cfg.steps), desc=f"learnability {view}", disable=not progress)
    losses = []
    for _ in bar:
        idx = torch.randint(0, len(x_tr), (cfg.batch,), generator=gen)
        x = _augment(x_tr[idx].float() / 255.0, cfg.shift, gen)
        loss = F.binary_cross_entropy_with_logits(model(x), yt[idx], pos_weight=pw)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss))
        if len(losses) % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    s_val, s_te = _scores(model, x_val), _scores(model, x_te)
    cnn = _evaluate(y_val, s_val, y_te, s_te, aus)
    sub = torch.randperm(len(x_tr), generator=gen)[:min(len(x_tr), len(x_te))]
    cnn["train"] = f1_per_au(y_tr[sub.numpy()], _scores(model, x_tr[sub]), cnn["thresholds"], aus).as_dict()
    cnn["loss_curve"] = [float(np.mean(losses[i:i + 20])) for i in range(0, len(losses), 20)]
    probe = _probe(x_tr, y_tr, x_val, y_val, x_te, y_te, aus, cfg.probe_size, cfg.probe_steps)
    rates = y_te.mean(0)
    if save_detector is not None:
        _save_bar(save_detector, model, cfg, view, aus, cnn, int(x_tr.shape[-1]), profile, seed,
                  {"train": len(train_s), "val": len(val_s), "test": len(test_s)}, time.perf_counter() - t0)
    return {
        "view": view, "aus": list(aus), "settings": asdict(cfg), "seed": seed,
        "split": {"train": len(train_s), "val": len(val_s), "test": len(test_s),
                  "train_frames": int(len(x_tr)), "val_frames": int(len(x_val)), "test_frames": int(len(x_te))},
        "cnn": cnn, "probe": probe,
        "all_present": {"per_au": (2 * rates / (1 + rates)).tolist(), "mean": float((2 * rates / (1 + rates)).mean())},
        "rates": rates.tolist(), "wall_s": time.perf_counter() - t0,
    }


LAYERS = {"resnet10": [1, 1, 1, 1], "resnet18": [2, 2, 2, 2]}


def _save_bar(path, model: torch.nn.Module, cfg: LearnabilitySettings, view: str, aus, cnn: dict, image_size: int,
              profile: str | None, seed: int, split: dict, wall_s: float) -> Path:
    """Write the bar's network as a detector file (architecture, weights, thresholds, crop rule, provenance)."""
    from au_lib.data.synth.config import GENERATOR_VERSION
    from au_lib.detect.file import save_detector, synthau_preprocess
    from au_lib.profiles import current_profile
    from au_lib.provenance import make_provenance

    prof = profile or current_profile()
    training = {"data": f"SynthAU ({GENERATOR_VERSION}, synthetic faces), {view}-like view, profile {prof}",
                "method": f"learnability bar: {cfg.arch} from scratch, {cfg.steps} AdamW steps of {cfg.batch}, "
                          f"random shifts and flips",
                "split": f"fold 1: {split['train']} training, {split['val']} validation, {split['test']} test subjects",
                "thresholds": "per AU, chosen on the validation subjects (au_lib.metrics.choose_thresholds)",
                "test": f"{split['test']} held-out synthetic subjects",
                "test_f1_mean": float(cnn["test"]["mean"]), "test_f1_per_au": list(cnn["test"]["per_au"]),
                "view": view, "profile": prof, "image_size": image_size, "seed": seed, "settings": asdict(cfg)}
    return save_detector(path, model, arch="torchvision-resnet",
                         arch_kwargs={"layers": LAYERS[cfg.arch], "num_classes": len(aus)}, aus=aus,
                         thresholds=cnn["thresholds"], preprocess=synthau_preprocess(image_size),
                         training=training, provenance=make_provenance(prof, wall_s))


def learnability_detector(view: str = "bp4d", *, profile: str | None = None, seed: int = 0,
                          path: str | Path | None = None, progress: bool = True) -> Path:
    """The bar's trained network as a detector file: reused if it exists for the same settings and
    data version, else trained (:func:`run_learnability`, minutes in the ``cpu`` profile) and written.

    Default ``path``: ``<cache>/detectors/learnability-<profile>-<view>-<settings hash>.pt``.
    """
    from au_lib.cache import cache_root
    from au_lib.data.synth.config import GENERATOR_VERSION
    from au_lib.detect.file import DetectorFileError, load_detector
    from au_lib.profiles import current_profile
    from au_lib.results import config_key

    prof = profile or current_profile()
    cfg = pick(LEARNABILITY_PROFILES, prof)
    config = {"view": view, "profile": prof, "seed": seed, "settings": asdict(cfg), "data": GENERATOR_VERSION}
    path = Path(path) if path is not None else (cache_root() / "detectors" /
                                                f"learnability-{prof}-{view}-{config_key(config)}.pt")
    if path.is_file():
        try:
            load_detector(path)
            return path
        except DetectorFileError as exc:
            import warnings

            warnings.warn(f"retraining: {exc}", stacklevel=2)
    run_learnability(view, profile=prof, seed=seed, settings=cfg, progress=progress, save_detector=path)
    return path


def learnability_result(view: str, path, *, profile: str | None = None, seed: int = 0,
                        progress: bool = True) -> dict:
    """The result file at ``path`` for ``view`` if it was made with the same settings and generator
    version (checked by :func:`au_lib.results.reusable`), else run :func:`run_learnability` and write it.

    Returns the loaded result (``metrics`` holds :func:`run_learnability`'s dict, ``provenance`` where
    and how it ran)."""
    from au_lib.data.synth.config import GENERATOR_VERSION
    from au_lib.profiles import current_profile
    from au_lib.provenance import make_provenance
    from au_lib.results import load_result, reusable, save_result

    prof = profile or current_profile()
    cfg = pick(LEARNABILITY_PROFILES, prof)
    config = {"view": view, "profile": prof, "seed": seed, "settings": asdict(cfg), "data": GENERATOR_VERSION}
    stored = reusable(path, config)
    if stored is not None:
        return stored
    import torch

    metrics = run_learnability(view, profile=prof, seed=seed, settings=cfg, progress=progress)
    save_result(path, config, metrics, make_provenance(prof, metrics["wall_s"]),
                extra={"threads": torch.get_num_threads()})
    return load_result(path)

"""TCAE's disentanglement, scored against SynthAU's ground truth: end-point errors of the AU and pose
fields, how much of one motion leaks into the other branch, photometric errors; over a run's checkpoints.

```python
from au_lib.experiments.disentanglement import disentanglement_metrics, evaluate_checkpoints
rows = evaluate_checkpoints("runs/tcae", fixed_batch(pairs, 64))   # [{"step": s, "epe_au": ..., ...}]
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from au_lib.models.tcae import TCAE, load_tcae
from au_lib.train.tcae import checkpoint_paths


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-sample mean of ``x[B,H,W]`` over ``mask[B,H,W]`` (all pixels if None) -> ``[B]``."""
    if mask is None:
        return x.flatten(1).mean(1)
    m = mask.float().flatten(1)
    return (x.flatten(1) * m).sum(1) / m.sum(1).clamp_min(1.0)


def end_point_error(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean end-point error (pixels) per sample: ``|pred - gt|_2`` averaged over ``mask`` -> ``[B]``."""
    return _masked_mean((pred.float() - gt.float()).norm(dim=1), mask)


def leakage(pred: torch.Tensor, other_gt: torch.Tensor, mask: torch.Tensor | None = None,
            eps: float = 1e-6) -> torch.Tensor:
    """How much of a ground-truth motion ``other_gt`` shows up in a predicted field ``pred`` -> ``[B]``.

    The least-squares coefficient ``<pred, g> / <g, g>`` over the masked pixels: 0 = none of the
    other motion leaked in, 1 = all of it. (E.g. ``leakage(disp_au_pred, disp_pose_gt)`` is the
    share of the head motion that the AU branch copied.)
    """
    m = torch.ones_like(pred[:, 0]) if mask is None else mask.float()
    num = ((pred.float() * other_gt.float()).sum(1) * m).flatten(1).sum(1)
    den = ((other_gt.float() ** 2).sum(1) * m).flatten(1).sum(1)
    return num / (den + eps)


@torch.no_grad()
def disentanglement_metrics(model: TCAE, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Score a model on a batch of synthetic pairs with ground truth (keys of ``open_pairs``).

    Pixels are scored on the face where the ground truth is defined: ``face_au`` for the AU field,
    ``face_pose`` for the pose field, ``face_target`` for the mix (else ``vis_*``, else all pixels,
    e.g. :class:`~au_lib.train.tcae.ToyPairs`; background pixels never move, so counting them would
    flatter the all-zero field); AU leakage/capture only where the ground-truth AU motion exceeds 0.05 px. Returns batch means of: ``epe_au``, ``epe_pose``, ``epe_total`` (pixels, over the visible mask),
    ``epe_au_zero``/``epe_pose_zero`` (the same for an all-zero prediction, a baseline),
    ``photo_au``/``photo_pose`` (mean |predicted - ground-truth render|, intensities in [0, 1]),
    ``photo_au_source``/``photo_pose_source`` (the same for the unchanged source, the baseline),
    ``photo_recon`` (|rebuilt - target|), ``leak_pose_in_au`` (``leakage(tau_A, gt_pose)``),
    ``leak_au_in_pose`` (``leakage(tau_P, gt_au)``) and ``capture_au``/``capture_pose`` (the
    leakage coefficient of each branch onto its own ground truth; 1 = all of it captured).
    """
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    src, tgt = batch["source"].to(dev), batch["target"].to(dev)
    out = model(src, tgt)
    gt_au, gt_pose = batch["disp_au"].to(dev), batch["disp_pose"].to(dev)
    gt_tot = batch.get("disp_target", None)
    B, H, W = src.shape[0], *src.shape[-2:]

    def mask_of(which: str) -> torch.Tensor | None:
        m = batch.get(f"face_{which}", batch.get(f"vis_{which}"))
        return None if m is None else m.to(dev).reshape(B, H, W) > 0.5

    m_au, m_pose, m_tot = mask_of("au"), mask_of("pose"), mask_of("target")
    moving_au = gt_au.norm(dim=1) > 0.05          # where the AUs move anything
    au_mask = moving_au if m_au is None else moving_au & m_au
    au_mask_p = moving_au if m_pose is None else moving_au & m_pose
    res = {
        "epe_au": end_point_error(out.disp_au, gt_au, m_au),
        "epe_pose": end_point_error(out.disp_pose, gt_pose, m_pose),
        "epe_au_zero": end_point_error(torch.zeros_like(gt_au), gt_au, m_au),
        "epe_pose_zero": end_point_error(torch.zeros_like(gt_pose), gt_pose, m_pose),
        "photo_au": (out.au_changed - batch["au_changed"].to(dev)).abs().flatten(1).mean(1),
        "photo_pose": (out.pose_changed - batch["pose_changed"].to(dev)).abs().flatten(1).mean(1),
        "photo_au_source": (src - batch["au_changed"].to(dev)).abs().flatten(1).mean(1),
        "photo_pose_source": (src - batch["pose_changed"].to(dev)).abs().flatten(1).mean(1),
        "photo_recon": (out.recon - tgt).abs().flatten(1).mean(1),
        "leak_pose_in_au": leakage(out.disp_au, gt_pose, m_au),
        "leak_au_in_pose": leakage(out.disp_pose, gt_au, au_mask_p),
        "capture_au": leakage(out.disp_au, gt_au, au_mask),
        "capture_pose": leakage(out.disp_pose, gt_pose, m_pose),
    }
    if gt_tot is not None:
        res["epe_total"] = end_point_error(out.disp, gt_tot.to(dev), m_tot)
    model.train(was_training)
    return {k: float(v.float().mean()) for k, v in res.items()}


@torch.no_grad()
def evaluate_checkpoints(run_dir: str | Path, batch: Mapping[str, torch.Tensor],
                         device: str | torch.device = "cpu") -> list[dict]:
    """:func:`disentanglement_metrics` of every ``ckpt_<step>.pt`` in ``run_dir``
    on ``batch`` (synthetic pairs with ground truth) -> ``[{"step": s, **metrics}]`` by step."""
    rows = []
    ckpts = checkpoint_paths(run_dir)
    if not ckpts:
        raise FileNotFoundError(f"no ckpt_<step>.pt checkpoints in {run_dir}")
    for step, path in ckpts:
        model = load_tcae(path, map_location=device).to(device)
        rows.append({"step": step, **disentanglement_metrics(model, batch)})
    return rows


TARGETS = {"epe_au": 0.6, "epe_pose": 0.5}
"""The learning bar: each branch's end-point error on held-out faces at most this share of the all-zero field's."""


PHOTO_MARGIN = 0.01
"""A changed face counts as closer to the true render than the source when its error is at least this
share smaller (a branch whose field is zero reproduces the source up to rounding, which is not "closer")."""


def learning_verdict(metrics: Mapping[str, float], targets: Mapping[str, float] = TARGETS) -> dict[str, dict]:
    """Score :func:`disentanglement_metrics` output against the bar: for each branch the EPE ratio to
    the zero field (``ratio``, ``target``, ``met``), and whether its changed face is closer to the true
    render than the unchanged source is, by at least :data:`PHOTO_MARGIN` (``photo_au``/``photo_pose``:
    ``error``, ``source``, ``met``)."""
    out: dict[str, dict] = {}
    for key, bound in targets.items():
        ratio = metrics[key] / max(metrics[f"{key}_zero"], 1e-12)
        out[key] = {"ratio": ratio, "target": bound, "met": bool(ratio <= bound)}
    for which in ("au", "pose"):
        err, base = metrics[f"photo_{which}"], metrics[f"photo_{which}_source"]
        out[f"photo_{which}"] = {"error": err, "source": base, "met": bool(err < (1 - PHOTO_MARGIN) * base)}
    return out


def probe_verdict(au_result: Mapping, pose_result: Mapping, which: str = "honest",
                  confidence: float = 0.95) -> dict:
    """TCAE's probe claim, "the AU code detects AUs better than the pose code", from two protocol
    results over the same folds (and seeds): the paired per-fold differences of mean F1 (AU minus
    pose), their mean and a Student-t ``confidence`` interval. ``verdict`` is ``"supported"`` when the
    interval lies above 0, ``"contradicted"`` when below, else ``"inconclusive"``. F1 in [0, 1]."""
    from au_lib.experiments.analysis import paired_difference

    p = paired_difference(au_result, pose_result, which, confidence)
    p["verdict"] = {"a better": "supported", "b better": "contradicted"}.get(p["verdict"], "inconclusive")
    return p


__all__ = ["end_point_error", "leakage", "disentanglement_metrics", "evaluate_checkpoints", "TARGETS", "PHOTO_MARGIN",
           "learning_verdict", "probe_verdict"]

"""TCAE figures: the supplementary's Fig. 1 grid (with ground truth beside it), training curves,
disentanglement over training, and an ipywidgets explorer.

Displacements are ``2xHxW`` pixels (``output(x, y) = source(x - dx, y - dy)``), drawn as a colour
wheel (:func:`au_lib.viz.common.flow_rgb`, scaled per field by its largest norm) with sparse arrows
(:func:`au_lib.viz.common.draw_arrows`) that show true length times ``arrow_scale``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from au_lib.viz.common import draw_arrows, flow_rgb, to_numpy_image


@torch.no_grad()
def predict_pairs(model, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run ``model`` (a :class:`~au_lib.models.tcae.TCAE`) on ``batch["source"], batch["target"]``
    (``B x 3 x H x W``) -> CPU tensors ``disp_au``, ``disp_pose``, ``disp``, ``attention``, ``recon``,
    ``au_changed``, ``pose_changed``."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = model(batch["source"].to(dev), batch["target"].to(dev))
    model.train(was)
    return {k: getattr(out, k).float().cpu() for k in
            ("disp_au", "disp_pose", "disp", "attention", "recon", "au_changed", "pose_changed")}


def _show_disp(ax, d: torch.Tensor, step: int, arrow_scale: float) -> None:
    ax.imshow(to_numpy_image(flow_rgb(d)))
    draw_arrows(ax, d, step=step, scale=arrow_scale, min_norm=0.1)
    ax.set_xlim(-0.5, d.shape[-1] - 0.5)
    ax.set_ylim(d.shape[-2] - 0.5, -0.5)


def plot_transforms(batch: Mapping, pred: Mapping[str, torch.Tensor], n: int = 16, ground_truth: bool | None = None,
                    arrow_step: int | None = None, arrow_scale: float = 2.0, labels: Sequence[str] | None = None,
                    cell: float = 1.1):
    """The supplementary's Fig. 1 re-drawn: one row per pair with source, target, AU-changed,
    pose-changed, AU displacement, pose displacement; with ``ground_truth`` (default: when the
    batch has ``au_changed``) also the ground-truth AU-changed/pose-changed renders and displacements.

    Returns the matplotlib figure. ``labels``: one row label each (default ``(a)``, ``(b)``, ... and
    the subject).
    """
    import matplotlib.pyplot as plt

    n = min(n, pred["disp_au"].shape[0])
    gt = ("au_changed" in batch and "disp_au" in batch) if ground_truth is None else ground_truth
    H = pred["disp_au"].shape[-1]
    step = arrow_step or max(4, H // 8)
    cols = ["source", "target", "AU-changed", "pose-changed", "AU displ.", "pose displ."]
    if gt:
        cols += ["GT AU-changed", "GT pose-changed", "GT AU displ.", "GT pose displ."]
    fig, axes = plt.subplots(n, len(cols), figsize=(cell * len(cols), cell * n + 0.4), squeeze=False)
    for i in range(n):
        imgs = [batch["source"][i], batch["target"][i], pred["au_changed"][i], pred["pose_changed"][i]]
        for j, im in enumerate(imgs):
            axes[i, j].imshow(to_numpy_image(im))
        _show_disp(axes[i, 4], pred["disp_au"][i], step, arrow_scale)
        _show_disp(axes[i, 5], pred["disp_pose"][i], step, arrow_scale)
        if gt:
            axes[i, 6].imshow(to_numpy_image(batch["au_changed"][i]))
            axes[i, 7].imshow(to_numpy_image(batch["pose_changed"][i]))
            _show_disp(axes[i, 8], batch["disp_au"][i].float(), step, arrow_scale)
            _show_disp(axes[i, 9], batch["disp_pose"][i].float(), step, arrow_scale)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
        if labels is not None:
            lab = labels[i]
        else:
            subj = batch.get("subject", [""] * n)[i] if isinstance(batch.get("subject"), (list, tuple)) else ""
            lab = f"({chr(97 + i % 26)}) {subj}".strip()
        axes[i, 0].set_ylabel(lab, fontsize=7, rotation=0, ha="right", va="center")
    for j, c in enumerate(cols):
        axes[0, j].set_title(c, fontsize=8)
    fig.subplots_adjust(wspace=0.03, hspace=0.05, left=0.08, right=0.99, top=1 - 0.3 / (cell * n + 0.4), bottom=0.01)
    return fig


def plot_training(history: Sequence[Mapping[str, float]], terms: Sequence[str] | None = None, ax=None, title: str = ""):
    """Loss terms of a ``log.jsonl`` history against the step (log scale)."""
    import matplotlib.pyplot as plt

    if not history:
        raise ValueError("plot_training: empty history")
    not_losses = ("step", "total", "lr", "window", "schedule")
    terms = terms or [k for k in history[0] if k not in not_losses and not k.startswith("val_")
                      and isinstance(history[0][k], (int, float))]
    ax = ax or plt.subplots(figsize=(6.4, 3.4))[1]
    steps = [h["step"] for h in history]
    for t in terms:
        ax.plot(steps, [h.get(t, np.nan) for h in history], label=t, lw=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss term (unweighted)")
    ax.legend(fontsize=7, ncol=2)
    if title:
        ax.set_title(title, fontsize=9)
    return ax.figure


def plot_disentanglement(rows: Sequence[Mapping[str, float]], title: str = ""):
    """Three panels over training: end-point errors (with the all-zero baseline dashed),
    photometric errors against the ground-truth renders, leakage/capture coefficients."""
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("plot_disentanglement: no rows")
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    col = {"au": "tab:red", "pose": "tab:blue", "total": "tab:gray", "recon": "tab:gray"}
    for k in ("au", "pose", "total"):
        if f"epe_{k}" in rows[0]:
            axes[0].plot(steps, [r[f"epe_{k}"] for r in rows], color=col[k], label=f"{k} branch" if k != "total" else "mixed")
        if f"epe_{k}_zero" in rows[0]:
            axes[0].axhline(rows[0][f"epe_{k}_zero"], color=col[k], ls="--", lw=0.8, label=f"zero field ({k})")
    axes[0].set_ylabel("end-point error (px)")
    for k in ("au", "pose", "recon"):
        axes[1].plot(steps, [r[f"photo_{k}"] for r in rows], color=col[k],
                     label={"au": "AU-changed vs GT", "pose": "pose-changed vs GT", "recon": "rebuilt vs target"}[k])
    axes[1].set_ylabel("mean |error| (intensity)")
    for k, c, ls in (("capture_au", "tab:red", "-"), ("capture_pose", "tab:blue", "-"),
                     ("leak_pose_in_au", "tab:red", ":"), ("leak_au_in_pose", "tab:blue", ":")):
        axes[2].plot(steps, [r[k] for r in rows], color=c, ls=ls, label=k)
    axes[2].axhline(0, color="k", lw=0.5)
    axes[2].axhline(1, color="k", lw=0.5, ls="--")
    axes[2].set_ylabel("regression coefficient")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_setting_effects(reference: Mapping[str, float], effects: Mapping[str, Mapping[str, float]],
                         targets: Mapping[str, float] | None = None, title: str = ""):
    """Each branch's end-point error as a share of the all-zero field's, for the profile's own run
    (``reference``: :func:`~au_lib.experiments.disentanglement.disentanglement_metrics` output) and for
    each run with one setting back at the paper's value (``effects``: ``{setting: metrics}``), as
    horizontal bars beside the learning bar (``targets``, default
    :data:`~au_lib.experiments.disentanglement.TARGETS`) and the zero field (1.0)."""
    import matplotlib.pyplot as plt

    from au_lib.experiments.disentanglement import TARGETS

    targets = dict(targets or TARGETS)
    rows = [("profile as is", reference)] + [(f"paper's {k}", m) for k, m in effects.items()]
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 0.45 * len(rows) + 1.2), sharey=True,
                             squeeze=False)
    y = np.arange(len(rows))[::-1]
    for ax, (key, bound) in zip(axes[0], targets.items()):
        ratios = [m[key] / max(m[f"{key}_zero"], 1e-12) for _, m in rows]
        colours = ["tab:green" if r <= bound else "tab:gray" for r in ratios]
        colours[0] = "tab:blue" if ratios[0] > bound else "tab:green"
        ax.barh(y, ratios, color=colours)
        for yi, r in zip(y, ratios):
            ax.text(r + 0.02, yi, f"{r:.2f}", va="center", fontsize=7)
        ax.axvline(bound, color="k", ls="--", lw=0.8, label=f"bar ({bound:g})")
        ax.axvline(1.0, color="tab:red", ls=":", lw=0.8, label="zero field")
        ax.set_xlabel(f"{key.replace('epe_', '')} field EPE / zero field's")
        ax.set_xlim(0, max(1.2, max(ratios) + 0.25))
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_yticks(y, [r[0] for r in rows], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def explorer(model, dataset, subjects: Sequence[str] | None = None, frame_key: str = "rgb"):
    """An ipywidgets explorer: pick a subject, a source frame and a target frame; shows the
    source, target, AU-changed, pose-changed images and both displacements.

    ``dataset`` is a frame dataset yielding the shared sample dict (``rgb``, ``subject``); frames
    of one subject are paired freely. Returns the widget (display it in Jupyter/Colab).
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt

    by_subj: dict[str, list[int]] = {}
    for i in range(len(dataset)):
        by_subj.setdefault(str(dataset[i]["subject"]), []).append(i)
    names = list(subjects or sorted(by_subj))
    subj = w.Dropdown(options=names, description="subject")
    src = w.IntSlider(0, 0, len(by_subj[names[0]]) - 1, description="source")
    tgt = w.IntSlider(min(1, len(by_subj[names[0]]) - 1), 0, len(by_subj[names[0]]) - 1, description="target")
    out = w.Output()

    def redraw(*_):
        idx = by_subj[subj.value]
        src.max = tgt.max = len(idx) - 1
        s, t = dataset[idx[src.value]][frame_key], dataset[idx[tgt.value]][frame_key]
        pred = predict_pairs(model, {"source": s[None], "target": t[None]})
        with out:
            out.clear_output(wait=True)
            fig = plot_transforms({"source": s[None], "target": t[None], "subject": [subj.value]}, pred, n=1,
                                  ground_truth=False, cell=1.8)
            plt.show()

    for wid in (subj, src, tgt):
        wid.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([subj, src, tgt]), out])


__all__ = ["predict_pairs", "plot_transforms", "plot_training", "plot_disentanglement", "plot_setting_effects", "explorer"]

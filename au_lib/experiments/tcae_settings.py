"""What each of a profile's departures from the paper does to TCAE: one training run per setting, with
that one setting put back to the paper's value and everything else as the profile has it, scored
on held-out synthetic pairs against the learning bar.

```python
from au_lib.experiments.tcae_settings import CHAPTER_SETTINGS, paper_value_changes, setting_effects
changes = paper_value_changes(train_config("cpu"))          # {"composition": {"model": {...}}, ...}
effects = setting_effects(train_config("cpu"), eval_batch, names=CHAPTER_SETTINGS["cpu"])  # {name: result}
```

Each run is a full :func:`~au_lib.train.tcae.train_tcae` run of the profile's length (checkpoints
under ``run_root``, resumed if interrupted); each score is a result file ``paper-<name>.json`` under
``results_dir`` (atomic, with provenance), reused while the configuration and the evaluation pairs
are unchanged.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from au_lib.models.tcae import PAPER_SETTINGS
from au_lib.train.tcae import DEFAULT_DATA_OPTIONS, PAPER_TRAINING, TCAETrainConfig, binding_config, train_tcae

OPTIMISER_FIELDS = ("optimizer", "lr", "momentum", "schedule")
"""Training fields that change together (the paper's constant-rate SGD against the profile's optimiser)."""


CHAPTER_SETTINGS: dict[str, tuple[str, ...] | None] = {
    "smoke": None,                             # every setting (seconds each)
    "cpu": ("composition", "photometric"),      # the runs made for the book so far (each a full cpu-profile run)
    "paper": (),                                # the paper profile departs from no setting but its schedule
}
"""Which settings the TCAE chapter measures in each profile (``None``: all of :func:`paper_value_changes`)."""


def default_dirs(profile: str) -> tuple[Path, Path]:
    """``(results_dir, run_root)``: ``$AU_RESULTS/tcae_settings/<profile>`` when ``$AU_RESULTS`` is set for
    the ``cpu`` profile (the book's committed results), else ``<cache>/tcae/settings/results/<profile>``;
    runs under ``<cache>/tcae/settings/runs/<profile>``."""
    from au_lib.cache import cache_dir

    committed = os.environ.get("AU_RESULTS", "").strip()
    res = (Path(committed).expanduser() / "tcae_settings" / profile if committed and profile == "cpu"
           else cache_dir("tcae", "settings", "results", profile))
    return res, cache_dir("tcae", "settings", "runs", profile)


def paper_value_changes(cfg: TCAETrainConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """The settings where ``cfg`` departs from the paper, each as the change that puts it back:
    ``{name: {"model": {...}, "train": {...}}}``, in the order of :data:`PAPER_SETTINGS` then
    :data:`PAPER_TRAINING` (the optimiser fields as one change named ``"optimizer"``)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for k, v in PAPER_SETTINGS.items():
        if getattr(cfg.model, k) != v:
            out[k] = {"model": {k: v}, "train": {}}
    for k, v in PAPER_TRAINING.items():
        if k not in OPTIMISER_FIELDS and getattr(cfg, k) != v:
            out[k] = {"model": {}, "train": {k: v}}
    optimiser = {k: PAPER_TRAINING[k] for k in OPTIMISER_FIELDS if k in PAPER_TRAINING}
    if any(getattr(cfg, k) != v for k, v in optimiser.items()):
        out["optimizer"] = {"model": {}, "train": optimiser}
    return out


def with_paper_value(cfg: TCAETrainConfig, change: Mapping[str, Mapping[str, Any]]) -> TCAETrainConfig:
    """``cfg`` with one change of :func:`paper_value_changes` applied."""
    return replace(cfg, model=replace(cfg.model, **dict(change.get("model", {}))), **dict(change.get("train", {})))


def _eval_fingerprint(batch: Mapping[str, torch.Tensor]) -> dict:
    """What identifies an evaluation batch in a result's configuration: its size and pixel sums."""
    return {"pairs": int(batch["source"].shape[0]), "source_sum": round(float(batch["source"].double().sum()), 4),
            "target_sum": round(float(batch["target"].double().sum()), 4)}


def setting_effects(cfg: TCAETrainConfig, eval_batch: Mapping[str, torch.Tensor],
                    results_dir: str | Path | None = None, run_root: str | Path | None = None,
                    names: Sequence[str] | None = None,
                    data: str | torch.utils.data.Dataset = "synthau", data_options: Mapping | None = None,
                    profile: str | None = None, progress: bool = True) -> dict[str, dict]:
    """Train ``cfg`` once per setting of :func:`paper_value_changes` (or the ``names`` among them) with that
    setting at the paper's value, on ``data`` (as :func:`~au_lib.train.tcae.train_tcae` takes it; folders
    default to :func:`default_dirs`), and score the final model on ``eval_batch`` with
    :func:`~au_lib.experiments.disentanglement.disentanglement_metrics` -> ``{name: result}`` (result
    files as :func:`au_lib.results.load_result` returns them; ``metrics`` holds the scores).

    Raises:
        KeyError: naming the unknown entries of ``names``.
    """
    from au_lib.experiments.disentanglement import disentanglement_metrics
    from au_lib.profiles import current_profile
    from au_lib.provenance import make_provenance
    from au_lib.results import load_result, reusable, save_result

    profile = profile or current_profile()
    default_results, default_runs = default_dirs(profile)
    results_dir, run_root = Path(results_dir or default_results), Path(run_root or default_runs)
    changes = paper_value_changes(cfg)
    if names is not None:
        unknown = [n for n in names if n not in changes]
        if unknown:
            raise KeyError(f"setting_effects: {unknown} are not settings where this profile departs from the paper "
                           f"(those are: {', '.join(changes)})")
        changes = {n: changes[n] for n in names}
    data_name = data if isinstance(data, str) else type(data).__name__
    data_options = dict(data_options if data_options is not None else DEFAULT_DATA_OPTIONS.get(data_name, {}))
    out: dict[str, dict] = {}
    for name, change in changes.items():
        run_cfg = with_paper_value(cfg, change)
        config = {"setting": name, "change": change, "train": binding_config(run_cfg, data_name, data_options),
                  "eval": _eval_fingerprint(eval_batch)}
        path = Path(results_dir) / f"paper-{name}.json"
        res = reusable(path, config)
        if res is None:
            t0 = time.perf_counter()
            run = train_tcae(run_cfg, Path(run_root) / f"paper-{name}", data=data, data_options=data_options,
                             progress=progress, profile=profile)
            metrics = disentanglement_metrics(run.model, eval_batch)
            save_result(path, config, metrics, make_provenance(profile, run.wall_time_s or time.perf_counter() - t0))
            res = load_result(path)
        out[name] = res
    return out


__all__ = ["CHAPTER_SETTINGS", "default_dirs", "OPTIMISER_FIELDS", "paper_value_changes", "with_paper_value", "setting_effects"]

"""The pre-trained models the detection chapter evaluates: reuse the profile's finished run, else
train one (both resumable). MCM: ``<cache>/mcm/<profile>``; TCAE: the default SynthAU run
(:func:`au_lib.train.tcae.default_run_dir`), else ``<cache>/detection/tcae/<profile>``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from au_lib.cache import cache_dir
from au_lib.profiles import current_profile


def pretrained_mcm(profile: str | None = None, progress: bool = False) -> tuple[Path, dict]:
    """The MCM encoder checkpoint of ``profile`` and its run summary (a result dict).

    Reuses the run in ``<cache>/mcm/<profile>`` (the MCM chapter's) when finished; otherwise
    pre-trains it with :func:`au_lib.train.pretrain.run_pretraining`, which resumes a partial run.
    """
    from au_lib.train.engine import ResumeError
    from au_lib.train.pretrain import resolve_config, run_pretraining

    profile = profile or current_profile()
    out = cache_dir("mcm", profile)
    try:
        run = run_pretraining(resolve_config(profile), "synthau", out, profile=profile, show_progress=progress)
    except ResumeError as exc:  # a cached run of another version: a cache, so recompute it
        warnings.warn(f"{exc}; pre-training again", stacklevel=2)
        run = run_pretraining(resolve_config(profile), "synthau", out, profile=profile, show_progress=progress,
                              resume=False)
    return Path(run["path"]).parent / run["extra"]["checkpoint"], run


def initial_mcm(profile: str | None = None) -> Path:
    """The weights ``profile``'s MCM pre-training starts from, as an encoder checkpoint
    (``<cache>/mcm/<profile>-init/epoch_0000.pt``, written once): the "randomly initialised encoder"
    that a probe or fine-tuning of :func:`pretrained_mcm`'s encoder is compared with."""
    from au_lib.experiments.ablations import initial_checkpoint
    from au_lib.train.pretrain import resolve_config

    profile = profile or current_profile()
    path = cache_dir("mcm", f"{profile}-init") / "epoch_0000.pt"
    initial_checkpoint(resolve_config(profile), path)
    return path


def pretrained_tcae(profile: str | None = None, progress: bool = False) -> tuple[Path, dict]:
    """A trained TCAE checkpoint for ``profile`` and a description of where it came from.

    Reuses the profile's default SynthAU run (:func:`au_lib.train.tcae.default_run_dir`, where the
    TCAE chapter and ``au-lib train-tcae`` train) when its checkpoint has done the steps its config
    asks for; otherwise trains :func:`au_lib.train.tcae.train_config` ``(profile)`` into
    ``<cache>/detection/tcae/<profile>`` (resumable).
    """
    from au_lib.train.engine import ResumeError, read_checkpoint
    from au_lib.train.tcae import binding_config, default_run_dir, train_config, train_tcae

    profile = profile or current_profile()
    cfg = train_config(profile)
    shared = default_run_dir("synthau", profile)
    if (shared / "last.pt").exists():
        state = read_checkpoint(shared / "last.pt")
        same = state.get("config") == binding_config(cfg, "synthau")
        if same and int(state.get("step", -1)) >= cfg.steps:
            return shared / "last.pt", {"run_dir": str(shared), "steps": int(state["step"]), "reused": True}
    run_dir = cache_dir("detection", "tcae", profile)
    try:
        run = train_tcae(cfg, run_dir, data="synthau", progress=progress, profile=profile)
    except ResumeError as exc:  # a cached run of another version: a cache, so recompute it
        warnings.warn(f"{exc}; training again", stacklevel=2)
        run = train_tcae(cfg, run_dir, data="synthau", progress=progress, profile=profile, resume=False)
    return run_dir / "last.pt", {"run_dir": str(run_dir), "steps": run.step, "reused": False,
                                 "wall_time_s": run.wall_time_s}

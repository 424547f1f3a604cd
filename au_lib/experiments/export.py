"""Save a classifier the AU protocol trained as a self-contained detector file (:mod:`au_lib.detect.file`).

:func:`save_fold_detector` is what :func:`au_lib.experiments.protocol.run_fold` calls when given
``save_detector=``: it records the network's architecture (rebuilt from the method, the profile's
settings and, for pre-trained encoders, their configuration), the weights, the validation thresholds,
the crop rule of the training data (SynthAU's eye-line crop, or the licensed datasets' template
alignment) and where it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from torch import nn

if TYPE_CHECKING:
    from au_lib.experiments.methods import Method
    from au_lib.experiments.protocol import ProtocolSettings
    from au_lib.train.finetune import FrameTable


def network_record(model: nn.Module, method: Method, settings: ProtocolSettings, num_aus: int,
                   profile: str | None, seed: int = 0) -> tuple[str, dict, nn.Module]:
    """``(arch, kwargs, network)`` for :func:`au_lib.detect.file.save_detector`: the trained ``model``
    of a scratch/fine-tune method, or, for a probe, the frozen extractor and the probe ``model`` joined
    into one :class:`~au_lib.detect.file.ProbeNetwork`.

    Raises:
        ValueError: for fusion methods (they need depth and thermal images, which ``detect`` does not read).
    """
    from au_lib.detect.file import ProbeNetwork

    if method.modality != "rgb":
        raise ValueError(f"{method.name}: a fusion detector needs depth and thermal images; detectors read RGB only")
    if method.kind == "probe":
        from au_lib.experiments.methods import make_extractor

        ext = make_extractor(method.backbone, image_size=settings.image_size, checkpoint=method.checkpoint,
                             seed=seed, profile=profile)
        keep = getattr(ext, "keep", None)
        kw: dict = {"size": getattr(ext, "size", None)}
        if method.backbone == "random-vit":
            kw.update(image_size=settings.image_size, profile=profile, size=None)
            keep = ext
        elif keep is not None:
            kw["config"] = keep.cfg.to_dict()
        if method.backbone == "mcm-grid":
            from au_lib.experiments.methods import MCM_GRID

            kw["grid"] = MCM_GRID
        kwargs = {"extractor": method.backbone, "extractor_kwargs": kw, "dim": int(model.fc.in_features),
                  "num_aus": num_aus}
        net = ProbeNetwork(method.backbone, kw, kwargs["dim"], num_aus)
        if keep is not None:
            net.extractor.load_state_dict(keep.state_dict())
        net.probe.load_state_dict(model.state_dict())
        return "probe", kwargs, net.eval()
    enc = model.encoder
    dim = int(model.head.fc.in_features)
    if method.kind == "scratch":
        kwargs = {"encoder": "baseline", "baseline": method.backbone, "image_size": settings.image_size,
                  "profile": profile, "dim": dim, "num_aus": num_aus}
    else:
        kwargs = {"encoder": "mcm", "config": enc.cfg.to_dict(), "dim": dim, "num_aus": num_aus}
    return "encoder-classifier", kwargs, model


def save_fold_detector(path: str | Path, model: nn.Module, method: Method, table: FrameTable,
                       settings: ProtocolSettings, *, profile: str | None, fold: int, seed: int,
                       val_subjects: Sequence[str], thresholds: np.ndarray, test_f1: np.ndarray,
                       test_subjects: Sequence[str] = ()) -> Path:
    """Write one fold's trained classifier as a detector file (see the module docstring)."""
    from au_lib.detect.file import save_detector, synthau_preprocess, template_preprocess
    from au_lib.profiles import current_profile
    from au_lib.provenance import make_provenance

    prof = profile or current_profile()
    arch, kwargs, net = network_record(model, method, settings, len(table.aus), prof, seed)
    source = dict(table.meta.get("source") or {})
    dataset = source.get("dataset", "synthau")
    size = int(table.x.shape[-1])
    pre = synthau_preprocess(size) if dataset == "synthau" else template_preprocess(size)
    view = (source.get("options") or {}).get("view")
    training = {"data": f"{dataset}{' ' + str(view) + '-like view' if view else ''} "
                        f"({'synthetic faces, ' if dataset == 'synthau' else ''}{source.get('data', '?')}), profile {prof}",
                "method": f"{method.name} ({method.kind}) under the 3-fold AU protocol, fold {fold}, seed {seed}"
                          + (f"; pre-trained checkpoint {Path(method.checkpoint).name}" if method.checkpoint else ""),
                "split": f"fold {fold}: {len(set(table.subject.tolist())) - len(val_subjects) - len(test_subjects)} "
                         f"training, {len(val_subjects)} validation, {len(test_subjects)} test subjects",
                "thresholds": "per AU, chosen on the validation subjects (au_lib.metrics.choose_thresholds)",
                "test": f"fold {fold}'s {len(test_subjects)} held-out subjects",
                "test_f1_mean": float(np.nanmean(test_f1)), "test_f1_per_au": [float(v) for v in test_f1],
                "seed": seed, "fold": fold, "profile": prof, "image_size": size}
    return save_detector(path, net, arch=arch, arch_kwargs=kwargs, aus=table.aus, thresholds=thresholds,
                         preprocess=pre, training=training, provenance=make_provenance(prof, 0.0))


__all__ = ["network_record", "save_fold_detector"]

"""The self-contained detector file: everything needed to run a trained AU classifier on new faces.

One ``torch.save`` file holding only plain containers and tensors, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code runs on load)::

    {"format": "au_lib.detector", "version": 1,
     "arch": {"name": ..., "kwargs": {...}},   # rebuilt by build_network(name, kwargs)
     "state_dict": {...},                      # the weights
     "aus": [1, 2, 4, ...],                    # FACS numbers of the output columns
     "thresholds": [...],                      # one decision threshold per AU, chosen on validation
     "preprocess": {...},                      # alignment and crop rule, image size, modalities, input range
     "training": {...},                        # what it was trained on, how, and its scores
     "provenance": {...}}                      # au_lib.provenance.Provenance as a dict

Architectures (:func:`build_network`): ``torchvision-resnet`` (torchvision's ResNet with basic
blocks: the learnability bar's ResNet-10 / ResNet-18), ``encoder-classifier`` (the protocol's
trained networks: a timm baseline or the MCM encoder, plus :class:`~au_lib.models.heads.MultiLabelHead`),
``probe`` (the protocol's linear probes together with their frozen feature extractor, :class:`ProbeNetwork`).

Preprocessing (:func:`synthau_preprocess`): the SynthAU alignment rule
(:func:`au_lib.data.synth.render.align_crop`) with its constants, applied to real faces by
:func:`au_lib.data.align.eye_mouth_crop_matrix`; RGB in [0, 1], (B, 3, S, S); no normalisation
outside the network (the networks that normalise do it inside).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

FORMAT = "au_lib.detector"
VERSION = 1
ARCHS = ("torchvision-resnet", "encoder-classifier", "probe")
EXTRACTORS = ("pixels", "random-vit", "mcm", "mcm-grid", "tcae-au", "tcae-pose")


class DetectorFileError(ValueError):
    """A detector file that cannot be used (unreadable, truncated, not a detector, inconsistent); the
    message names the file."""


def synthau_preprocess(image_size: int, modalities: Sequence[str] = ("rgb",)) -> dict:
    """The preprocessing record of a network trained on SynthAU crops of ``image_size`` pixels.

    The alignment constants are read from :mod:`au_lib.data.synth.render` (the rule that framed the
    training data), so a detector file keeps the rule its network was trained with.
    """
    from au_lib.data.synth.config import GENERATOR_VERSION
    from au_lib.data.synth.render import CROP_SIDE, EYE_TO_CENTRE

    return {"align": "eye-mouth", "crop_side": float(CROP_SIDE), "eye_to_centre": float(EYE_TO_CENTRE),
            "image_size": int(image_size), "modalities": list(modalities), "channels": ["r", "g", "b"],
            "input": "RGB float32 in [0, 1], (B, 3, S, S)", "normalisation": "none outside the network",
            "source": f"au_lib.data.synth.render.align_crop ({GENERATOR_VERSION})",
            "landmarks": "dlib HOG face detector + 68-point shape predictor (au_lib.data.align.FaceAligner); "
                         "eye centres = means of points 36-41 / 42-47, mouth corners = points 48, 54"}


def template_preprocess(image_size: int, face_fraction: float = 0.65, top: float = 0.2) -> dict:
    """The preprocessing record of a network trained on the licensed datasets' crops (prepared with
    :class:`au_lib.data.align.FaceAligner`: similarity fit of the rigid landmarks to a template)."""
    return {"align": "template", "face_fraction": float(face_fraction), "top": float(top),
            "image_size": int(image_size), "modalities": ["rgb"], "channels": ["r", "g", "b"],
            "input": "RGB float32 in [0, 1], (B, 3, S, S)", "normalisation": "none outside the network",
            "source": "au_lib.data.align.FaceAligner (OpenFace mean dlib-68 template, rigid points)",
            "landmarks": "dlib HOG face detector + 68-point shape predictor (au_lib.data.align.FaceAligner)"}


def build_network(name: str, kwargs: dict) -> nn.Module:
    """Rebuild an untrained network of architecture ``name`` from its constructor ``kwargs``.

    - ``torchvision-resnet``: ``{"layers": [1, 1, 1, 1], "num_classes": A}`` (basic blocks).
    - ``encoder-classifier``: ``{"encoder": "baseline", "baseline": "resnet18"|"vit", "image_size",
      "profile", "dim", "num_aus"}`` or ``{"encoder": "mcm", "config": MCMConfig dict, "dim", "num_aus"}``.
    - ``probe``: ``{"extractor", "extractor_kwargs", "dim", "num_aus"}`` (:class:`ProbeNetwork`).
    """
    if name == "torchvision-resnet":
        from torchvision.models.resnet import BasicBlock, ResNet

        return ResNet(BasicBlock, list(kwargs["layers"]), num_classes=int(kwargs["num_classes"]))
    if name == "encoder-classifier":
        from au_lib.models.heads import EncoderClassifier

        kind = kwargs.get("encoder")
        with torch.random.fork_rng(devices=[]):
            if kind == "baseline":
                from au_lib.models.baselines import create_baseline

                enc = create_baseline(kwargs["baseline"], int(kwargs["image_size"]), profile=kwargs.get("profile"))
            elif kind == "mcm":
                from au_lib.models.mcm import MCMConfig, MCMEncoder

                enc = MCMEncoder(MCMConfig.from_dict(kwargs["config"]))
            else:
                raise KeyError(f"encoder-classifier: unknown encoder {kind!r} (baseline, mcm)")
        return EncoderClassifier(enc, int(kwargs["dim"]), int(kwargs["num_aus"]))
    if name == "probe":
        return ProbeNetwork(kwargs["extractor"], kwargs.get("extractor_kwargs") or {}, int(kwargs["dim"]),
                            int(kwargs["num_aus"]))
    raise KeyError(f"unknown detector architecture {name!r}; known: {', '.join(ARCHS)}")


class ProbeNetwork(nn.Module):
    """A frozen feature extractor and the linear probe trained on its features, as one network.

    ``extractor``: ``pixels`` (8x8 average-pooled pixels), ``random-vit`` (``{"image_size", "profile"}``),
    ``mcm`` (``{"config": MCMConfig dict}``; ``mcm-grid`` also ``"grid"``, cells per side), ``tcae-au`` /
    ``tcae-pose`` (``{"config": TCAE config dict}``). Inputs whose size differs from
    ``extractor_kwargs["size"]`` are resized (bilinear, antialiased) as the protocol's extractor did. ``forward(x (B, 3, S, S)) -> (B, A)`` logits.
    """

    def __init__(self, extractor: str, extractor_kwargs: dict, dim: int, num_aus: int) -> None:
        super().__init__()
        from au_lib.models.heads import LinearProbe

        if extractor not in EXTRACTORS:
            raise KeyError(f"unknown probe extractor {extractor!r}; known: {', '.join(EXTRACTORS)}")
        self.kind = extractor
        self.size = extractor_kwargs.get("size")
        self.extractor: nn.Module | None = None
        with torch.random.fork_rng(devices=[]):
            if extractor == "random-vit":
                from au_lib.models.baselines import create_baseline

                self.extractor = create_baseline("vit", int(extractor_kwargs["image_size"]),
                                                 profile=extractor_kwargs.get("profile"))
            elif extractor in ("mcm", "mcm-grid"):
                from au_lib.models.mcm import MCMConfig, MCMEncoder

                self.extractor = MCMEncoder(MCMConfig.from_dict(extractor_kwargs["config"]))
            elif extractor.startswith("tcae"):
                from au_lib.models.tcae import TCAE, TCAEConfig

                self.extractor = TCAE(TCAEConfig.from_dict(extractor_kwargs["config"]))
        self.grid = int(extractor_kwargs.get("grid", 1))
        self.probe = LinearProbe(dim, num_aus)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.size and x.shape[-1] != self.size:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                          antialias=True)
        if self.kind == "pixels":
            return nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)
        if self.kind in ("mcm", "mcm-grid"):
            return self.extractor.forward_features(x, grid=self.grid)
        if self.kind.startswith("tcae"):
            return self.extractor.encode(x)[0 if self.kind == "tcae-au" else 1]
        return self.extractor(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probe(self.features(x))


def _plain(obj: Any) -> Any:
    """JSON-like copy of ``obj`` (dataclasses, numpy values, paths, tuples made plain) for weights_only:
    a JSON round trip, which also turns ``str`` subclasses (torch's ``TorchVersion``) into plain strings."""
    import json

    from au_lib.provenance import _json_default

    try:
        return json.loads(json.dumps(obj, default=_json_default))
    except TypeError as exc:
        raise TypeError(f"detector file: cannot store {exc}") from None


class Detector:
    """A loaded detector: the network (eval mode) and what it needs to be applied.

    Attributes:
        model: ``(B, 3, S, S)`` RGB in [0, 1] -> ``(B, A)`` logits.
        aus: FACS numbers of the A outputs. thresholds: (A,) decision thresholds (validation-chosen).
        preprocess, training, provenance, arch: the file's records. path: where it was loaded from.
    """

    def __init__(self, model: nn.Module, *, arch: dict, aus: Sequence[int], thresholds: Sequence[float],
                 preprocess: dict, training: dict | None = None, provenance: dict | None = None,
                 path: str | Path | None = None) -> None:
        self.model = model.eval()
        self.arch = {"name": arch["name"], "kwargs": dict(arch["kwargs"])}
        self.aus = tuple(int(a) for a in aus)
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        if self.thresholds.shape != (len(self.aus),):
            raise ValueError(f"{len(self.thresholds)} thresholds for {len(self.aus)} AUs")
        self.preprocess = dict(preprocess)
        self.training = dict(training or {})
        self.provenance = dict(provenance or {})
        self.path = None if path is None else Path(path)

    @property
    def image_size(self) -> int:
        return int(self.preprocess["image_size"])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> "Detector":
        self.model.to(device)
        return self

    def crop_matrix(self, landmarks: np.ndarray) -> np.ndarray:
        """3x3 similarity from source pixels to this detector's crop, from 68 landmarks (68, 2)."""
        from au_lib.data.align import eye_mouth_crop_matrix

        p = self.preprocess
        if p.get("align") == "template":
            from au_lib.data.align import FaceAligner

            return FaceAligner(self.image_size, face_fraction=p["face_fraction"], top=p["top"]).transform_for(landmarks)
        if p.get("align") != "eye-mouth":
            raise ValueError(f"unknown alignment rule {p.get('align')!r} in the detector file")
        return eye_mouth_crop_matrix(landmarks, self.image_size, crop_side=p["crop_side"],
                                     eye_to_centre=p["eye_to_centre"])

    @torch.no_grad()
    def probabilities(self, crops: torch.Tensor | np.ndarray) -> np.ndarray:
        """Per-AU probabilities (B, A) float64 of aligned crops: uint8 (B, S, S, 3) or float (B, 3, S, S) in [0, 1]."""
        x = torch.as_tensor(crops)
        if x.dtype == torch.uint8:
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"expected crops (B, 3, {self.image_size}, {self.image_size}), got {tuple(x.shape)}")
        return torch.sigmoid(self.model(x.to(self.device)).float()).cpu().double().numpy()

    def decisions(self, probs: np.ndarray) -> np.ndarray:
        """0/1 decisions (B, A) at the per-AU thresholds."""
        return (np.asarray(probs) >= self.thresholds).astype(np.int64)

    def describe(self) -> str:
        """One paragraph: architecture, AUs, input, training data, provenance."""
        t, p = self.training, self.provenance
        return (f"{self.arch['name']} {self.arch['kwargs'].get('layers', self.arch['kwargs'].get('encoder', ''))} · "
                f"{len(self.aus)} AUs ({', '.join(f'AU{a}' for a in self.aus)}) · "
                f"{self.image_size}px {self.preprocess.get('align')} crops · trained on {t.get('data', '?')} "
                f"({t.get('method', '?')}; test F1 {t.get('test_f1_mean', float('nan')) * 100:.1f} on "
                f"{t.get('test', 'held-out subjects')}) · profile={p.get('profile')} · commit={p.get('commit')} · "
                f"{p.get('date')}")

    def save(self, path: str | Path) -> Path:
        """Write the detector file atomically (see the module docstring); returns its path."""
        from au_lib.provenance import atomic_write_bytes

        payload = {"format": FORMAT, "version": VERSION, "arch": _plain(self.arch),
                   "state_dict": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                   "aus": list(self.aus), "thresholds": [float(t) for t in self.thresholds],
                   "preprocess": _plain(self.preprocess), "training": _plain(self.training),
                   "provenance": _plain(self.provenance)}
        buf = io.BytesIO()
        torch.save(payload, buf)
        return atomic_write_bytes(path, buf.getvalue())


def save_detector(path: str | Path, model: nn.Module, *, arch: str, arch_kwargs: dict, aus: Sequence[int],
                  thresholds: Sequence[float], preprocess: dict, training: dict, provenance: Any) -> Path:
    """Write ``model`` with everything needed to use it to ``path`` (atomic); returns the path.

    ``arch``/``arch_kwargs`` must rebuild ``model`` with :func:`build_network` (checked here: the
    state dict must load into the rebuilt network); ``provenance`` a
    :class:`~au_lib.provenance.Provenance` or a dict.
    """
    try:
        build_network(arch, arch_kwargs).load_state_dict(model.state_dict(), strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: the model does not match architecture {arch} {arch_kwargs} ({exc})") from exc
    det = Detector(model, arch={"name": arch, "kwargs": arch_kwargs}, aus=aus, thresholds=thresholds,
                   preprocess=preprocess, training=training, provenance=_plain(provenance))
    return det.save(path)


def load_detector(path: str | Path, device: torch.device | str = "cpu") -> Detector:
    """Load a detector file (``weights_only=True``; no other file needed) onto ``device``.

    Raises:
        FileNotFoundError: naming the path if it does not exist.
        DetectorFileError: naming the path if it is unreadable, truncated, not a detector file, or its
            weights do not fit its architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"detector file not found: {path}" + (" (a folder)" if path.is_dir() else ""))
    if not zipfile.is_zipfile(path):
        raise DetectorFileError(f"{path}: not a detector file (not a torch zip archive: truncated, damaged or "
                                f"another format)")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError, KeyError) as exc:
        raise DetectorFileError(f"{path}: not a readable detector file (truncated or not a torch file: "
                                f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    except Exception as exc:  # the unpickler's own errors (weights_only refuses foreign objects)
        why = [ln.strip() for ln in str(exc).splitlines() if "Unpickler error" in ln] or [type(exc).__name__]
        raise DetectorFileError(f"{path}: not a detector file: it holds objects other than plain data and "
                                f"tensors ({why[0][:200]})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise DetectorFileError(f"{path}: not an au_lib detector file (no format={FORMAT!r} entry; "
                                f"a training checkpoint? save one with au_lib.detect.save_detector)")
    if d.get("version") != VERSION:
        raise DetectorFileError(f"{path}: detector file version {d.get('version')}; this au_lib reads {VERSION}")
    missing = [k for k in ("arch", "state_dict", "aus", "thresholds", "preprocess") if k not in d]
    if missing:
        raise DetectorFileError(f"{path}: detector file lacks {missing}")
    try:
        model = build_network(d["arch"]["name"], d["arch"]["kwargs"])
        model.load_state_dict(d["state_dict"], strict=True)
        det = Detector(model, arch=d["arch"], aus=d["aus"], thresholds=d["thresholds"], preprocess=d["preprocess"],
                       training=d.get("training"), provenance=d.get("provenance"), path=path)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise DetectorFileError(f"{path}: inconsistent detector file ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:300]})") from None
    return det.to(device)


__all__ = ["ARCHS", "Detector", "DetectorFileError", "EXTRACTORS", "FORMAT", "ProbeNetwork", "VERSION",
           "build_network", "load_detector", "save_detector", "synthau_preprocess", "template_preprocess"]

"""SynthAU: the embedded synthetic multimodal face-video dataset, generated from real face geometry.

A linear AU-to-mesh model (py-feat 2.1.5's ``au_to_mesh_pls_v4``, fitted to real faces) drives a
478-vertex MediaPipe face mesh; subjects differ in shape, colours, texture and thermal signature;
videos play AU events with realistic co-occurrence under smoothly drifting head pose and per-video
lighting; a vectorised z-buffer rasteriser renders RGB, depth and thermal frames. Pairs of frames
come with exact ground-truth displacements for TCAE.

Registry protocol (see :mod:`au_lib.data.registry`): :func:`open_dataset`, :func:`folds`, :data:`AUS`;
plus :func:`open_pairs` and :func:`view_subjects`.
"""

from __future__ import annotations

from au_lib.data.synth.config import SYNTH_PROFILES, VIEWS, SynthConfig
from au_lib.data.synth.dataset import (NORMALISATION, SynthAUDataset, SynthPairDataset, folds, open_dataset,
                                       open_pairs, view_subjects)
from au_lib.data.synth.facemodel import detector_to_facs, facs_to_detector
from au_lib.facs import BP4D_AUS

AUS: tuple[int, ...] = BP4D_AUS  # the default view ("bp4d"); each dataset's ``.aus`` is authoritative

__all__ = ["AUS", "NORMALISATION", "SYNTH_PROFILES", "VIEWS", "SynthAUDataset", "SynthConfig", "SynthPairDataset",
           "detector_to_facs", "facs_to_detector", "folds", "open_dataset", "open_pairs", "view_subjects"]

"""Published F1 numbers on the *real* BP4D and DISFA datasets, for reference beside our synthetic runs.

These are reported results (F1 in %, 3-fold subject-exclusive, mean over AUs), copied with their
source from the project's research notes (``shared/research/tcae.md`` section 2.2 and ``mcm.md`` section 4).
They are not reproduced here and are not comparable with numbers measured on the synthetic data.
Where a per-AU row is not publicly verifiable it is left out (``per_au=None``).
"""

from __future__ import annotations

from dataclasses import dataclass

from au_lib.facs import BP4D_AUS, DISFA_AUS


@dataclass(frozen=True)
class Anchor:
    """One published result: ``mean`` and optional ``per_au`` F1 (%) in the dataset's AU order."""

    method: str
    dataset: str  # "bp4d" | "disfa"
    mean: float
    per_au: tuple[float, ...] | None
    kind: str  # "supervised" | "self-supervised (linear probe)" | "self-supervised (fine-tuned)"
    source: str

    def __post_init__(self) -> None:
        aus = BP4D_AUS if self.dataset == "bp4d" else DISFA_AUS
        if self.per_au is not None and len(self.per_au) != len(aus):
            raise ValueError(f"{self.method}: {len(self.per_au)} per-AU values for {len(aus)} {self.dataset} AUs")


ANCHORS: tuple[Anchor, ...] = (
    Anchor("TCAE", "bp4d", 56.1, None, "self-supervised (linear probe)",
           "Li et al. CVPR 2019, Table 1 mean, as quoted in mysee1989/TCAE issue #11 (per-AU row unverified)"),
    Anchor("TAE (TCAE journal version)", "bp4d", 60.3,
           (47.0, 45.9, 50.9, 74.7, 72.0, 82.4, 85.6, 62.3, 48.1, 62.3, 45.9, 46.3),
           "self-supervised (linear probe)", "EmoCo (Sun et al.) Table I, row TAE*"),
    Anchor("TAE (TCAE journal version)", "disfa", 51.5,
           (21.4, 19.6, 64.5, 46.8, 44.0, 73.2, 85.1, 55.3),
           "self-supervised (linear probe)", "EmoCo (Sun et al.) Table II, row TAE*"),
    Anchor("MCM", "bp4d", 66.0,
           (54.4, 48.5, 60.6, 79.1, 77.0, 84.0, 89.1, 61.7, 59.3, 64.7, 53.0, 60.5),
           "self-supervised (fine-tuned)", "FMAE-IAT (Ning et al. 2024) Table 2, row 'MCM [81] WACV'24'"),
    Anchor("JAA-Net", "bp4d", 60.0,
           (47.2, 44.0, 54.9, 77.5, 74.6, 84.0, 86.9, 61.9, 43.6, 60.3, 42.7, 41.9),
           "supervised", "ME-GraphAU README (Shao et al. ECCV 2018)"),
    Anchor("JAA-Net", "disfa", 56.0, (43.7, 46.2, 56.0, 41.4, 44.7, 69.6, 88.3, 58.4),
           "supervised", "ME-GraphAU README (Shao et al. ECCV 2018)"),
    Anchor("ME-GraphAU (Swin-B)", "bp4d", 65.5,
           (52.7, 44.3, 60.9, 79.9, 80.1, 85.3, 89.2, 69.4, 55.4, 64.4, 49.8, 55.1),
           "supervised", "ME-GraphAU README (Luo et al. IJCAI 2022)"),
    Anchor("ME-GraphAU (ResNet-50)", "disfa", 63.1, (54.6, 47.1, 72.9, 54.0, 55.7, 76.7, 91.1, 53.0),
           "supervised", "ME-GraphAU README (Luo et al. IJCAI 2022)"),
    Anchor("FMAE (ViT-L, Face9M)", "bp4d", 66.6, None, "self-supervised (fine-tuned)",
           "FMAE-IAT README (Ning et al. 2024)"),
    Anchor("FMAE (ViT-L, Face9M)", "disfa", 68.7, None, "self-supervised (fine-tuned)",
           "FMAE-IAT README (Ning et al. 2024)"),
    Anchor("FMAE-IAT", "bp4d", 67.1, None, "self-supervised (fine-tuned)", "FMAE-IAT abstract (Ning et al. 2024)"),
    Anchor("FMAE-IAT", "disfa", 70.1, (64.7, 61.3, 70.8, 58.1, 59.4, 79.9, 95.2, 71.3),
           "self-supervised (fine-tuned)", "FMAE-IAT README (Ning et al. 2024)"),
)
"""Published anchors (real data). MCM's DISFA numbers were not found in public sources."""


def anchors(dataset: str) -> list[Anchor]:
    """The anchors reported on ``dataset`` (``bp4d`` or ``disfa``)."""
    key = dataset.lower()
    if key not in ("bp4d", "disfa"):
        raise KeyError(f"no anchors for {dataset!r}; choose bp4d or disfa")
    return [a for a in ANCHORS if a.dataset == key]


def anchors_table(dataset: str):
    """A pandas DataFrame of the anchors of ``dataset``: AU columns, ``Avg``, ``kind`` and ``source``."""
    import numpy as np
    import pandas as pd

    aus = BP4D_AUS if dataset.lower() == "bp4d" else DISFA_AUS
    rows = {}
    for a in anchors(dataset):
        row = {f"AU{n}": (v if a.per_au is not None else np.nan)
               for n, v in zip(aus, a.per_au or (None,) * len(aus))}
        row.update({"Avg": a.mean, "kind": a.kind, "source": a.source})
        rows[a.method] = row
    return pd.DataFrame.from_dict(rows, orient="index")

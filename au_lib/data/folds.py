"""The standard subject-exclusive 3-fold splits of BP4D and DISFA, and helpers for any subject list.

The part lists are identical in JAA-Net, ME-GraphAU, LibreFace and FMAE. Fold convention (ME-GraphAU):
fold ``k`` (1-based) *tests* on part ``4 - k`` and trains on the other two parts:
fold 1 = train part1+part2, test part3; fold 2 = train part1+part3, test part2; fold 3 = train
part2+part3, test part1. The reported score is the mean over the three folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

BP4D_PARTS: tuple[tuple[str, ...], ...] = (
    ("F001", "F002", "F008", "F009", "F010", "F016", "F018", "F023", "M001", "M004", "M007", "M008", "M012", "M014"),
    ("F003", "F005", "F011", "F013", "F020", "F022", "M002", "M005", "M010", "M011", "M013", "M016", "M017", "M018"),
    ("F004", "F006", "F007", "F012", "F014", "F015", "F017", "F019", "F021", "M003", "M006", "M009", "M015"),
)

DISFA_PARTS: tuple[tuple[str, ...], ...] = (
    ("SN001", "SN002", "SN009", "SN010", "SN016", "SN026", "SN027", "SN030", "SN032"),
    ("SN006", "SN011", "SN012", "SN013", "SN018", "SN021", "SN024", "SN028", "SN031"),
    ("SN003", "SN004", "SN005", "SN007", "SN008", "SN017", "SN023", "SN025", "SN029"),
)

PARTS: dict[str, tuple[tuple[str, ...], ...]] = {"bp4d": BP4D_PARTS, "disfa": DISFA_PARTS}


@dataclass(frozen=True)
class Fold:
    """One fold: the subjects to train on and the subjects to test on (disjoint)."""

    index: int  # 1-based
    train: tuple[str, ...]
    test: tuple[str, ...]

    def __post_init__(self) -> None:
        overlap = set(self.train) & set(self.test)
        if overlap:
            raise ValueError(f"fold {self.index}: subjects in both train and test: {sorted(overlap)}")


def folds_from_parts(parts: Sequence[Sequence[str]]) -> list[Fold]:
    """Three folds from three parts with the ME-GraphAU numbering (fold k tests on part 4-k)."""
    if len(parts) != 3:
        raise ValueError(f"expected 3 parts, got {len(parts)}")
    out = []
    for k in (1, 2, 3):
        test_idx = 3 - k  # 0-based index of part (4 - k)
        train = tuple(s for i, p in enumerate(parts) if i != test_idx for s in p)
        out.append(Fold(k, train, tuple(parts[test_idx])))
    return out


def standard_folds(dataset: str) -> list[Fold]:
    """The published 3 folds of ``bp4d`` or ``disfa``."""
    key = dataset.lower()
    if key not in PARTS:
        raise KeyError(f"no standard folds for {dataset!r}; known: {', '.join(PARTS)}")
    return folds_from_parts(PARTS[key])


def split_subjects(subjects: Sequence[str], n_parts: int = 3, seed: int = 0) -> tuple[tuple[str, ...], ...]:
    """Deterministically partition subjects into ``n_parts`` nearly equal, disjoint parts."""
    subs = sorted(set(subjects))
    if len(subs) < n_parts:
        raise ValueError(f"need at least {n_parts} subjects to make {n_parts} parts, got {len(subs)}")
    rng = np.random.default_rng(seed)
    order = [subs[i] for i in rng.permutation(len(subs))]
    return tuple(tuple(sorted(order[i::n_parts])) for i in range(n_parts))


def validation_split(train_subjects: Sequence[str], fraction: float = 0.2, seed: int = 0
                     ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Carve validation subjects out of the *training* subjects: returns ``(train, val)``.

    Thresholds and the stopping epoch are chosen on ``val``; the test fold is never looked at.
    """
    subs = sorted(set(train_subjects))
    if len(subs) < 2:
        raise ValueError("need at least 2 training subjects to carve a validation split")
    n_val = max(1, int(round(fraction * len(subs))))
    rng = np.random.default_rng(seed)
    val = set(subs[i] for i in rng.permutation(len(subs))[:n_val])
    return tuple(s for s in subs if s not in val), tuple(sorted(val))


def labelled_subset(train_subjects: Sequence[str], fraction: float | None, seed: int | Sequence[int] = 0,
                    min_subjects: int = 2) -> tuple[str, ...]:
    """A label-scarce setting: a seeded random ``fraction`` of the training subjects (whole subjects,
    so the subset stays subject-exclusive), sorted.

    ``round(fraction * n)`` subjects, at least ``min_subjects`` (a validation split needs 2) and at
    most ``n``; ``fraction=None`` or 1 keeps all. ``seed`` (an int or a tuple such as ``(seed, fold)``)
    fixes the draw; it is a stream of its own, independent of :func:`validation_split`'s.

    Raises:
        ValueError: for a fraction outside (0, 1] or fewer than ``min_subjects`` subjects.
    """
    subs = sorted(set(train_subjects))
    if fraction is None or fraction == 1:
        return tuple(subs)
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    if len(subs) < min_subjects:
        raise ValueError(f"need at least {min_subjects} training subjects for a label fraction, got {len(subs)}")
    k = min(len(subs), max(min_subjects, int(round(fraction * len(subs)))))
    key = [int(s) for s in (seed if isinstance(seed, (tuple, list)) else (seed,))]
    rng = np.random.default_rng([*key, 0x1ABE1])
    return tuple(sorted(subs[i] for i in rng.permutation(len(subs))[:k]))

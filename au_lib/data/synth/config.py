"""SynthAU sizes per profile, and the three views (pre-training pool, BP4D-like, DISFA-like)."""

from __future__ import annotations

from dataclasses import dataclass

from au_lib.facs import BP4D_AUS, DISFA_AUS

GENERATOR_VERSION = "synthau-3"  # bump whenever generated data would change
MIN_SIZE, MAX_SIZE = 32, 512


@dataclass(frozen=True)
class SynthConfig:
    """How much SynthAU to generate. ``*_subjects``: subjects per view; ``*_sequences``: videos per
    subject; ``frames``: frames per video; ``image_size``: pixels (square); ``chunk``: frames rendered
    per batch."""

    pretrain_subjects: int
    bp4d_subjects: int
    disfa_subjects: int
    pretrain_sequences: int
    bp4d_sequences: int
    disfa_sequences: int
    frames: int
    image_size: int
    chunk: int = 64


SYNTH_PROFILES: dict[str, SynthConfig] = {
    "smoke": SynthConfig(6, 6, 6, 2, 2, 2, 6, 64, 32),
    "cpu": SynthConfig(96, 240, 160, 4, 4, 4, 24, 64, 96),
    "paper": SynthConfig(140, 240, 160, 8, 4, 4, 48, 224, 64),
}


@dataclass(frozen=True)
class View:
    """A view of SynthAU that mirrors one paper setting."""

    name: str
    prefix: str  # subject id prefix; views never share subjects
    aus: tuple[int, ...]  # the ``au`` vector's AUs
    min_level: int  # occurrence threshold on the FACS level (1 = A, 2 = B)
    description: str


VIEWS: dict[str, View] = {
    "pretrain": View("pretrain", "P", BP4D_AUS, 1, "BP4D+-like multimodal pre-training pool (RGB, depth, thermal)"),
    "bp4d": View("bp4d", "B", BP4D_AUS, 1, "BP4D-like: 12 AUs, occurrence at intensity >= A"),
    "disfa": View("disfa", "D", DISFA_AUS, 2, "DISFA-like: 8 AUs, occurrence at intensity >= 2 (B)"),
}


def get_view(view: str) -> View:
    """The :class:`View` called ``view``; ``KeyError`` lists the known views."""
    try:
        return VIEWS[str(view).lower()]
    except KeyError:
        raise KeyError(f"unknown SynthAU view {view!r}; choose one of {', '.join(VIEWS)}") from None


def view_counts(cfg: SynthConfig, view: str) -> tuple[int, int]:
    """(subjects, sequences per subject) of ``view`` under ``cfg``."""
    v = get_view(view).name
    return getattr(cfg, f"{v}_subjects"), getattr(cfg, f"{v}_sequences")


def check_size(image_size: int) -> int:
    """Validate an image size in pixels."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int,)) and not hasattr(image_size, "__index__"):
        raise TypeError(f"image_size must be an integer number of pixels, got {image_size!r}")
    size = int(image_size)
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"image_size={image_size}: must be between {MIN_SIZE} and {MAX_SIZE} pixels")
    return size

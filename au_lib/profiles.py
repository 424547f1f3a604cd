"""Run profiles: one switch, ``AU_PROFILE=smoke|cpu|paper``, selects every size in the project.

A profile is *data*. This module only names the profiles and reads the switch; each component keeps
its own table of settings keyed by profile name (for example ``au_lib.data.synth.SYNTH_PROFILES``)
and picks its row with :func:`pick`. That keeps the numbers next to the code that uses them, without
``if profile == ...`` branches scattered through the code.

- ``smoke``: CI. Seconds per chapter; tiny images and models. Its numbers mean nothing.
- ``cpu``: the default, for a reader without a GPU; the outputs stored in the book come from it.
- ``paper``: the papers' sizes (ViT-B/16 at 224, TCAE at 256) on a CUDA GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Mapping, TypeVar

PROFILES: tuple[str, ...] = ("smoke", "cpu", "paper")
DEFAULT_PROFILE = "cpu"
ENV_VAR = "AU_PROFILE"

T = TypeVar("T")


def current_profile() -> str:
    """Return the active profile name from ``$AU_PROFILE`` (default ``cpu``).

    Raises:
        ValueError: if the variable names an unknown profile.
    """
    name = os.environ.get(ENV_VAR, DEFAULT_PROFILE).strip().lower() or DEFAULT_PROFILE
    return check_profile(name)


def check_profile(name: str) -> str:
    """Validate a profile name and return it lower-cased."""
    key = str(name).strip().lower()
    if key not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)} "
                         f"(set {ENV_VAR} or pass --profile)")
    return key


def pick(table: Mapping[str, T], profile: str | None = None, **overrides) -> T:
    """Pick the row of ``table`` for ``profile`` (default: the active one).

    ``overrides`` replace fields of a dataclass row, e.g. ``pick(TABLE, epochs=3)``.
    """
    name = check_profile(profile) if profile is not None else current_profile()
    missing = [p for p in PROFILES if p not in table]
    if missing:
        raise KeyError(f"profile table lacks rows for {missing}")
    row = table[name]
    if overrides:
        row = replace(row, **overrides)  # type: ignore[type-var]
    return row


@dataclass(frozen=True)
class RunSettings:
    """Settings every run shares, whatever the component."""

    seed: int = 0
    threads: int | None = None  # None: leave torch's default
    progress: bool = True


RUN_PROFILES: dict[str, RunSettings] = {
    "smoke": RunSettings(seed=0, threads=1, progress=False),
    "cpu": RunSettings(seed=0, threads=None, progress=True),
    "paper": RunSettings(seed=0, threads=None, progress=True),
}

"""AU and head-pose sequences: onset-apex-offset events with realistic co-occurrence, smooth pose drift.

Each sequence plays one *task* (loosely after BP4D's eight emotion-eliciting tasks). A task draws AU
*events* from a set of co-occurring combinations (6+12, 1+2(+5+26), 4+7(+23), 1+4+15, 9+10, 17+24,
25+26, ...); an event has an onset ramp, an apex and an offset ramp (raised-cosine), an apex
intensity per AU on the FACS 0-5 scale, and the intensity of an AU at a frame is the maximum over
events (apex from B to E). Blinks (AU43) are added at random, and AUs that BP4D subjects often hold
are held through a whole video at a clearly visible level (B to D) with probabilities :data:`HOLD`,
tuned so that the BP4D-like occurrence rates match BP4D's (:data:`.calibration.BP4D_RATES`, within
0.05 per AU). Head pose drifts smoothly (a sum of random sinusoids with periods of 8-40 frames, so
two frames of a video differ by a few degrees) within yaw +-30, pitch +-20, roll +-15 degrees, with
small translation and scale changes that the aligned crop removes (see :func:`.render.align_crop`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from au_lib.facs import PYFEAT_MESH_AUS

# (AU combination, relative frequency) per task
TASKS: dict[str, tuple[tuple[tuple[int, ...], float], ...]] = {
    "happy": (((6, 12), 4.0), ((6, 12, 25), 3.0), ((6, 7, 12, 25, 26), 1.5), ((12,), 1.0), ((10, 12, 14), 1.0)),
    "sad": (((1, 4, 15), 1.5), ((1, 4), 0.5), ((15, 17), 2.0), ((17, 24), 1.0), ((4, 7), 0.4)),
    "startle": (((1, 2, 5), 2.0), ((1, 2, 5, 25, 26), 3.0), ((1, 2), 2.0), ((20, 25), 1.0)),
    "embarrassment": (((6, 12), 2.0), ((12, 14), 2.0), ((12, 24), 1.5), ((17, 24), 1.0), ((10, 14), 1.0)),
    "fear": (((1, 2, 4, 5, 20), 2.0), ((1, 2, 4), 1.5), ((20, 25), 1.0), ((4, 7), 0.4), ((25, 26), 1.0)),
    "pain": (((4, 6, 7, 9, 10), 1.5), ((4, 7), 0.8), ((6, 7, 10), 1.5), ((9, 10), 1.0), ((4, 6, 7, 43), 1.0)),
    "anger": (((4, 7, 23), 2.0), ((4, 7, 23, 24), 1.0), ((4, 7), 0.6), ((17, 24), 1.5), ((10, 17, 23), 1.0)),
    "disgust": (((9, 10), 3.0), ((9, 10, 17), 1.5), ((4, 9), 0.4), ((10, 14), 1.0), ((15, 17), 1.0)),
}
TASK_NAMES = tuple(TASKS)
# combinations that occur in every task now and then (talking, small movements)
COMMON = (((25,), 0.8), ((25, 26), 0.8), ((6, 12), 2.0), ((6, 7, 12), 1.2), ((10, 14), 1.2), ((7, 10), 1.0),
          ((12, 14), 1.0), ((14,), 0.6), ((17,), 0.8), ((10,), 1.0), ((7,), 0.8), ((11,), 0.3), ((28,), 0.2),
          ((2,), 0.2))
# Probability that an AU is held through a whole video (BP4D's frequent, sustained AUs), tuned so the
# BP4D-like occurrence rates match BP4D's (see :data:`.calibration.BP4D_RATES` and the data chapter).
HOLD: dict[int, float] = {1: 0.01, 6: 0.19, 7: 0.41, 10: 0.38, 12: 0.31, 14: 0.33, 15: 0.11, 17: 0.20,
                          23: 0.12, 24: 0.05}
HOLD_LEVEL = (1.5, 3.5)  # FACS, B to C/D: a held AU is clearly visible
EVENT_LEVEL = (1.5, 5.0)  # apex intensity of an event
EVENT_EVERY = 6.0  # frames between event starts, on average
POSE_LIMITS = (30.0, 20.0, 15.0)  # yaw, pitch, roll, degrees


@dataclass(frozen=True)
class Scene:
    """Per-sequence imaging conditions."""

    light: np.ndarray  # (3,) unit direction towards the light, camera coordinates (x right, y up, z to camera)
    ambient: float
    diffuse: float
    specular: float
    tint: np.ndarray  # (3,) light colour
    room_temp: float  # degrees Celsius (thermal background)
    background_seed: int


@dataclass(frozen=True)
class Sequence:
    """One video: FACS intensities (T, 20) over ``PYFEAT_MESH_AUS``, pose (T, 6) = yaw, pitch, roll (deg),
    tx, ty (fraction of the image), scale (1 = nominal), and the scene."""

    task: str
    au: np.ndarray
    pose: np.ndarray
    scene: Scene


def _ramp(t: np.ndarray, start: float, onset: float, apex: float, offset: float) -> np.ndarray:
    """Raised-cosine onset, flat apex, raised-cosine offset; values in [0, 1]."""
    a = np.clip((t - start) / onset, 0, 1)
    b = np.clip((t - start - onset - apex) / offset, 0, 1)
    return 0.5 - 0.5 * np.cos(math.pi * a) - (0.5 - 0.5 * np.cos(math.pi * b))


def au_events(rng: np.random.Generator, task: str, n_frames: int, gain: float = 1.0) -> np.ndarray:
    """FACS intensities (n_frames, 20) for ``task`` (continuous 0-5): events, holds and blinks."""
    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    col = {au: i for i, au in enumerate(PYFEAT_MESH_AUS)}
    combos = list(TASKS[task]) + list(COMMON)
    p = np.array([w for _, w in combos])
    p = p / p.sum()
    p_task = p[:len(TASKS[task])] / p[:len(TASKS[task])].sum()
    t = np.arange(n_frames, dtype=np.float64)
    out = np.zeros((n_frames, len(PYFEAT_MESH_AUS)))
    # events: about one starting every EVENT_EVERY frames, at least one per sequence, the first from the task
    n_events = max(1, rng.poisson(n_frames / EVENT_EVERY))
    for e in range(n_events):
        k = rng.choice(len(TASKS[task]), p=p_task) if e == 0 else rng.choice(len(combos), p=p)
        aus = combos[k][0]
        onset, apex, offset = rng.uniform(2, 6), rng.uniform(2, 14), rng.uniform(2, 7)
        start = rng.uniform(-onset - apex, n_frames - 1) if e else rng.uniform(-onset, max(0.0, n_frames / 2 - onset))
        level = rng.uniform(*EVENT_LEVEL)
        curve = _ramp(t, start, onset, apex, offset)
        for au in aus:
            peak = np.clip(level * rng.uniform(0.8, 1.1) * gain, 1.0, 5.0)
            out[:, col[au]] = np.maximum(out[:, col[au]], peak * curve)
    # held AUs: present through the whole video at a slowly varying level (BP4D's sustained AUs)
    draw = rng.random(len(HOLD))
    levels = rng.uniform(*HOLD_LEVEL, size=len(HOLD))
    phase = rng.uniform(0, 2 * math.pi, size=len(HOLD))
    for (au, prob), u, level, ph in zip(HOLD.items(), draw, levels, phase):
        if u < prob:
            held = level * gain * (1 + 0.12 * np.sin(2 * math.pi * t / 30.0 + ph))
            out[:, col[au]] = np.maximum(out[:, col[au]], np.clip(held, 1.0, 5.0))
    # blinks
    n_blinks = rng.poisson(n_frames / 25.0)
    for _ in range(n_blinks):
        start = rng.uniform(-1, n_frames)
        out[:, col[43]] = np.maximum(out[:, col[43]], 5.0 * _ramp(t, start, 1.0, rng.uniform(0, 1.5), 1.5))
    return np.clip(out, 0, 5)


def pose_track(rng: np.random.Generator, n_frames: int) -> np.ndarray:
    """Smooth head pose (n_frames, 6): yaw, pitch, roll (deg), tx, ty (image fraction), scale."""
    t = np.arange(n_frames, dtype=np.float64)
    cols = []
    limits = list(POSE_LIMITS) + [0.04, 0.04, 0.05]
    for lim in limits:
        amp = rng.uniform(0.3, 1.0)
        val = np.zeros(n_frames)
        for _ in range(3):
            period = rng.uniform(8, 40)
            val += rng.normal() * np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi))
        val = val / 2.0 + rng.normal(0, 0.4)
        cols.append(lim * amp * np.tanh(val))
    pose = np.stack(cols, -1)
    pose[:, 5] += 1.0
    return pose


def make_scene(rng: np.random.Generator) -> Scene:
    az = np.radians(rng.uniform(-55, 55))
    el = np.radians(rng.uniform(5, 50))
    light = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
    return Scene(light=light, ambient=float(rng.uniform(0.25, 0.45)), diffuse=float(rng.uniform(0.55, 0.85)),
                 specular=float(rng.uniform(0.03, 0.15)), tint=np.clip(rng.normal(1, 0.06, 3), 0.8, 1.2),
                 room_temp=float(rng.uniform(22, 25)), background_seed=int(rng.integers(2 ** 31)))


def make_sequence(rng: np.random.Generator, task: str, n_frames: int, gain: float = 1.0) -> Sequence:
    """Draw one sequence of ``n_frames`` frames for ``task`` (deterministic in ``rng``)."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    return Sequence(task=task, au=au_events(rng, task, n_frames, gain), pose=pose_track(rng, n_frames),
                    scene=make_scene(rng))


def facs_level(intensity: np.ndarray) -> np.ndarray:
    """Continuous FACS intensity -> integer level 0-5 (0 absent, 1 = A ... 5 = E), rounding to nearest."""
    return np.clip(np.floor(np.asarray(intensity) + 0.5), 0, 5).astype(np.int64)


def occurrence(intensity: np.ndarray, min_level: int = 1) -> np.ndarray:
    """Occurrence labels (0/1): level >= ``min_level`` (1 = A, BP4D-style; 2 = B, DISFA-style)."""
    if not 1 <= min_level <= 5:
        raise ValueError(f"min_level must be 1..5 (A..E), got {min_level}")
    return (facs_level(intensity) >= min_level).astype(np.int64)

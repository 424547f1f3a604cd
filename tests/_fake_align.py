"""A stand-in for the dlib aligner in fault tests: fast, deterministic, picklable (spawned workers).

``align`` "finds" a face in any image whose mean grey level is at least 10 (a black frame has no
face) and returns the whole image scaled to ``size`` x ``size``; images of the wrong shape or dtype
raise the same ``ValueError`` as the real aligner. ``delay`` slows each frame down and ``pid_dir``
records the process ids that aligned frames (for the worker-death test).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from au_lib.data.align import AlignedFace, NoFaceError, _check_image, warp_to_crop


class FakeAligner:
    def __init__(self, size: int = 16, delay: float = 0.0, pid_dir: str | None = None) -> None:
        self.size, self.delay, self.pid_dir = size, delay, pid_dir

    def settings(self) -> dict:
        return {"size": self.size, "fake": True}

    def align(self, image: np.ndarray, *, name: str = "image", previous_box=None) -> AlignedFace:
        if self.pid_dir:
            Path(self.pid_dir, str(os.getpid())).touch()
        if self.delay:
            time.sleep(self.delay)
        img = _check_image(image)
        if img.mean() < 10:
            raise NoFaceError(f"{name}: no face found")
        h, w = img.shape[:2]
        mat = np.array([[self.size / w, 0, 0], [0, self.size / h, 0], [0, 0, 1]], dtype=np.float64)
        crop = warp_to_crop(img, mat, self.size)
        return AlignedFace(crop=crop, landmarks=np.zeros((68, 2)), crop_landmarks=np.zeros((68, 2)), matrix=mat,
                           box=(0, 0, w, h), score=1.0)

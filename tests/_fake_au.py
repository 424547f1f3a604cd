"""A tiny in-test dataset implementing the registry protocol (``open_dataset``, ``folds``, ``AUS``).

Nine subjects, 24 frames each, 32x32 images. AU ``i`` present brightens its own 8x8 block of the
image (plus noise), so a classifier *can* learn it; depth/thermal are noisy copies.
"""

from __future__ import annotations

import numpy as np
import torch

from au_lib.data.folds import folds_from_parts

AUS = (1, 2, 4, 6)
SUBJECTS = tuple(f"S{i:02d}" for i in range(9))
FRAMES = 24


class FakeAU(torch.utils.data.Dataset):
    def __init__(self, subjects=None, modalities=("rgb",), image_size=32, unknown_rate=0.05, seed=0):
        self.subjects = tuple(subjects or SUBJECTS)
        self.modalities = tuple(modalities)
        self.size = int(image_size)
        self.aus = AUS
        rng = np.random.default_rng(seed)
        n = len(SUBJECTS) * FRAMES
        self._labels = (rng.random((n, len(AUS))) < np.array([0.3, 0.2, 0.4, 0.25])).astype(np.float32)
        self._labels[rng.random((n, len(AUS))) < unknown_rate] = -1
        self._index = [(s, f) for s in self.subjects for f in range(FRAMES)]

    def __len__(self):
        return len(self._index)

    def __getitem__(self, i):
        s, f = self._index[i]
        row = SUBJECTS.index(s) * FRAMES + f
        lab = self._labels[row]
        g = torch.Generator().manual_seed(row)
        img = 0.3 + 0.1 * torch.rand(3, self.size, self.size, generator=g) + 0.05 * SUBJECTS.index(s) / 9
        b = self.size // 4
        for k, v in enumerate(lab):
            if v == 1:
                img[:, (k // 2) * b * 2:(k // 2) * b * 2 + b, (k % 2) * b * 2:(k % 2) * b * 2 + b] += 0.4
        out = {"rgb": img.clamp(0, 1), "au": torch.from_numpy(lab.copy()), "subject": s,
               "sequence": f"{s}-T1", "frame": f, "au_intensity": torch.from_numpy(np.where(lab == 1, 3.0, 0.0).astype(np.float32))}
        if "depth" in self.modalities:
            out["depth"] = img.mean(0, keepdim=True)
        if "thermal" in self.modalities:
            out["thermal"] = 1 - img.mean(0, keepdim=True)
        return out


def open_dataset(*, root=None, subjects=None, split=None, modalities=("rgb",), image_size=None, profile=None, **kw):
    return FakeAU(subjects, modalities, image_size or 32, **kw)


def folds(*, root=None, profile=None, **kw):
    return folds_from_parts([SUBJECTS[0:3], SUBJECTS[3:6], SUBJECTS[6:9]])

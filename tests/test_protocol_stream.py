"""The streaming protocol: frames memory-mapped from disk give the same tables, features and F1 as
the in-memory protocol; integer storage when lossless, float32 otherwise; lazy views."""

from __future__ import annotations

import importlib
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
fake = importlib.import_module("_fake_au")

from au_lib.data import registry  # noqa: E402
from au_lib.experiments import protocol as P  # noqa: E402
from au_lib.train.finetune import FrameArray, TrainConfig, materialize, materialize_to_disk, open_frame_folder  # noqa: E402


class Quantized(fake.FakeAU):
    """FakeAU with 8-bit RGB and 16-bit depth/thermal, decoded as the real datasets do."""

    def __getitem__(self, i):
        out = super().__getitem__(i)
        out["rgb"] = (out["rgb"] * 255).round().to(torch.uint8).float() / 255.0
        for m in ("depth", "thermal"):
            if m in out:
                out[m] = (out[m] * 65535).round().to(torch.int32).to(torch.float32) / 65535.0
        return out


def _quantized_open(**kw):
    return Quantized(kw.get("subjects"), kw.get("modalities", ("rgb",)), kw.get("image_size") or 32)


@pytest.fixture(autouse=True)
def _fake_registry(monkeypatch, tmp_path):
    monkeypatch.setitem(registry.DATASET_MODULES, "fakeau", "_fake_au")
    monkeypatch.setenv("AU_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("quantized", [True, False])
def test_streamed_table_equals_in_memory(tmp_path, quantized):
    mods = ("rgb", "depth", "thermal")
    ds = Quantized(modalities=mods) if quantized else fake.FakeAU(modalities=mods)
    mem = materialize(ds, mods, aus=fake.AUS, batch_size=50)
    st = materialize_to_disk(ds, tmp_path / "t.frames", mods, aus=fake.AUS, batch_size=50)
    assert isinstance(st.x, FrameArray) and st.x.shape == tuple(mem.x.shape)
    dtypes = {np.load(f, mmap_mode="r").dtype.name for f in (tmp_path / "t.frames").glob("x_*.npy")}
    assert dtypes == ({"uint8", "uint16"} if quantized else {"float32"})
    assert isinstance(np.load(tmp_path / "t.frames" / "x_rgb.npy", mmap_mode="r"), np.memmap)
    assert torch.equal(st.x.read(), mem.x)
    assert torch.equal(st.au, mem.au) and (st.subject == mem.subject).all() and st.channels == mem.channels
    # lazy views index like the tensor
    rows = np.array([17, 3, 200, 3])
    assert torch.equal(st.x[rows].read(), mem.x[rows])
    assert torch.equal(st.x[:, [0, 4]][rows[:2]].read(), mem.x[:, [0, 4]][rows[:2]])
    assert torch.equal(st.x[:, :3].take(torch.tensor([5, 1])), mem.x[[5, 1], :3])
    assert torch.equal(st.x[5, :3], mem.x[5, :3])
    assert torch.equal(st.x[10:20][2:4].read(), mem.x[12:14])
    again = open_frame_folder(tmp_path / "t.frames")
    assert torch.equal(again.x[rows].read(), mem.x[rows])
    with pytest.raises(FileNotFoundError, match="no meta.pt"):
        open_frame_folder(tmp_path)


def test_interrupted_write_leaves_no_table(tmp_path):
    class Broken(fake.FakeAU):
        def __getitem__(self, i):
            if i == 100:
                raise OSError("disk read failed")
            return super().__getitem__(i)
    with pytest.raises(OSError):
        materialize_to_disk(Broken(), tmp_path / "b.frames", ("rgb",), aus=fake.AUS)
    assert not (tmp_path / "b.frames").exists()


@pytest.mark.parametrize("method", ["probe:pixels", "scratch:resnet18"])
def test_streaming_protocol_gives_the_same_f1(tmp_path, monkeypatch, method):
    monkeypatch.setattr(fake, "open_dataset", _quantized_open)
    s = replace(P.protocol_settings("smoke", max_frames_per_subject=12),
                scratch=TrainConfig(epochs=2, batch_size=16, lr=1e-3, patience=2, warmup_epochs=0.5),
                probe=TrainConfig(epochs=5, batch_size=32, lr=3e-2, weight_decay=1e-4, layer_decay=1.0,
                                  warmup_epochs=0, patience=5, flip=False))
    res = {}
    for stream in (False, True):
        res[stream] = P.run_protocol(method, "fakeau", {}, profile="smoke", settings=replace(s, stream_frames=stream),
                                     out=tmp_path / f"{stream}.json", device="cpu", progress=False)
    assert list((Path(P.cache_dir()) / "detection" / "frames").glob("*.frames"))
    a, b = res[False]["metrics"], res[True]["metrics"]
    assert a["honest"]["per_au"] == b["honest"]["per_au"] and a["honest"]["mean"] == b["honest"]["mean"]
    assert a["fixed_threshold"] == b["fixed_threshold"]
    assert [r["history"] for r in a["runs"]] == [r["history"] for r in b["runs"]]
    assert res[True]["extra"]["frames"] == res[False]["extra"]["frames"] == 12 * len(fake.SUBJECTS)

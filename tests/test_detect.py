"""The detector file, streamed media and ``detect``: round trip, table shape, face-free frames,
clear errors, bounded memory on long videos (smoke sizes: seconds)."""

from __future__ import annotations

import gc
import math
import tracemalloc
import weakref

import numpy as np
import pytest
import torch

from au_lib.data.media import Frame, MediaError, open_media, write_video
from au_lib.detect import DetectorFileError, columns, detect, load_detector, save_detector, synthau_preprocess
from au_lib.detect.file import build_network
from au_lib.detect.run import iter_detections, write_table

from real_fixtures import blank, face

AUS = (1, 2, 4, 12)
SIZE = 32


def _detector_file(path, arch="torchvision-resnet", kwargs=None, seed=0):
    kwargs = kwargs or {"layers": [1, 1, 1, 1], "num_classes": len(AUS)}
    torch.manual_seed(seed)
    model = build_network(arch, kwargs)
    save_detector(path, model, arch=arch, arch_kwargs=kwargs, aus=AUS, thresholds=[0.3, 0.4, 0.5, 0.6],
                  preprocess=synthau_preprocess(SIZE), training={"data": "test"}, provenance={"profile": "smoke"})
    return model.eval()


@pytest.fixture(scope="module")
def det_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("det") / "det.pt"
    _detector_file(p)
    return p


@pytest.mark.parametrize("arch,kwargs", [
    ("torchvision-resnet", {"layers": [1, 1, 1, 1], "num_classes": len(AUS)}),
    ("encoder-classifier", {"encoder": "mcm", "config": None, "dim": 48, "num_aus": len(AUS)}),
])
def test_round_trip_gives_the_in_memory_outputs(tmp_path, arch, kwargs):
    if kwargs.get("encoder") == "mcm":
        from au_lib.models.mcm import MCM_PROFILES

        kwargs = {**kwargs, "config": MCM_PROFILES["smoke"].to_dict()}
    model = _detector_file(tmp_path / "d.pt", arch, kwargs, seed=3)
    raw = torch.load(tmp_path / "d.pt", weights_only=True)  # plain data and tensors only
    assert raw["format"] == "au_lib.detector" and raw["aus"] == list(AUS)
    det = load_detector(tmp_path / "d.pt")
    x = torch.rand(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = torch.sigmoid(model(x)).double().numpy()
    np.testing.assert_allclose(det.probabilities(x), ref, rtol=1e-6, atol=1e-7)
    assert det.aus == AUS and det.thresholds.tolist() == [0.3, 0.4, 0.5, 0.6]
    assert det.preprocess["crop_side"] == 2.6 and det.image_size == SIZE
    np.testing.assert_array_equal(det.decisions(ref), (ref >= det.thresholds).astype(int))


def test_save_refuses_a_model_that_does_not_fit_its_architecture(tmp_path):
    model = build_network("torchvision-resnet", {"layers": [2, 2, 2, 2], "num_classes": 4})
    with pytest.raises(ValueError, match="does not match"):
        save_detector(tmp_path / "d.pt", model, arch="torchvision-resnet",
                      arch_kwargs={"layers": [1, 1, 1, 1], "num_classes": 4}, aus=AUS, thresholds=[0.5] * 4,
                      preprocess=synthau_preprocess(SIZE), training={}, provenance={})
    assert not (tmp_path / "d.pt").exists()


def test_bad_detector_files_are_named(tmp_path, det_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_detector(tmp_path / "missing.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(det_path.read_bytes()[:5000])
    with pytest.raises(DetectorFileError, match="cut.pt"):
        load_detector(cut)
    other = tmp_path / "other.pt"
    torch.save({"model": {}, "config": {}}, other)
    with pytest.raises(DetectorFileError, match="other.pt.*not an au_lib detector"):
        load_detector(other)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "au_lib.detector", "obj": torch.nn.Linear(2, 2)}, pickled)
    with pytest.raises(DetectorFileError, match="pickled.pt"):
        load_detector(pickled)


def test_eye_mouth_matrix_is_synthau_align_crop():
    """The real-face alignment applies SynthAU's rule: same crop coordinates for the same four points."""
    from au_lib.data.align import eye_mouth_crop_matrix
    from au_lib.data.synth.render import CROP_SIDE, EYE_TO_CENTRE, align_crop

    rng = np.random.default_rng(0)
    size = 64
    for _ in range(5):
        marks = rng.normal(0, 0.3, (4, 2)) + np.array([[-0.3, 0.2], [0.3, 0.2], [-0.2, -0.4], [0.2, -0.4]])
        centre, u, scale = (t[0].double().numpy() for t in align_crop(torch.tensor(marks[None]), size))
        pts = rng.normal(0, 0.5, (7, 2))  # camera coordinates, y up
        rel = pts - centre
        a = rel @ u
        b = rel[:, 0] * -u[1] + rel[:, 1] * u[0]
        ref = np.stack([size / 2 + scale * a - 0.5, size / 2 - scale * b - 0.5], 1)
        lm = np.zeros((68, 2))
        flip = np.array([1.0, -1.0])  # image coordinates: y down
        lm[36:42], lm[42:48] = marks[0] * flip, marks[1] * flip
        lm[48], lm[54] = marks[2] * flip, marks[3] * flip
        mat = eye_mouth_crop_matrix(lm, size, crop_side=CROP_SIDE, eye_to_centre=EYE_TO_CENTRE)
        got = (np.c_[pts * flip, np.ones(len(pts))] @ mat.T)[:, :2]
        np.testing.assert_allclose(got, ref, atol=1e-9)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """An 8-frame video: the astronaut's face, a blank frame in the middle."""
    p = tmp_path_factory.mktemp("clip") / "clip.mp4"
    frames = [face(k) if k != 3 else blank() for k in range(8)]
    write_video(p, iter(frames), fps=10)
    return p


def test_table_has_a_row_per_decoded_frame(clip, det_path, tmp_path):
    decoded = sum(1 for _ in open_media(clip))
    table = detect(clip, det_path, batch=3, progress=False)
    assert decoded == 8 and len(table) == decoded
    assert list(table.columns) == columns(AUS)
    assert table["frame"].tolist() == list(range(8))
    np.testing.assert_allclose(table["timestamp"], np.arange(8) / 10, atol=1e-6)
    assert table["face"].tolist() == [1, 1, 1, 0, 1, 1, 1, 1]
    ok = table[table["face"] == 1]
    assert ok[[f"AU{a:02d}_p" for a in AUS]].notna().all().all() and (ok["w"] > 40).all()
    # batching does not change a frame's numbers
    single = detect(clip, det_path, batch=1, progress=False)
    np.testing.assert_allclose(single.filter(like="_p").to_numpy(), table.filter(like="_p").to_numpy(), atol=1e-6)
    out = write_table(table, tmp_path / "t.csv")
    import pandas as pd

    back = pd.read_csv(out)
    assert list(back.columns) == columns(AUS) and len(back) == 8


def test_a_face_free_image_gets_a_face_0_row(tmp_path, det_path):
    from PIL import Image

    Image.fromarray(blank(64)).save(tmp_path / "blank.png")
    table = detect(tmp_path / "blank.png", det_path, progress=False)
    assert len(table) == 1 and table["face"].iloc[0] == 0 and math.isnan(table["timestamp"].iloc[0])
    assert table.drop(columns=["frame", "timestamp", "file", "face"]).isna().all(axis=None)
    assert table["file"].iloc[0] == "blank.png"


def test_a_folder_is_read_in_natural_order(tmp_path, det_path):
    from PIL import Image

    for k, name in ((0, "img2.png"), (1, "img10.png"), (2, "img1.png")):
        Image.fromarray(face(k) if k != 1 else blank()).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    table = detect(tmp_path, det_path, progress=False)
    assert table["file"].tolist() == ["img1.png", "img2.png", "img10.png"]
    assert table["face"].tolist() == [1, 1, 0]


def test_unreadable_inputs_give_clear_errors(tmp_path, det_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00not a video" * 50)
    with pytest.raises(MediaError, match="broken.mp4"):
        detect(bad, det_path, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing.mp4"):
        detect(tmp_path / "nothing.mp4", det_path, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MediaError, match="empty.*no images"):
        detect(tmp_path / "empty", det_path, progress=False)
    bad_img = tmp_path / "bad.jpg"
    bad_img.write_bytes(b"garbage")
    with pytest.raises(MediaError, match="bad.jpg"):
        detect(bad_img, det_path, progress=False)


def test_cli_detect_writes_csv_plot_and_sheet(clip, det_path, tmp_path, capsys):
    from au_lib.cli import main

    rc = main(["detect", str(clip), "--detector", str(det_path), "--out", str(tmp_path / "o.csv"),
               "--plot", str(tmp_path / "t.png"), "--sheet", str(tmp_path / "s.png"), "--no-progress",
               "--device", "cpu"])
    assert rc == 0
    assert (tmp_path / "t.png").stat().st_size > 1000 and (tmp_path / "s.png").stat().st_size > 1000
    assert len((tmp_path / "o.csv").read_text().splitlines()) == 9
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"nope" * 10)
    assert main(["detect", str(bad), "--detector", str(det_path)]) == 2
    assert "x.mp4" in capsys.readouterr().err
    assert main(["detect", str(clip), "--detector", str(bad)]) == 2
    assert "x.mp4: not a detector file" in capsys.readouterr().err


def test_detection_streams_frames(det_path):
    """At most a couple of decoded images are alive at any time, however long the input."""
    det = load_detector(det_path)
    alive, most = set(), [0]

    def frames(n):
        for k in range(n):
            img = np.full((48, 64, 3), k % 256, np.uint8)
            alive.add(id(img))
            weakref.finalize(img, alive.discard, id(img))
            most[0] = max(most[0], len(alive))
            yield Frame(k, k / 25, img)
            del img

    rows = [r for r, _ in iter_detections(frames(300), det, batch=16)]
    gc.collect()
    assert len(rows) == 300 and most[0] <= 2, most[0]


def test_long_video_memory_is_bounded(tmp_path, det_path):
    """Peak Python-traced memory of detect on a 600-frame video stays far below the decoded frames' size."""
    n, h, w = 600, 72, 96
    video = write_video(tmp_path / "long.mp4", (np.full((h, w, 3), (k * 7) % 256, np.uint8) for k in range(n)), fps=25)
    det = load_detector(det_path)
    short = write_video(tmp_path / "short.mp4", (np.zeros((h, w, 3), np.uint8) for _ in range(3)), fps=25)
    detect(short, det, progress=False)  # warm up (lazy imports, dlib models)
    tracemalloc.start()
    try:
        table = detect(video, det, batch=16, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(table) == n and table["face"].sum() == 0
    all_frames = n * h * w * 3  # 12.4 MB if the video were held
    print(f"peak traced {peak / 1e6:.2f} MB for {all_frames / 1e6:.1f} MB of frames")
    assert peak < all_frames / 4, (peak, all_frames)


def test_displace_cli_draws_pairs(clip, tmp_path):
    from au_lib.cli import main
    from au_lib.models.tcae import TCAE, tcae_config

    torch.manual_seed(0)
    model = TCAE(tcae_config("smoke"))
    torch.save({"model_config": model.cfg.to_dict(), "model": model.state_dict(), "data": "synthau"},
               tmp_path / "tcae.pt")
    rc = main(["displace", str(clip), "--tcae", str(tmp_path / "tcae.pt"), "--out", str(tmp_path / "d.png"),
               "--pair", "0:2", "--pair", "1:5", "--no-progress"])
    assert rc == 0 and (tmp_path / "d.png").stat().st_size > 1000
    assert main(["displace", str(clip), "--tcae", str(tmp_path / "none.pt"), "--out", str(tmp_path / "e.png")]) == 2


@pytest.mark.parametrize("method", ["scratch:resnet18", "probe:pixels"])
def test_a_protocol_fold_saves_a_detector_that_reproduces_its_test_scores(tmp_path, monkeypatch, method):
    """run_fold(save_detector=...) writes the trained classifier (a probe with its extractor) and the
    validation thresholds; the file alone gives the fold's test scores."""
    import importlib
    import sys
    from dataclasses import replace
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    fake = importlib.import_module("_fake_au")
    from au_lib.data import registry
    from au_lib.experiments import protocol as P
    from au_lib.experiments.methods import Method, make_extractor
    from au_lib.train.finetune import extract_features, materialize

    monkeypatch.setitem(registry.DATASET_MODULES, "fakeau", "_fake_au")
    table = materialize(fake.open_dataset(modalities=("rgb",)), aus=fake.AUS)
    m = Method.parse(method)
    s = replace(P.protocol_settings("smoke", max_frames_per_subject=None, report_test_tuned=False),
                image_size=int(table.x.shape[-1]))
    feats = extract_features(make_extractor("pixels", image_size=s.image_size), table.x) if m.kind == "probe" else None
    fold = registry.dataset_folds("fakeau")[0]
    out = P.run_fold(table, fold, m, s, features=feats, profile="smoke", save_detector=tmp_path / "fold.pt")
    det = load_detector(tmp_path / "fold.pt")
    assert det.aus == tuple(fake.AUS) and np.allclose(det.thresholds, out.thresholds)
    assert det.training["test_f1_mean"] == pytest.approx(float(np.nanmean(out.f1)))
    np.testing.assert_allclose(det.probabilities(table.x[out.test_rows, :3]), out.test_scores, atol=1e-5)


def test_mcm_grid_probe_extractor_and_its_detector_network_agree(tmp_path):
    """``probe:mcm-grid``: the MCM encoder's tokens pooled onto a 4 x 4 grid (16 x D features), needs a
    checkpoint, and the detector file's ProbeNetwork rebuilds the same features from its kwargs."""
    from au_lib.detect.file import ProbeNetwork
    from au_lib.experiments.ablations import ablation_settings
    from au_lib.experiments.methods import MCM_GRID, Method, make_extractor
    from au_lib.models.mcm import MCM
    from au_lib.train.engine import save_checkpoint

    pre = ablation_settings("smoke").pretrain          # 32 px, 8 px patches: a 4 x 4 token map
    torch.manual_seed(0)
    ck = tmp_path / "mcm.pt"
    save_checkpoint(ck, model=MCM(pre.model), epoch=0, step=0, config=pre.to_dict())
    with pytest.raises(ValueError, match="needs a pre-trained checkpoint"):
        Method.parse("probe:mcm-grid")
    assert Method.parse("probe:mcm-grid", str(ck)).backbone == "mcm-grid"
    ext = make_extractor("mcm-grid", image_size=32, checkpoint=str(ck))
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        f = ext(x)
        assert f.shape == (3, MCM_GRID ** 2 * pre.model.embed_dim)
        mean_pooled = make_extractor("mcm", image_size=32, checkpoint=str(ck))(x)
        assert torch.allclose(f.view(3, pre.model.embed_dim, -1).mean(2), mean_pooled, atol=1e-5)
        net = ProbeNetwork("mcm-grid", {"config": ext.keep.cfg.to_dict(), "grid": MCM_GRID, "size": 32}, f.shape[1], 4)
        net.extractor.load_state_dict(ext.keep.state_dict())
        assert torch.allclose(net.features(x), f, atol=1e-6)

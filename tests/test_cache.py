"""One cache folder: ``$AU_CACHE`` or the platform cache, used by every part of the package."""

from __future__ import annotations

from pathlib import Path

from au_lib.cache import cache_dir, cache_root


def test_env_var_wins_and_every_helper_agrees(monkeypatch, tmp_path):
    monkeypatch.setenv("AU_CACHE", str(tmp_path / "c"))
    from au_lib.data import prepared
    from au_lib.data.synth import assets, generate
    from au_lib.experiments import ablations, protocol
    from au_lib import cext

    root = tmp_path / "c"
    assert cache_root() == root and cache_dir("mcm", "cpu") == root / "mcm" / "cpu"
    assert prepared.cache_root() == assets.cache_root() == protocol.cache_dir() == ablations.cache_dir() == root
    assert generate.default_root() == root / "synthau" and assets.asset_dir() == root / "pyfeat"
    monkeypatch.delenv("AU_EXT_DIR", raising=False)
    assert cext.cache_dir() == root / "ext"  # the C kernels (warp, SynthAU rasteriser)
    monkeypatch.setenv("AU_CACHE", "~/somewhere")
    assert cache_root() == Path.home() / "somewhere"


def test_default_is_the_platform_cache_not_a_checkout(monkeypatch):
    from platformdirs import user_cache_path

    monkeypatch.delenv("AU_CACHE", raising=False)
    assert cache_root() == user_cache_path("au_lib", appauthor=False)
    repo = Path(__file__).resolve().parent.parent
    assert repo not in cache_root().parents


def test_ablation_results_go_to_the_cache_unless_the_build_names_a_folder(monkeypatch, tmp_path):
    from au_lib.experiments.ablations import default_dirs

    monkeypatch.setenv("AU_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("AU_RESULTS", raising=False)
    res, work = default_dirs("cpu")
    assert res == tmp_path / "c" / "ablations" / "results" / "cpu" and work == tmp_path / "c" / "ablations" / "work" / "cpu"
    monkeypatch.setenv("AU_RESULTS", str(tmp_path / "book_results"))
    assert default_dirs("cpu")[0] == tmp_path / "book_results" / "ablations" / "cpu"
    assert default_dirs("smoke")[0] == tmp_path / "c" / "ablations" / "results" / "smoke"

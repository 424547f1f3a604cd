"""The learnability bar: a well-formed result, reuse of a stored result, clear errors."""

from __future__ import annotations

import pytest

from au_lib.experiments import learnability as L


def test_smoke_run_is_well_formed_and_reused(tmp_path, monkeypatch):
    path = tmp_path / "smoke-bp4d.json"
    res = L.learnability_result("bp4d", path, profile="smoke", progress=False)
    m = res["metrics"]
    assert m["aus"] == [1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24]
    for part in (m["cnn"]["test"], m["cnn"]["train"], m["probe"]["test"]):
        assert len(part["per_au"]) == 12 and 0 <= part["mean"] <= 1
    assert len(m["cnn"]["thresholds"]) == 12
    base = m["all_present"]["per_au"]
    assert all(abs(b - 2 * r / (1 + r)) < 1e-9 for b, r in zip(base, m["rates"]))
    assert m["split"]["train"] > 0 and m["split"]["val"] > 0 and m["split"]["test"] > 0
    stamp = path.stat().st_mtime_ns
    monkeypatch.setattr(L, "run_learnability", lambda *a, **k: pytest.fail("a stored result must be reused"))
    again = L.learnability_result("bp4d", path, profile="smoke", progress=False)
    assert again["key"] == res["key"] and path.stat().st_mtime_ns == stamp


def test_unknown_network_is_named():
    with pytest.raises(ValueError, match="unknown network 'vgg'"):
        L._network("vgg", 3)
    assert sum(p.numel() for p in L._network("resnet10", 12).parameters()) < \
        sum(p.numel() for p in L._network("resnet18", 12).parameters())

"""Published anchors: shapes, sources, and per-AU rows consistent with their reported means."""

import numpy as np
import pytest

from au_lib.experiments.anchors import ANCHORS, Anchor, anchors, anchors_table


def test_per_au_rows_average_to_the_reported_mean():
    for a in ANCHORS:
        assert a.source and a.kind
        if a.per_au is not None:  # a typo in one value moves the average by >= 1/12 point
            assert abs(np.mean(a.per_au) - a.mean) < 0.35, a.method


def test_tables_and_errors():
    bp4d = anchors_table("bp4d")
    assert {"MCM", "JAA-Net", "TCAE"} <= set(bp4d.index)
    assert bp4d.loc["MCM", "AU15"] == pytest.approx(59.3) and bp4d.loc["MCM", "Avg"] == pytest.approx(66.0)
    assert all(a.dataset == "disfa" for a in anchors("disfa"))
    with pytest.raises(KeyError, match="no anchors"):
        anchors("gft")
    with pytest.raises(ValueError, match="per-AU values"):
        Anchor("x", "disfa", 50.0, (1.0, 2.0), "supervised", "test")

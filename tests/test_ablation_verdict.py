"""Verdicts on the paper's Fig. 1 claims from curves with standard errors, on synthetic curves whose
answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from au_lib.experiments import ablations as A

EPOCHS = np.array([0, 1, 2, 4, 6, 8, 10])
RATIOS = np.round(np.arange(1, 10) / 10, 1)


def test_clearly_rising_curve_supports_fig1a():
    v = A.verdict_rises_to_last(EPOCHS, 40 + 2.0 * EPOCHS, np.full(7, 0.5))
    assert v.status == A.SUPPORTED and v.numbers["trend_z"] > 10 and v.numbers["best_x"] == 10
    assert not any("underpowered" in r for r in v.reasons)


def test_rising_then_falling_contradicts_and_flat_is_inconclusive():
    peaked = 60 - 0.8 * (EPOCHS - 4) ** 2  # best at 4, the last point far below
    v = A.verdict_rises_to_last(EPOCHS, peaked, np.full(7, 0.5))
    assert v.status == A.CONTRADICTED and v.numbers["best_x"] == 4 and "significantly below" in v.reasons[-1]
    rng = np.random.default_rng(0)
    flat = 50 + rng.normal(0, 0.3, 7)
    v = A.verdict_rises_to_last(EPOCHS, flat, np.full(7, 1.0))
    assert v.status == A.INCONCLUSIVE and "flat" in v.reasons[-1]
    # the same small rise is supported once the errors are small enough
    small = 50 + 0.2 * EPOCHS
    assert A.verdict_rises_to_last(EPOCHS, small, np.full(7, 2.0), max_se=None).status == A.INCONCLUSIVE
    assert A.verdict_rises_to_last(EPOCHS, small, np.full(7, 0.2)).status == A.SUPPORTED
    # falling all the way: contradicted
    assert A.verdict_rises_to_last(EPOCHS, 60 - EPOCHS, np.full(7, 0.5)).status == A.CONTRADICTED


def test_peak_at_half_supports_every_fig1b_claim():
    v = A.verdicts_mask_ratio(RATIOS, 60 - 100 * (RATIOS - 0.5) ** 2, np.full(9, 0.5))
    assert {k: x.status for k, x in v.items()} == {"optimum": A.SUPPORTED, "falls_above": A.SUPPORTED,
                                                  "rises_below": A.SUPPORTED}


def test_peak_at_0_7_contradicts_the_optimum():
    v = A.verdicts_mask_ratio(RATIOS, 60 - 100 * (RATIOS - 0.7) ** 2, np.full(9, 0.5))
    assert v["optimum"].status == A.CONTRADICTED and v["optimum"].numbers["best_x"] == pytest.approx(0.7)
    assert "0.7 is significantly better" in " ".join(v["optimum"].reasons)
    assert v["falls_above"].status == A.CONTRADICTED  # the higher ratios score higher on average
    assert v["rises_below"].status == A.SUPPORTED


def test_flat_ratio_curve_is_inconclusive_and_large_errors_are_flagged():
    rng = np.random.default_rng(1)
    v = A.verdicts_mask_ratio(RATIOS, 50 + rng.normal(0, 0.3, 9), np.full(9, 1.5))
    assert {x.status for x in v.values()} == {A.INCONCLUSIVE}
    assert all(any("underpowered" in r for r in x.reasons) for x in v.values())


def test_bad_curves_are_refused():
    with pytest.raises(ValueError, match="positive, finite standard error"):
        A.verdict_rises_to_last(EPOCHS, EPOCHS * 1.0, np.zeros(7))
    with pytest.raises(ValueError, match="no point at the claimed optimum"):
        A.verdicts_mask_ratio([0.1, 0.3, 0.7], [1, 2, 3], [1, 1, 1])
    with pytest.raises(ValueError, match="equal length"):
        A.verdict_rises_to_last([0, 1], [1, 2], [1, 1])


def test_verdicts_from_measured_rows_use_the_spread_over_runs():
    def row(label, x, runs):
        runs = np.asarray(runs) / 100
        return {"labels": {label: x}, "metrics": {"mean": float(runs.mean()), "std_over_folds": float(runs.std()),
                                                  "per_fold_mean": runs.tolist()}}
    offsets = np.array([-1.0, 0.0, 1.0, -0.5, 0.5, 0.0])  # 6 runs per point: se = std(ddof=1) / sqrt(6)
    ep = [row("epoch", int(e), 40 + 2 * e + offsets) for e in EPOCHS]
    mr = [row("mask_ratio", float(r), 60 - 100 * (r - 0.7) ** 2 + offsets) for r in RATIOS]
    v = A.verdicts_from_rows(ep, mr)
    assert v["epochs"].status == A.SUPPORTED and v["optimum"].status == A.CONTRADICTED
    c = A.curve_se(ep, "epoch")
    np.testing.assert_allclose(c["se"], np.std(offsets, ddof=1) / np.sqrt(6))

"""au_lib.metrics against scikit-learn, and its documented edge cases."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from au_lib.metrics import (choose_thresholds, class_weights, f1_per_au, known_mask, occurrence_rates,
                            pos_weights)


def random_labels(rng, n=400, a=6, p_unknown=0.15):
    lab = (rng.random((n, a)) < rng.uniform(0.05, 0.6, a)).astype(int)
    unknown = rng.random((n, a)) < p_unknown
    lab[unknown] = rng.choice([-1, 9], size=unknown.sum())
    return lab


@pytest.mark.parametrize("seed", range(5))
def test_f1_matches_sklearn_with_unknowns_dropped(seed):
    rng = np.random.default_rng(seed)
    lab = random_labels(rng)
    scores = rng.random(lab.shape)
    res = f1_per_au(lab, scores, 0.5)
    for j in range(lab.shape[1]):
        keep = np.isin(lab[:, j], (0, 1))
        ref = f1_score(lab[keep, j], scores[keep, j] >= 0.5, zero_division=0)
        assert res.per_au[j] == pytest.approx(ref, abs=1e-12)
    assert res.mean == pytest.approx(np.mean(res.per_au))


def test_per_au_thresholds_and_torch_input():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    lab = random_labels(rng, a=3)
    scores = rng.random(lab.shape)
    thr = [0.3, 0.5, 0.7]
    res = f1_per_au(torch.tensor(lab), torch.tensor(scores), thr)
    for j, t in enumerate(thr):
        keep = np.isin(lab[:, j], (0, 1))
        assert res.per_au[j] == pytest.approx(f1_score(lab[keep, j], scores[keep, j] >= t, zero_division=0))


def test_all_negative_column_is_zero_and_all_unknown_is_excluded():
    lab = np.array([[0, -1, 1], [0, 9, 0], [0, -1, 1]])
    scores = np.array([[0.1, 0.9, 0.9], [0.2, 0.9, 0.1], [0.3, 0.9, 0.8]])
    res = f1_per_au(lab, scores, aus=(1, 2, 4))
    assert res.per_au[0] == 0.0  # no positives anywhere: sklearn's zero_division=0
    assert np.isnan(res.per_au[1]) and res.undefined == [2]
    assert res.per_au[2] == 1.0
    assert res.mean == pytest.approx(0.5)  # NaN column excluded, not propagated
    assert res.as_dict()["per_au"][1] is None


def test_all_unknown_everywhere_gives_nan_mean_not_error():
    res = f1_per_au(np.full((4, 2), -1), np.zeros((4, 2)))
    assert np.isnan(res.mean) and res.undefined == [0, 1]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="same shape"):
        f1_per_au(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="unknown code"):
        known_mask(np.array([[0, 2]]))
    with pytest.raises(ValueError, match="NaN"):
        f1_per_au(np.zeros((2, 1)), np.array([[np.nan], [0.1]]))
    with pytest.raises(ValueError, match="AU ids"):
        f1_per_au(np.zeros((2, 2)), np.zeros((2, 2)), aus=(1,))


def test_class_weights_formula_and_mean_one():
    rng = np.random.default_rng(3)
    lab = random_labels(rng, n=2000, a=5)
    w = class_weights(lab)
    r = []
    for j in range(5):
        keep = np.isin(lab[:, j], (0, 1))
        r.append(lab[keep, j].mean())
    inv = 1 / np.array(r)
    np.testing.assert_allclose(w, inv / inv.sum() * 5)
    assert w.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(occurrence_rates(lab), r)


def test_class_weights_reproduce_published_bp4d_ratios():
    # ME-GraphAU BP4D fold-1 weights imply the rates up to a constant: r_i ~ 1 / w_i.
    w_pub = np.array([1.342985, 1.689665, 1.248091, 0.561356, 0.433044, 0.435894, 0.457287, 0.541004,
                      1.408054, 0.722762, 1.493145, 1.666711])
    rates = (1 / w_pub) / (1 / w_pub).max() * 0.55
    n = 200000
    lab = (np.arange(n)[:, None] < np.round(rates * n)[None, :]).astype(int)
    np.testing.assert_allclose(class_weights(lab), w_pub / w_pub.mean(), rtol=1e-3)


def test_class_weights_reject_absent_au():
    with pytest.raises(ValueError, match="AU7"):
        class_weights(np.array([[1, 0], [0, 0]]), aus=(6, 7))
    with pytest.raises(ValueError, match="no positive"):
        pos_weights(np.array([[1, 0], [0, 0]]))


def test_choose_thresholds_uses_only_given_data_and_finds_separator():
    rng = np.random.default_rng(0)
    y = (rng.random((500, 2)) < 0.3).astype(int)
    s = np.where(y == 1, 0.25, 0.15) + 0.02 * rng.random(y.shape)
    thr = choose_thresholds(y, s)
    assert f1_per_au(y, s, thr).mean == pytest.approx(1.0)
    assert np.all(thr <= 0.25) and np.all(thr > 0.15)

"""Metrics against hand computations and scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from hqanogan_core import metrics


def test_auroc_hand_computed():
    # pairs (abnormal, normal): 3>1, 3>2, 3=3 (half), 4>1, 4>2, 4>3 -> 5.5 / 6
    scores = [1, 2, 3, 3, 4]
    labels = [0, 0, 0, 1, 1]
    assert metrics.auroc(scores, labels) == pytest.approx(5.5 / 6)


def test_perfect_and_inverted_and_constant():
    y = np.array([0, 0, 1, 1])
    assert metrics.auroc([0.1, 0.2, 0.8, 0.9], y) == 1.0
    assert metrics.auroc([0.9, 0.8, 0.2, 0.1], y) == 0.0
    assert metrics.auroc([5, 5, 5, 5], y) == 0.5


@pytest.mark.parametrize("seed", range(5))
def test_against_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + 0.7 * y, 1)  # rounding creates ties
    assert metrics.auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.average_precision(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    fpr, tpr, thr = metrics.roc_curve(s, y)
    sk_fpr, sk_tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert np.all(np.diff(thr) < 0)


def test_sensitivity_at_specificity_hand():
    # 20 normals with scores 0..19, abnormals at 18.5 and 25 and 3.
    normals = np.arange(20.0)
    abn = np.array([18.5, 25.0, 3.0])
    s = np.r_[normals, abn]
    y = np.r_[np.zeros(20), np.ones(3)].astype(int)
    # spec >= 0.95 allows 1 false positive of 20: threshold 19 -> catches 25 only (1/3);
    # threshold 18.5 would add normal 19 -> still 1 FP, catches 18.5 too -> 2/3.
    assert metrics.sensitivity_at_specificity(s, y, 0.95) == pytest.approx(2 / 3)
    assert metrics.sensitivity_at_specificity(s, y, 1.0) == pytest.approx(1 / 3)


def test_bootstrap_ci_contains_point_and_is_deterministic():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200), np.ones(200)].astype(int)
    s = rng.normal(size=400) + y
    a = metrics.bootstrap_ci(metrics.auroc, s, y, n_boot=200, seed=3)
    b = metrics.bootstrap_ci(metrics.auroc, s, y, n_boot=200, seed=3)
    assert a == b
    value, lo, hi = a
    assert lo < value < hi
    # normal-theory standard error of AUROC for this n is ~0.02 -> CI width ~0.08
    assert 0.03 < hi - lo < 0.2


def test_pixel_auroc_and_shape_error():
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, 2:4, 2:4] = True
    maps = masks.astype(float) + 0.01 * np.arange(128).reshape(2, 8, 8) / 128
    assert metrics.pixel_auroc(maps, masks) == 1.0
    with pytest.raises(ValueError, match="shape"):
        metrics.pixel_auroc(maps[:, :4], masks)


def test_clear_errors():
    with pytest.raises(ValueError, match="both normal"):
        metrics.auroc([1, 2], [1, 1])
    with pytest.raises(ValueError, match="entries"):
        metrics.auroc([1, 2, 3], [0, 1])
    with pytest.raises(ValueError, match="non-finite"):
        metrics.auroc([1, np.nan], [0, 1])

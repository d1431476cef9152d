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


# ----------------------------------------------------------------------------- AUPRO


def _hand_example():
    """Two 2x3 maps, two 8-connected regions (three if regions were 4-connected).

    image A  map  0.9 0.8 0.1     mask  1 1 0     RA = {0.9, 0.8, 0.6}: the 0.6 pixel touches the 0.8 one
                  0.3 0.0 0.6           0 0 1          only at a corner, which joins them (8-connectivity)
    image B  map  0.7 0.2 0.0     mask  0 0 0
                  0.7 0.6 0.0           1 0 0     RB = {0.7}
    mask-free pixels (8): 0.7 0.6 0.3 0.2 0.1 0.0 0.0 0.0
    """
    maps = np.array([[[0.9, 0.8, 0.1], [0.3, 0.0, 0.6]], [[0.7, 0.2, 0.0], [0.7, 0.6, 0.0]]])
    masks = np.array([[[1, 1, 0], [0, 0, 1]], [[0, 0, 0], [1, 0, 0]]], dtype=bool)
    return maps, masks


def test_aupro_hand_computed():
    maps, masks = _hand_example()
    # FPR limit 0.25 = 2 of the 8 mask-free pixels; thresholds: +inf, then every distinct value down to 0.6
    #   t = inf:  FPR 0          PRO 0
    #   t = 0.9:  FPR 0          PRO (1/3 + 0) / 2 = 1/6                  (RA's 0.9)
    #   t = 0.8:  FPR 0          PRO (2/3 + 0) / 2 = 1/3                  (RA's 0.8)
    #   t = 0.7:  FPR 1/8        PRO (2/3 + 1) / 2 = 5/6                  (B's normal 0.7 and RB's 0.7)
    #   t = 0.6:  FPR 2/8 = 0.25 PRO (1 + 1) / 2 = 1                      (B's normal 0.6 and RA's 0.6)
    # trapezoids (the first two have width 0): 1/8 * (1/3 + 5/6) / 2 + 1/8 * (5/6 + 1) / 2 = 7/96 + 11/96
    # = 3/16; / 0.25 -> 3/4.
    # (4-connected, RA would be {0.9, 0.8} and {0.6}: PRO 1/6, 1/3, 2/3, 1 and AUPRO 2/3. Pooling all mask
    #  pixels instead of averaging regions gives PRO 1/4, 1/2, 3/4, 1: the same area 3/4 here, but other points.)
    fpr, pro = metrics.pro_curve(maps, masks, fpr_limit=0.25)
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 8, 2 / 8])
    np.testing.assert_allclose(pro, [0, 1 / 6, 1 / 3, 5 / 6, 1])
    assert metrics.aupro(maps, masks, fpr_limit=0.25) == pytest.approx(3 / 4)
    # limit 0.3: the same points (a third mask-free pixel would pass 0.3), PRO stays 1 from 0.25 to 0.3:
    #   (3/16 + 0.05 * 1) / 0.3 = (15/80 + 4/80) / 0.3 = 19/24
    assert metrics.aupro(maps, masks, fpr_limit=0.3) == pytest.approx(19 / 24)
    # limit 1: PRO is 1 from FPR 0.25 on: (3/16 + 0.75) / 1 = 15/16
    assert metrics.aupro(maps, masks, fpr_limit=1.0) == pytest.approx(15 / 16)
    assert metrics.aupro(maps, masks) == metrics.aupro(maps, masks, fpr_limit=0.3)       # the default


def test_pixels_touching_at_a_corner_are_one_region():
    # 3 x 3 image; the pixel (0, 0) touches (1, 1) only at a corner, (1, 1) and (1, 2) share an edge:
    #   map  0.9 0.0 0.0     mask  1 0 0     8-connected: ONE region {0.9, 0.3, 0.3}
    #        0.1 0.3 0.3           0 1 1     (4-connected it would be two: {0.9} and {0.3, 0.3})
    #        0.5 0.0 0.0           0 0 0     mask-free pixels (6): 0.5 0.1 0.0 0.0 0.0 0.0
    # FPR limit 1/3 = 2 of the 6 mask-free pixels; thresholds +inf, 0.9, 0.5, 0.3, 0.1:
    #   t = inf: FPR 0    PRO 0
    #   t = 0.9: FPR 0    PRO 1/3
    #   t = 0.5: FPR 1/6  PRO 1/3     (the mask-free 0.5)
    #   t = 0.3: FPR 1/6  PRO 1       (the region's two 0.3)
    #   t = 0.1: FPR 2/6  PRO 1
    #   area = 1/6 * 1/3 + 0 + 1/6 * 1 = 2/9; / (1/3) -> 2/3
    # (two 4-connected regions: PRO 1/2, 1/2, 1, 1 at the same FPRs, area 1/12 + 1/6 = 1/4, AUPRO 3/4)
    maps = np.array([[[0.9, 0.0, 0.0], [0.1, 0.3, 0.3], [0.5, 0.0, 0.0]]])
    masks = np.array([[[1, 0, 0], [0, 1, 1], [0, 0, 0]]], dtype=bool)
    labelled, n = metrics.mask_regions(masks[0])
    assert n == 1 and labelled[0, 0] == labelled[1, 1] == labelled[1, 2] == 1
    fpr, pro = metrics.pro_curve(maps, masks, fpr_limit=1 / 3)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 6, 1 / 6, 2 / 6])
    np.testing.assert_allclose(pro, [0, 1 / 3, 1 / 3, 1, 1])
    assert metrics.aupro(maps, masks, fpr_limit=1 / 3) == pytest.approx(2 / 3)
    # the same image with 4-connected regions (the structure pro_curve labels with, swapped for the contrast)
    from unittest import mock
    from scipy import ndimage
    with mock.patch.object(metrics, "REGION_STRUCTURE", ndimage.generate_binary_structure(2, 1)):
        assert metrics.mask_regions(masks[0])[1] == 2
        assert metrics.aupro(maps, masks, fpr_limit=1 / 3) == pytest.approx(3 / 4)


def _random_masks(n=200, size=32, seed=0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    for m in masks:
        r, c = rng.integers(0, size - 12, 2)
        h, w = rng.integers(4, 12, 2)
        m[r:r + h, c:c + w] = True
    return masks


def test_aupro_perfect_inverted_and_random():
    masks = _random_masks()
    perfect = masks + 0.1 * np.random.default_rng(1).uniform(size=masks.shape)        # every region above every normal
    assert metrics.aupro(perfect, masks) == 1.0
    assert metrics.aupro(1.0 - perfect, masks) == 0.0
    # independent of the masks: PRO(FPR) ~ FPR, so the area up to L is ~ L^2 / 2 and AUPRO ~ L / 2
    rand = np.random.default_rng(2).uniform(size=masks.shape)
    assert metrics.aupro(rand, masks) == pytest.approx(0.15, abs=0.015)
    assert metrics.aupro(rand, masks, fpr_limit=0.1) == pytest.approx(0.05, abs=0.01)
    assert metrics.aupro(rand, masks, fpr_limit=1.0) == pytest.approx(0.5, abs=0.02)
    # the curve stops just past the limit it was given (the last segment is cut there by interpolation)
    for limit in (0.05, 0.3):
        fpr, pro = metrics.pro_curve(rand, masks, fpr_limit=limit)
        assert fpr[0] == 0 and fpr[-2] < limit <= fpr[-1] < limit + 0.01      # stops at the first point past it
        assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= 0)


def test_aupro_errors():
    maps, masks = _hand_example()
    with pytest.raises(ValueError, match="same shape"):
        metrics.aupro(maps[:, :1], masks)
    with pytest.raises(ValueError, match="same shape"):
        metrics.aupro(maps[0], masks[0])                       # [H, W] is not [N, H, W]
    with pytest.raises(ValueError, match="at least one anomalous region"):
        metrics.aupro(maps, np.zeros_like(masks))
    with pytest.raises(ValueError, match="mask-free pixels"):
        metrics.aupro(maps, np.ones_like(masks))


# ----------------------------------------------------------------------------- subsets of a split


def _split():
    from hqanogan_core.data.splits import SplitArrays

    types = np.array(["good"] * 10 + ["nodule"] * 5 + ["effusion"] * 1 + ["good"] * 4)   # 14 good
    n = len(types)
    masks = np.zeros((n, 4, 4), dtype=bool)
    masks[types != "good", 0, 0] = True
    return SplitArrays(images=np.arange(n * 16, dtype=np.float32).reshape(n, 4, 4) / (n * 16),
                       labels=(types != "good").astype(np.int64), types=types, masks=masks,
                       paths=[f"/data/{t}/{i:03d}.png" for i, t in enumerate(types)])


def test_stratified_subset():
    from hqanogan_core.data.splits import stratified_subset

    split = _split()
    idx = stratified_subset(split, 3, seed=0)
    assert np.all(np.diff(idx) > 0)                                        # sorted, no repeats
    kinds, counts = np.unique(split.types[idx], return_counts=True)
    assert dict(zip(kinds, counts)) == {"effusion": 1, "good": 3, "nodule": 3}   # effusion has only one
    assert np.array_equal(idx, stratified_subset(split, 3, seed=0))                # seeded
    assert any(not np.array_equal(idx, stratified_subset(split, 3, seed=s)) for s in range(1, 5))
    # per-type counts; types not named are taken whole, larger counts than exist take everything
    idx = stratified_subset(split, {"good": 2, "nodule": 50}, seed=1)
    assert dict(zip(*np.unique(split.types[idx], return_counts=True))) == {"effusion": 1, "good": 2, "nodule": 5}
    assert len(stratified_subset(split, 100)) == len(split)


def test_split_take_keeps_everything_aligned():
    split = _split()
    index = np.array([15, 3, 11])
    sub = split.take(index)
    assert len(sub) == 3 and sub.paths == [split.paths[i] for i in index]
    for field in ("images", "labels", "types", "masks"):
        np.testing.assert_array_equal(getattr(sub, field), getattr(split, field)[index])
    assert split.take(np.array([], dtype=int)).images.shape == (0, 4, 4)
    # a boolean mask selects the same images and paths as its indices
    normal = split.take(split.labels == 0)
    assert len(normal) == 14 and all("/good/" in p for p in normal.paths)
    np.testing.assert_array_equal(normal.images, split.images[split.labels == 0])
    with pytest.raises(IndexError, match="boolean index"):
        split.take(np.ones(3, dtype=bool))
    no_masks = type(split)(split.images, split.labels, split.types, None, split.paths).take(index)
    assert no_masks.masks is None and no_masks.paths == sub.paths


def test_aupro_counts_region_pixels_between_normal_values():
    # 1 x 6 image, region = the first two pixels, limit 0.5 (2 of the 4 mask-free pixels):
    #   t = 0.9: FPR 0, PRO 1/2; t = 0.8: FPR 1/4, PRO 1/2; t = 0.3: FPR 1/4, PRO 1; t = 0.2: FPR 1/2, PRO 1
    #   area = 1/4 * 1/2 + 1/4 * 1 = 3/8; / 0.5 -> 3/4 (as MVTec AD's reference compute_pro gives)
    maps = np.array([[[0.9, 0.3, 0.8, 0.2, 0.1, 0.0]]])
    masks = np.array([[[1, 1, 0, 0, 0, 0]]], dtype=bool)
    assert metrics.aupro(maps, masks, fpr_limit=0.5) == pytest.approx(0.75)


def test_vectorised_auroc_bootstrap_equals_the_generic_loop():
    """bootstrap_ci / paired_bootstrap compute AUROC replicates from resampling counts; with ties in the
    scores they must give exactly what calling auroc on every resample gives (same draws)."""
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(40), np.ones(25)].astype(int)
    a = np.round(rng.normal(size=65) + y, 1)                 # rounded: many ties, within and across classes
    b = np.round(a + rng.normal(size=65), 1)
    generic = lambda s, l: metrics.auroc(s, l)               # noqa: E731 - not `auroc` itself: the plain loop
    assert metrics.bootstrap_ci(metrics.auroc, a, y, n_boot=200, seed=5) == \
        metrics.bootstrap_ci(generic, a, y, n_boot=200, seed=5)
    fast = metrics.paired_bootstrap(metrics.auroc, a, b, y, n_boot=200, seed=5)
    slow = metrics.paired_bootstrap(generic, a, b, y, n_boot=200, seed=5)
    assert fast["ci95"] == pytest.approx(slow["ci95"], abs=1e-12) and fast["p"] == slow["p"]

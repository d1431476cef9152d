"""The synthetic anomalies of the self-supervised baselines (CutPaste, scar, AnatPaste and its lung mask,
Otsu's threshold) and the Gaussian models of normal features (Ledoit-Wolf and PaDiM's per-position
Gaussians) against numpy by hand."""
import numpy as np
import pytest
from scipy import ndimage

from hqanogan_core.data import paste
from hqanogan_core.data.paste import AUGMENTATIONS, anatpaste, cutpaste, cutpaste_scar, lung_mask, otsu_threshold
from hqanogan_core.gaussian import fit_gaussian, mahalanobis, positional_gaussians, positional_mahalanobis


def _noise(r=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.05, 0.95, (r, r)).astype(np.float32)


def _chest(r=64, seed=0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic frontal radiograph: dark border (air beside the body, outside lung_mask's window),
    a bright body, two dark ellipses (the lungs), a little noise. -> (image, left lung, right lung)."""
    yy, xx = np.mgrid[:r, :r] / r
    image = np.full((r, r), 0.08)
    image[3 * r // 64:r - 3 * r // 64, 3 * r // 64:r - 3 * r // 64] = 0.8                    # body
    left = ((yy - 0.5) / 0.25) ** 2 + ((xx - 0.31) / 0.12) ** 2 <= 1
    right = ((yy - 0.5) / 0.25) ** 2 + ((xx - 0.69) / 0.12) ** 2 <= 1
    image[left | right] = 0.25
    image += np.random.default_rng(seed).normal(0, 0.02, (r, r))
    return np.clip(image, 0, 1).astype(np.float32), left, right


# ----------------------------------------------------------------------------- CutPaste


@pytest.mark.parametrize("seed", range(6))
def test_cutpaste_changes_one_rectangle_of_the_allowed_size(seed):
    image = _noise(seed=seed)
    before = image.copy()
    out = cutpaste(image, np.random.default_rng(seed))
    np.testing.assert_array_equal(image, before)                    # the input (float32: no copy on entry) is untouched
    assert out.shape == image.shape and out.dtype == np.float32 and out is not image
    changed = out != image
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    box = np.zeros_like(changed)
    box[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    # on noise every pasted (jittered) pixel differs from what it covers: the change is one filled rectangle
    np.testing.assert_array_equal(changed, box)
    area = box.sum() / box.size
    assert paste.AREA[0] * 0.7 <= area <= paste.AREA[1] * 1.3, area   # 2-15 % of the image, up to rounding
    aspect = len(rows) / len(cols)
    assert paste.ASPECT[0] * 0.7 <= aspect <= paste.ASPECT[1] / 0.7, aspect
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_cutpaste_is_seeded():
    image = _noise(seed=3)
    a = cutpaste(image, np.random.default_rng(7))
    np.testing.assert_array_equal(a, cutpaste(image, np.random.default_rng(7)))
    assert not np.array_equal(a, cutpaste(image, np.random.default_rng(8)))


def test_cutpaste_with_a_region_changes_only_inside_it():
    image = _noise(seed=1)
    region = np.zeros(image.shape, bool)
    region[:, :32] = True
    hits = 0
    for seed in range(20):
        out = cutpaste(image, np.random.default_rng(seed), region=region)
        assert not (out != image)[~region].any(), seed
        hits += (out != image).any()
    assert hits > 0                                   # the region is half the image: some pastes land in it


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_every_augmentation_is_seeded_keeps_its_input_and_range(name):
    fn = AUGMENTATIONS[name]
    image, _, _ = _chest(seed=2)
    before = image.copy()
    outs = [fn(image, np.random.default_rng(s)) for s in (0, 0, 1)]
    np.testing.assert_array_equal(image, before)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    for out in outs:
        assert out.shape == image.shape and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert (out != image).any()


@pytest.mark.parametrize("r", [32, 64])
def test_scar_is_a_thin_strip_and_never_empty(r):
    image = _noise(r=r, seed=4)
    longest = round(paste.SCAR_LENGTH[1] * r) + 1
    widest = round(paste.SCAR_WIDTH[1] * r) + 1
    empty = []
    for seed in range(20):
        changed = cutpaste_scar(image, np.random.default_rng(seed)) != image
        if not changed.any():
            empty.append(seed)
            continue
        assert changed.sum() <= 2 * longest * widest, seed        # rotated nearest-neighbour: a little slack
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        assert max(len(rows), len(cols)) <= longest + widest, seed      # fits the rotated strip's bounding box
    # a "scar" sample identical to its normal image is a mislabelled example of the pretext task
    assert not empty, f"scar changed nothing for seeds {empty} at {r} px"


# ----------------------------------------------------------------------------- lung mask, Otsu, AnatPaste


def test_lung_mask_finds_the_two_dark_ellipses():
    image, left, right = _chest()
    mask = lung_mask(image)
    assert mask.dtype == bool and mask.shape == image.shape
    labels, n = ndimage.label(mask)
    assert n == 2
    lungs = left | right
    for ellipse in (left, right):
        # each component is one lung: it covers most of one ellipse and nothing of the other
        component = labels == np.bincount(labels[ellipse]).argmax()
        assert component.any() and labels[ellipse].max() > 0
        iou = (component & ellipse).sum() / (component | ellipse).sum()
        assert iou > 0.8, iou
    assert not mask[image < 0.15].any()                                  # not the air around the body
    assert not (mask & ~ndimage.binary_dilation(lungs, iterations=2)).any()   # not the body
    assert mask[lungs].mean() > 0.85


def test_lung_mask_is_empty_without_dark_structures():
    assert not lung_mask(np.full((64, 64), 0.6, np.float32)).any()
    # dark only outside the central window (the air beside the body): nothing either
    image = np.full((64, 64), 0.8, np.float32)
    image[:, :4] = image[:, -4:] = 0.05
    assert not lung_mask(image).any()


@pytest.mark.parametrize("seed", range(8))
def test_anatpaste_changes_pixels_only_inside_the_lungs(seed):
    image, _, _ = _chest(seed=seed)
    lungs = lung_mask(image)
    assert lungs.any()
    out = anatpaste(image, np.random.default_rng(seed))
    changed = out != image
    assert changed.any()                          # it redraws a patch that missed the lungs
    assert not changed[~lungs].any()


def test_anatpaste_without_lungs_is_plain_cutpaste():
    image = np.full((32, 32), 0.6, np.float32)
    assert not lung_mask(image).any()
    for seed in range(3):
        np.testing.assert_array_equal(anatpaste(image, np.random.default_rng(seed)),
                                      cutpaste(image, np.random.default_rng(seed)))


def _between_class_variance(values: np.ndarray, t: float) -> float:
    lo, hi = values[values < t], values[values >= t]
    if len(lo) == 0 or len(hi) == 0:
        return 0.0
    return len(lo) * len(hi) / len(values) ** 2 * (lo.mean() - hi.mean()) ** 2


@pytest.mark.parametrize("n_dark,n_bright", [(500, 500), (900, 100), (100, 900)])
def test_otsu_threshold_separates_a_bimodal_sample(n_dark, n_bright):
    rng = np.random.default_rng(n_dark)
    dark, bright = rng.uniform(0.1, 0.3, n_dark), rng.uniform(0.6, 0.9, n_bright)
    values = rng.permutation(np.r_[dark, bright])
    t = otsu_threshold(values)
    # Otsu's criterion, computed on the samples themselves: any split in the gap is the best one
    best = max(_between_class_variance(values, c) for c in np.linspace(0.1, 0.9, 401))
    assert _between_class_variance(values, t) >= 0.99 * best
    # and `values < t` (lung_mask's test) is exactly that split: every dark value below, every bright one above
    assert dark.max() < t <= bright.min(), (dark.max(), t, bright.min())
    assert (dark < t).all() and (bright >= t).all()
    # shape does not matter, only the values
    assert otsu_threshold(values.reshape(-1, 10)) == t


# ----------------------------------------------------------------------------- Ledoit-Wolf Gaussian


def _correlated(n=40, d=5, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ mix + rng.normal(size=d) * 3


def test_fit_gaussian_is_ledoit_wolf_by_hand():
    x = _correlated()
    n, d = x.shape
    g = fit_gaussian(x)
    np.testing.assert_allclose(g.mean, x.mean(axis=0), rtol=1e-12)
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / n                                              # the biased sample covariance
    mu = np.trace(s) / d
    # Ledoit & Wolf (2004): shrinkage = min(b^2, d^2) / d^2 towards mu * I
    d2 = np.sum((s - mu * np.eye(d)) ** 2) / d
    b2 = sum(np.sum((np.outer(v, v) - s) ** 2) for v in xc) / n ** 2 / d
    shrinkage = min(b2, d2) / d2
    assert 0.0 < g.shrinkage < 1.0
    assert g.shrinkage == pytest.approx(shrinkage, rel=1e-9)
    cov = (1 - shrinkage) * s + shrinkage * mu * np.eye(d)
    np.testing.assert_allclose(g.precision, np.linalg.inv(cov), rtol=1e-8, atol=1e-12)


def test_mahalanobis_is_diff_precision_diff():
    x = _correlated(seed=1)
    g = fit_gaussian(x)
    queries = np.r_[_correlated(n=6, seed=2), g.mean[None]]
    expected = [(q - g.mean) @ g.precision @ (q - g.mean) for q in queries]
    np.testing.assert_allclose(mahalanobis(queries, g), expected, rtol=1e-10)
    assert mahalanobis(g.mean[None], g)[0] == pytest.approx(0.0, abs=1e-20)
    assert (mahalanobis(queries, g) >= 0).all()
    # float32 input is computed in float64 all the same
    np.testing.assert_allclose(mahalanobis(queries.astype(np.float32), g),
                               [(q - g.mean) @ g.precision @ (q - g.mean)
                                for q in queries.astype(np.float32).astype(np.float64)],
                               rtol=1e-10)


def test_gaussian_errors():
    with pytest.raises(ValueError, match="at least 2 samples"):
        fit_gaussian(np.zeros((1, 3)))
    g = fit_gaussian(_correlated(d=5))
    with pytest.raises(AssertionError, match="dim"):
        mahalanobis(np.zeros((2, 4)), g)


# ----------------------------------------------------------------------------- PaDiM's per-position Gaussians


def _positional(n=30, p=6, d=4, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(p, d, d))                                 # a different covariance at every position
    return np.einsum("npd,pde->npe", rng.normal(size=(n, p, d)), mix) + rng.normal(size=(p, d))      # [N, P, D]


@pytest.mark.parametrize("ridge", [0.01, 0.5])
def test_positional_gaussians_from_streamed_sums(ridge):
    x = _positional()
    n, p, d = x.shape
    sum_x, sum_xx = 0.0, 0.0
    for chunk in np.array_split(x, 4):                               # streamed in uneven batches
        sum_x = sum_x + chunk.sum(axis=0)
        sum_xx = sum_xx + np.einsum("npd,npe->pde", chunk, chunk)
    kwargs = {} if ridge == 0.01 else {"ridge": ridge}              # 0.01 is the default (PaDiM's)
    means, precisions = positional_gaussians(n, sum_x, sum_xx, **kwargs)
    assert means.shape == (p, d) and precisions.shape == (p, d, d)
    for i in range(p):
        np.testing.assert_allclose(means[i], x[:, i].mean(axis=0), rtol=1e-5, atol=1e-6)
        cov = np.cov(x[:, i], rowvar=False, ddof=1) + ridge * np.eye(d)
        np.testing.assert_allclose(precisions[i], np.linalg.inv(cov), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="at least 2 images"):
        positional_gaussians(1, x[0], np.einsum("pd,pe->pde", x[0], x[0]))


def test_positional_mahalanobis_matches_a_loop():
    x = _positional(seed=1)
    n, p, d = x.shape
    means, precisions = positional_gaussians(n, x.sum(axis=0), np.einsum("npd,npe->pde", x, x))
    queries = _positional(n=5, p=p, d=d, seed=2).astype(np.float32)
    out = positional_mahalanobis(queries, means, precisions)
    assert out.shape == (5, p)
    expected = np.empty((5, p))
    for k in range(5):
        for i in range(p):
            diff = queries[k, i].astype(np.float64) - means[i]
            expected[k, i] = diff @ precisions[i].astype(np.float64) @ diff
    np.testing.assert_allclose(out, expected, rtol=1e-4)
    # a query at a position's mean is at distance 0 there
    at_mean = np.broadcast_to(means, (1, p, d)).copy()
    np.testing.assert_allclose(positional_mahalanobis(at_mean, means, precisions), 0.0, atol=1e-6)

"""Tests for hqanogan_core.data.preprocess (pure numpy)."""
import numpy as np
import pytest

from hqanogan_core.data.preprocess import (
    Preprocess, bbhe, center_crop_square, histogram_equalization, resize, resize_nearest,
)


def _skewed(shape=(64, 64), seed=0):
    """Dark, skewed test image: values concentrated near 0."""
    return (np.random.default_rng(seed).random(shape) ** 3).astype(np.float32)


# ------------------------------------------------------------------ geometry

def test_center_crop_square_shapes_and_content():
    img = np.arange(6 * 10, dtype=np.float32).reshape(6, 10)
    out = center_crop_square(img)
    assert out.shape == (6, 6)
    np.testing.assert_array_equal(out, img[:, 2:8])
    assert center_crop_square(img.T).shape == (6, 6)
    np.testing.assert_array_equal(center_crop_square(img.T), img.T[2:8, :])


@pytest.mark.parametrize("shape,size", [((64, 64), 16), ((17, 9), 5), ((8, 8), 32), ((1, 1), 4), ((1, 30), 3)])
def test_resize_shapes_and_range(shape, size):
    img = np.random.default_rng(1).random(shape).astype(np.float32)
    out = resize(img, size)
    assert out.shape == (size, size) and out.dtype == np.float32
    assert out.min() >= img.min() - 1e-6 and out.max() <= img.max() + 1e-6


def test_resize_preserves_constant_and_mean_and_antialiases():
    assert np.allclose(resize(np.full((40, 30), 0.3), (7, 9)), 0.3)
    # a 1-pixel checkerboard must average to grey when shrunk 4x (no aliasing)
    checker = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)
    small = resize(checker, 16)
    assert np.allclose(small, 0.5, atol=0.02)
    img = np.random.default_rng(2).random((64, 64))
    assert abs(resize(img, 16).mean() - img.mean()) < 0.01


def test_resize_nearest_keeps_values_and_location():
    mask = np.zeros((100, 100), dtype=bool)
    mask[20:40, 60:80] = True
    small = resize_nearest(mask, 10)
    assert small.dtype == bool and small.shape == (10, 10)
    expected = np.zeros((10, 10), dtype=bool)
    expected[2:4, 6:8] = True
    np.testing.assert_array_equal(small, expected)


# ------------------------------------------------------------ equalisation

def test_he_output_histogram_is_close_to_uniform():
    # narrow, dark bell: ~50 occupied grey levels, none holding a big share
    img = np.clip(0.3 + 0.05 * np.random.default_rng(0).standard_normal((128, 128)), 0, 1)
    out = histogram_equalization(img)
    assert out.shape == img.shape and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    # empirical CDF of the output ~ identity; the gap is bounded by the largest
    # single grey level's share (~3 % here), which HE cannot split
    grid = np.linspace(0, 1, 101)
    ecdf = np.searchsorted(np.sort(out.ravel()), grid, side="right") / out.size
    assert np.max(np.abs(ecdf - grid)) < 0.035
    hist = np.histogram(out, bins=4, range=(0, 1))[0] / out.size
    assert np.all(np.abs(hist - 1 / 4) < 0.035), hist
    # the input is far from uniform
    assert np.mean((img > 0.15) & (img < 0.45)) > 0.99


def test_he_is_monotone_and_nearly_idempotent():
    img = _skewed((64, 64), seed=3)
    out = histogram_equalization(img)
    order = np.argsort(img.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= 0)  # pixel order preserved
    again = histogram_equalization(out)
    assert np.max(np.abs(again - out)) <= 2 / 255


def test_he_constant_image_is_unchanged():
    img = np.full((5, 7), 0.4, dtype=np.float32)
    np.testing.assert_array_equal(histogram_equalization(img), img)
    np.testing.assert_allclose(bbhe(img), img, atol=1 / 255)


def test_he_two_levels_by_hand():
    # 3/4 of the pixels at 0.2 and 1/4 at 0.6: HE sends them to 0 and 1
    img = np.array([[0.2, 0.2], [0.2, 0.6]])
    np.testing.assert_allclose(histogram_equalization(img), [[0, 0], [0, 1]])


def test_bbhe_by_hand():
    # levels 0..3 (bins=4), one pixel each: mean level 1.5 -> X_m = 1.
    # lower {0, 1} -> X_m * cdf_L = (1/3) * (1/2, 1) ; upper {2, 3} -> 2/3 + 1/3 * (1/2, 1)
    img = np.array([[0, 1 / 3, 2 / 3, 1.0]])
    np.testing.assert_allclose(bbhe(img, bins=4), [[1 / 6, 1 / 3, 5 / 6, 1.0]], atol=1e-6)


def test_bbhe_preserves_mean_brightness_better_than_he():
    # dark image, levels spread evenly over [0.1, 0.3]: mean 0.2.
    # HE spreads it over [0, 1] (mean ~0.5); BBHE maps the lower half onto
    # [0, 0.2] (mean ~0.1) and the upper half onto [0.2, 1] (mean ~0.6) -> ~0.35.
    img = np.repeat(np.linspace(0.1, 0.3, 51)[None, :], 20, axis=0)
    he, bb = histogram_equalization(img), bbhe(img)
    assert abs(he.mean() - 0.5) < 0.03
    assert abs(bb.mean() - 0.35) < 0.03
    assert abs(bb.mean() - img.mean()) < abs(he.mean() - img.mean())
    # and on a random skewed image too
    img = _skewed(seed=5)
    assert abs(bbhe(img).mean() - img.mean()) < abs(histogram_equalization(img).mean() - img.mean())


def test_bbhe_is_monotone_and_in_range():
    img = _skewed(seed=6)
    out = bbhe(img)
    order = np.argsort(img.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= 0)
    assert out.min() >= 0 and out.max() <= 1 and out.shape == img.shape


# ------------------------------------------------------------------ pipeline

def test_preprocess_pipeline():
    img = np.random.default_rng(7).random((40, 60)).astype(np.float32)
    assert Preprocess(crop=True, size=16)(img).shape == (16, 16)
    assert Preprocess(crop=False, size=None)(img).shape == (40, 60)
    assert Preprocess(crop=True, size=None)(img).shape == (40, 40)
    out = Preprocess(equalize="he", size=16)(img)
    assert out.min() == 0.0 and out.max() == 1.0
    mask = np.zeros((40, 60), dtype=bool)
    mask[:, 10:50] = True  # exactly the centre crop
    assert Preprocess(crop=True, size=8).mask(mask).all()
    with pytest.raises(ValueError, match="equalize"):
        Preprocess(equalize="clahe")
    with pytest.raises(ValueError, match="2-D"):
        Preprocess()(np.zeros((2, 3, 4)))
    assert Preprocess() == Preprocess()  # frozen, hashable, comparable
    hash(Preprocess(size=8))

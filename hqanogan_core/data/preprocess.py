"""Image preprocessing on float grayscale arrays: crop, resize, equalise.

Every function takes a float array of shape [H, W] with values in [0, 1] and
returns a new array (inputs are never modified). Nothing here touches disk or
torch, so the same code serves the dataset, the converters and the book.

Histogram equalisation variants:
  * ``histogram_equalization`` -- global HE: grey level k goes to
    (cdf(k) - cdf_min) / (N - cdf_min), so the output spans [0, 1].
  * ``bbhe`` -- brightness-preserving bi-histogram equalisation (Y.-T. Kim,
    IEEE Trans. Consumer Electronics 43(1), 1997): split the histogram at the
    mean grey level X_m and equalise the lower part onto [0, X_m] and the
    upper part onto [X_m+1, 1], so the mean brightness moves much less than
    with global HE.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EQUALIZE_CHOICES = ("none", "he", "bbhe")


def _check_image(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale array [H, W], got shape {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"image has an empty dimension: shape {img.shape}")
    return img


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if np.isscalar(size) else size
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise ValueError(f"output size must be positive, got {size!r}")
    return height, width


# ---------------------------------------------------------------- geometry


def center_crop_box(height: int, width: int) -> tuple[int, int, int]:
    """(top, left, side) of the largest centred square inside an H x W image."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def center_crop_square(img: np.ndarray) -> np.ndarray:
    """[H, W] -> [S, S] with S = min(H, W), centred (works for masks too)."""
    img = _check_image(img)
    top, left, side = center_crop_box(*img.shape)
    return img[top:top + side, left:left + side].copy()


def _resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] row-stochastic weights of a triangle (linear) filter.

    When shrinking, the triangle is widened by the scale factor, so every input
    pixel contributes (antialiasing); when enlarging it is plain linear
    interpolation. Pixel centres sit at i + 0.5 on both grids.
    """
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale - 0.5  # [n_out] in input pixel units
    dist = np.abs(np.arange(n_in)[None, :] - centres[:, None]) / support  # [n_out, n_in]
    weights = np.clip(1.0 - dist, 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def resize(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Antialiased (triangle-filter) resize: [H, W] -> [size, size] or [h, w].

    Output is a convex combination of input pixels, so [0, 1] stays [0, 1].
    """
    img = _check_image(img)
    out_h, out_w = _as_size(size)
    if (out_h, out_w) == img.shape:
        return img.astype(np.float32, copy=True)
    rows = _resample_matrix(img.shape[0], out_h)  # [h, H]
    cols = _resample_matrix(img.shape[1], out_w)  # [w, W]
    out = rows @ img.astype(np.float64) @ cols.T  # [h, W] @ [W, w] -> [h, w]
    return out.astype(np.float32)


def resize_nearest(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize (for masks: values are never mixed)."""
    img = _check_image(img)
    out_h, out_w = _as_size(size)
    # output pixel centre (i + 0.5) * scale falls in input pixel floor(...)
    rows = np.minimum(((np.arange(out_h) + 0.5) * img.shape[0] / out_h).astype(int), img.shape[0] - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * img.shape[1] / out_w).astype(int), img.shape[1] - 1)
    return img[rows[:, None], cols[None, :]].copy()


# ------------------------------------------------------------ equalisation


def _levels(img: np.ndarray, bins: int) -> np.ndarray:
    """Quantise [0, 1] to integer grey levels 0 .. bins-1 (level k <-> k / (bins-1))."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    return np.clip(np.rint(img * (bins - 1)), 0, bins - 1).astype(np.int64)


def histogram_equalization(img: np.ndarray, bins: int = 256) -> np.ndarray:
    """Global histogram equalisation; returns float32 [H, W] in [0, 1].

    A constant image has nothing to stretch and is returned unchanged.
    The mapping is monotone: pixel order is preserved (ties stay ties).
    """
    img = _check_image(img)
    levels = _levels(img, bins)  # [H, W] int
    cdf = np.cumsum(np.bincount(levels.ravel(), minlength=bins))  # [bins]
    n = levels.size
    cdf_min = cdf[levels.min()]
    if cdf_min == n:
        return img.astype(np.float32, copy=True)
    mapping = (cdf - cdf_min) / (n - cdf_min)  # [bins], 0 at the darkest occupied level
    return np.clip(mapping[levels], 0.0, 1.0).astype(np.float32)


def bbhe(img: np.ndarray, bins: int = 256) -> np.ndarray:
    """Brightness-preserving bi-histogram equalisation (Kim 1997).

    Levels <= X_m (the mean level) are equalised onto [0, X_m] with the
    lower sub-image's own cumulative density, levels > X_m onto
    [X_m+1, 1] with the upper one's. Returns float32 [H, W] in [0, 1].
    """
    img = _check_image(img)
    levels = _levels(img, bins)  # [H, W] int
    grey = np.arange(bins) / (bins - 1)  # [bins] value of each level
    mean_level = int(np.floor(levels.mean()))  # X_m
    hist = np.bincount(levels.ravel(), minlength=bins)
    mapping = np.zeros(bins)

    lower = hist[:mean_level + 1]
    mapping[:mean_level + 1] = grey[mean_level] * np.cumsum(lower) / max(lower.sum(), 1)
    if mean_level + 1 < bins:
        upper = hist[mean_level + 1:]
        start = grey[mean_level + 1]
        mapping[mean_level + 1:] = start + (1.0 - start) * np.cumsum(upper) / max(upper.sum(), 1)
    return np.clip(mapping[levels], 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------ pipeline


@dataclass(frozen=True)
class Preprocess:
    """Crop -> resize -> equalise, as one picklable callable on [H, W] floats.

    ``size=None`` keeps the resolution (the dataset resizes afterwards).
    Equalisation runs last so the output histogram is the equalised one.
    ``mask()`` applies the same geometry (crop, nearest resize) to a mask.
    """

    crop: bool = True
    equalize: str = "none"
    size: int | None = None
    bins: int = 256

    def __post_init__(self):
        if self.equalize not in EQUALIZE_CHOICES:
            raise ValueError(f"equalize must be one of {EQUALIZE_CHOICES}, got {self.equalize!r}")
        if self.size is not None and int(self.size) < 1:
            raise ValueError(f"size must be positive or None, got {self.size!r}")

    def __call__(self, img: np.ndarray) -> np.ndarray:
        out = _check_image(img).astype(np.float32)  # [H, W]
        if self.crop:
            out = center_crop_square(out)  # [S, S]
        if self.size is not None:
            out = resize(out, self.size)  # [size, size]
        if self.equalize == "he":
            out = histogram_equalization(out, self.bins)
        elif self.equalize == "bbhe":
            out = bbhe(out, self.bins)
        return out.astype(np.float32)

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """Same crop/resize as ``__call__`` for a [H, W] mask (bool in, bool out)."""
        out = _check_image(mask)
        if self.crop:
            out = center_crop_square(out)
        if self.size is not None:
            out = resize_nearest(out, self.size)
        return out.copy()

"""Synthetic anomalies for the self-supervised baselines: CutPaste, CutPaste-scar and AnatPaste.

All functions take one image [H, W] in [0, 1] and a numpy Generator, and return a new image (the input is
never modified), so a training step is reproducible from its seed.

  cutpaste       (Li et al., CVPR 2021) cut a rectangle of 2-15 % of the image area (aspect ratio
                 log-uniform in [0.3, 3.3]), jitter its brightness and contrast, paste it elsewhere.
  cutpaste_scar  the same with a thin rotated strip ("scar"); the paper's 2-16 x 10-25 px at 256 px,
                 scaled to the image size.
  anatpaste      (Sato et al. 2022) a CutPaste patch blended into the image only inside the lung field,
                 found by a threshold (`lung_mask`), so the synthetic anomaly is always anatomically
                 plausible: an opacity or lucency inside the lungs, never on the background or bones.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

AREA = (0.02, 0.15)              # patch area as a fraction of the image (CutPaste)
ASPECT = (0.3, 1 / 0.3)          # patch height / width, log-uniform
JITTER = 0.1                     # brightness and contrast jitter of the patch (CutPaste's colour jitter 0.1)
SCAR_WIDTH = (2 / 256, 16 / 256)     # CutPaste-scar sizes, as fractions of the image side
SCAR_LENGTH = (10 / 256, 25 / 256)
SCAR_ANGLE = (-45.0, 45.0)
LUNG_SMOOTH = 1.0                # px: Gaussian smoothing before the lung threshold
LUNG_WINDOW = (0.08, 0.92, 0.10, 0.90)   # rows, columns (fractions) where lungs are looked for
MIN_LUNG_FRACTION = 0.02         # a lung component smaller than this fraction of the image is dropped


def _check(image: np.ndarray) -> np.ndarray:
    assert image.ndim == 2, f"expected one image [H, W], got {image.shape}"
    return image.astype(np.float32, copy=False)


def _jitter(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    brightness = rng.uniform(-JITTER, JITTER)
    contrast = rng.uniform(1 - JITTER, 1 + JITTER)
    mean = patch.mean()
    return np.clip((patch - mean) * contrast + mean + brightness, 0.0, 1.0)


def patch_box(shape: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """(height, width) of a CutPaste rectangle for an image of `shape`."""
    h, w = shape
    area = rng.uniform(*AREA) * h * w
    aspect = np.exp(rng.uniform(np.log(ASPECT[0]), np.log(ASPECT[1])))
    ph = int(np.clip(round(np.sqrt(area * aspect)), 1, h - 1))
    pw = int(np.clip(round(np.sqrt(area / aspect)), 1, w - 1))
    return ph, pw


def cutpaste(image: np.ndarray, rng: np.random.Generator, region: np.ndarray | None = None) -> np.ndarray:
    """Paste a jittered copy of a random rectangle at another random place. With `region` (a bool mask
    [H, W]) the pasted pixels are kept only inside it. -> [H, W]"""
    x = _check(image)
    h, w = x.shape
    ph, pw = patch_box((h, w), rng)
    sy, sx = rng.integers(0, h - ph + 1), rng.integers(0, w - pw + 1)
    ty, tx = rng.integers(0, h - ph + 1), rng.integers(0, w - pw + 1)
    out = x.copy()
    patch = _jitter(x[sy:sy + ph, sx:sx + pw], rng)
    if region is None:
        out[ty:ty + ph, tx:tx + pw] = patch
    else:
        keep = region[ty:ty + ph, tx:tx + pw]
        out[ty:ty + ph, tx:tx + pw] = np.where(keep, patch, out[ty:ty + ph, tx:tx + pw])
    return out


def cutpaste_scar(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paste a thin rotated strip of the image (jittered) at another place. -> [H, W]"""
    x = _check(image)
    h, w = x.shape
    sw = max(1, int(round(rng.uniform(*SCAR_WIDTH) * w)))
    sl = max(2, int(round(rng.uniform(*SCAR_LENGTH) * h)))
    sy, sx = rng.integers(0, h - sl + 1), rng.integers(0, w - sw + 1)
    strip = _jitter(x[sy:sy + sl, sx:sx + sw], rng)
    angle = rng.uniform(*SCAR_ANGLE)
    strip = ndimage.rotate(strip, angle, reshape=True, order=1, mode="nearest")
    # grid-constant: a 1-2 px strip keeps its pixels (plain "constant" rounds a thin rotated mask to nothing)
    inside = ndimage.rotate(np.ones((sl, sw), np.float32), angle, reshape=True, order=0, mode="grid-constant") > 0.5
    sh, sw2 = strip.shape
    ty, tx = rng.integers(0, max(1, h - sh + 1)), rng.integers(0, max(1, w - sw2 + 1))
    out = x.copy()
    view = out[ty:ty + sh, tx:tx + sw2]
    keep = inside[:view.shape[0], :view.shape[1]]
    view[keep] = strip[:view.shape[0], :view.shape[1]][keep]
    return out


def lung_mask(image: np.ndarray) -> np.ndarray:
    """The lung fields of a frontal radiograph by thresholding: pixels of the smoothed image darker than
    Otsu's threshold inside a central window (which leaves out the air beside the body), opened to cut
    thin bridges, the two largest components kept, holes filled. -> bool [H, W] (all False if no
    component of at least MIN_LUNG_FRACTION of the image is found)."""
    x = ndimage.gaussian_filter(_check(image), LUNG_SMOOTH)
    h, w = x.shape
    window = np.zeros(x.shape, bool)
    window[int(LUNG_WINDOW[0] * h):int(LUNG_WINDOW[1] * h), int(LUNG_WINDOW[2] * w):int(LUNG_WINDOW[3] * w)] = True
    dark = ndimage.binary_opening((x < otsu_threshold(x)) & window, iterations=2)
    labels, n = ndimage.label(dark)
    if n == 0:
        return np.zeros(x.shape, bool)
    sizes = ndimage.sum(np.ones_like(x), labels, index=np.arange(1, n + 1))
    keep = [i + 1 for i in np.argsort(-sizes)[:2] if sizes[i] >= MIN_LUNG_FRACTION * x.size]
    return ndimage.binary_fill_holes(np.isin(labels, keep))


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that maximises the between-class variance of `values` (Otsu 1979)."""
    hist, edges = np.histogram(values.ravel(), bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2                     # class means use bin centres
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[1:][int(np.argmax(between[:-1]))])      # the split's upper bin edge: x < t is the dark class


def anatpaste(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A CutPaste patch kept only inside the lung field (plain CutPaste if no lung is found). -> [H, W]"""
    x = _check(image)
    lungs = lung_mask(x)
    if not lungs.any():
        return cutpaste(x, rng)
    for _ in range(10):                        # a patch that misses the lungs changes nothing: draw again
        out = cutpaste(x, rng, region=lungs)
        if not np.array_equal(out, x):
            return out
    return out


# augmentation name -> function; class k of a pretext task is the k-th name (class 0 = the normal image)
AUGMENTATIONS = {"cutpaste": cutpaste, "scar": cutpaste_scar, "anatpaste": anatpaste}

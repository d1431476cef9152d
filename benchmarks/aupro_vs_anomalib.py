"""Cross-check of our AUPRO (`hqanogan_core.metrics.aupro`) against anomalib's AUPRO on the same maps.

    PYTHONPATH=/tmp/anolib python benchmarks/aupro_vs_anomalib.py [--data DIR] [--seed S] [--fpr-limit F]

Two sets of (maps [N, H, W] float32, masks [N, H, W] bool):
  synthetic  50 seeded 64x64 masks with 1-3 ragged blobs each (discs with noisy edges) and maps = smoothed
             mask + smoothed Gaussian noise, so the maps correlate with the masks but imperfectly;
  phantom    the phantom's validation split, map = Gaussian-smoothed |image - mean training image|.

anomalib is not a requirement of the package; it is imported lazily, and when it is missing only our
numbers are printed (exit 0). anomalib 2.7.0's AUPRO (anomalib/metrics/aupro.py), read for this check:
  - `AUPRO` = `AnomalibMetric` (pulls named fields out of a `Batch`) + `_AUPRO` (the torchmetrics Metric);
    we call `_AUPRO` directly: update(preds [N, H, W] float, target [N, H, W] in {0, 1}), then compute().
  - exact: one PRO point per distinct map value (no num_thresholds, no binning), pixel called abnormal
    when map >= t, the segment crossing fpr_limit cut by linear interpolation, area / fpr_limit.
    This is our definition; ours additionally thins the thresholds to `max_thresholds` (default 10,000)
    evenly spaced ones, so we print ours both as shipped and exact (max_thresholds = number of pixels).
  - float32: anomalib casts maps to float32 and accumulates FPR/PRO with float32 cumsums; ours is float64.
    The maps here are float32 already, so both see the same ties; the float32 sums cost ~1e-6.
  - regions: anomalib labels mask components with cv2.connectedComponents (CPU; default connectivity 8)
    or kornia's connected_components (GPU; 3x3 max-pool propagation, also 8-connected). Ours labels them
    with `metrics.mask_regions` (scipy.ndimage.label with `metrics.REGION_STRUCTURE` = np.ones((3, 3)),
    8-connected, as MVTec AD's evaluation code): the same regions, so the shipped function is compared as
    is. For contrast we also run ours with `metrics.REGION_STRUCTURE` patched to 4-connectivity
    (ndimage.label's default): two blobs touching only at a corner are then two regions, which changes the
    per-region mean; the printed gap shows how much the connectivity matters on these masks.
"""
from __future__ import annotations

import argparse
from unittest import mock

import numpy as np
from scipy import ndimage

from hqanogan_core import metrics


def synthetic(n: int = 50, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (maps [n, size, size] float32, masks [n, size, size] bool)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), bool)
    for m in masks:
        for _ in range(rng.integers(1, 4)):                                      # 1-3 blobs
            cy, cx = rng.uniform(8, size - 8, 2)
            r = rng.uniform(3, 9)
            ragged = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.0) * 2 * r / 3  # noisy edge
            m |= np.hypot(yy - cy, xx - cx) + ragged < r
    noise = ndimage.gaussian_filter(rng.normal(size=masks.shape), sigma=(0, 1.5, 1.5))
    maps = ndimage.gaussian_filter(masks.astype(float), sigma=(0, 1.5, 1.5)) + 0.6 * noise / noise.std()
    return maps.astype(np.float32), masks


def phantom(root: str | None, sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Validation split of the phantom: (maps [N, H, W] float32, masks [N, H, W] bool)."""
    from hqanogan_core.data.default import phantom_dataset
    from hqanogan_core.data.splits import load_split

    root = root or phantom_dataset()
    mean = load_split(root, "train").images.mean(axis=0)                          # [H, W]
    valid = load_split(root, "valid")
    maps = ndimage.gaussian_filter(np.abs(valid.images - mean), sigma=(0, sigma, sigma))
    return maps.astype(np.float32), valid.masks


FOUR = ndimage.generate_binary_structure(2, 1)       # 4-connected (ndimage.label's default), for contrast


def ours(maps, masks, fpr_limit: float, exact: bool = False, structure=None) -> float:
    """Our AUPRO; `exact` uses every distinct map value as threshold; `structure` replaces
    `metrics.REGION_STRUCTURE` (None = as shipped, 8-connected)."""
    kw = {"max_thresholds": maps.size} if exact else {}
    if structure is None:
        return metrics.aupro(maps, masks, fpr_limit, **kw)
    with mock.patch.object(metrics, "REGION_STRUCTURE", structure):
        return metrics.aupro(maps, masks, fpr_limit, **kw)


def anomalib_aupro(maps, masks, fpr_limit: float) -> float:
    import torch
    from anomalib.metrics.aupro import _AUPRO

    metric = _AUPRO(fpr_limit=fpr_limit)
    metric.update(torch.from_numpy(maps), torch.from_numpy(masks.astype(np.int64)))  # [N, H, W] each
    return float(metric.compute())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset folder (default: the phantom, phantom_dataset())")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fpr-limit", type=float, default=0.3)
    args = ap.parse_args()
    try:
        import anomalib
        from anomalib.metrics.aupro import _AUPRO  # noqa: F401
    except ImportError as e:
        anomalib = None
        print(f"anomalib is not importable ({e}); printing our numbers only "
              "(install: pip install --target /tmp/anolib --no-deps anomalib ..., run with PYTHONPATH=/tmp/anolib)")
    else:
        print(f"anomalib {anomalib.__version__}")
    for name, (maps, masks) in (("synthetic", synthetic(seed=args.seed)), ("phantom-valid", phantom(args.data))):
        n4 = sum(ndimage.label(m, structure=FOUR)[1] for m in masks)
        n8 = sum(metrics.mask_regions(m)[1] for m in masks)
        print(f"\n{name}: maps {maps.shape}, {int(masks.any(axis=(1, 2)).sum())} images with masks, "
              f"{n8} regions 8-connected, {n4} regions 4-connected, fpr_limit {args.fpr_limit}")
        rows = {"ours (shipped: 8-conn, <=10k thresholds)": ours(maps, masks, args.fpr_limit),
                "ours exact, 8-connected": ours(maps, masks, args.fpr_limit, exact=True),
                "ours exact, 4-connected (contrast)": ours(maps, masks, args.fpr_limit, exact=True, structure=FOUR)}
        for label, value in rows.items():
            print(f"  {label:42s} {value:.8f}")
        if anomalib is None:
            continue
        theirs = anomalib_aupro(maps, masks, args.fpr_limit)
        print(f"  {'anomalib _AUPRO (8-conn, exact, float32)':42s} {theirs:.8f}")
        for label, value in rows.items():
            print(f"  |{label} - anomalib| = {abs(value - theirs):.2e}")


if __name__ == "__main__":
    main()

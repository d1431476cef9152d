"""metrics.aupro against anomalib's AUPRO (anomalib 2.7.0, `anomalib.metrics.aupro._AUPRO`) on seeded maps.

Skipped unless anomalib is importable (it is not a requirement; see benchmarks/aupro_vs_anomalib.py for
an install into a separate --target folder). Both are exact (one threshold per distinct map value, cut at
fpr_limit by interpolation, area / fpr_limit) and both label 8-connected mask regions (anomalib:
cv2.connectedComponents; ours: `metrics.mask_regions`, scipy.ndimage.label with `metrics.REGION_STRUCTURE`).
So the shipped function must agree as is: (1) on masks whose 4- and 8-components coincide and (2) on ragged
masks with corner-only contacts, where the two definitions differ; there a 4-connected labelling
(`REGION_STRUCTURE` patched) must visibly disagree, which shows the tolerance does not hide that difference.

Tolerance 1e-5: anomalib works in float32 (maps cast to float32, float32 cumsums and trapezoids), ours in
float64. Seen: <= 6e-8 on these sets at fpr_limit 0.05 and 0.3, 1.7e-6 and 3.6e-6 at fpr_limit 1.0 (the
longest float32 sums). 1e-5 sits above that rounding yet far below the 4- vs 8-connectivity effect it must
not hide (8e-3 to 2.2e-2 on the ragged set here, 3e-3 to 1e-2 on the benchmark sets).
The sets are small (12 images of 32x32, ~5k thresholds), so the shipped <= 10k thresholds are all of them.
"""
from unittest import mock

import numpy as np
import pytest
from scipy import ndimage

from hqanogan_core import metrics

anomalib_aupro = pytest.importorskip("anomalib.metrics.aupro")
torch = pytest.importorskip("torch")

TOL = 1e-5
FOUR = ndimage.generate_binary_structure(2, 1)       # 4-connected (scipy.ndimage.label's default)


def _maps_masks(ragged: bool, n: int = 12, size: int = 32, seed: int = 0):
    """(maps [n, size, size] float32, masks [n, size, size] bool): 1-2 discs per image (edges made ragged
    by smoothed noise when `ragged`), maps = smoothed mask + smoothed noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), bool)
    for m in masks:
        for _ in range(rng.integers(1, 3)):
            cy, cx, r = *rng.uniform(6, size - 6, 2), rng.uniform(2.5, 6)
            edge = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.0) * 2 * r / 3 if ragged else 0
            m |= np.hypot(yy - cy, xx - cx) + edge < r
    noise = ndimage.gaussian_filter(rng.normal(size=masks.shape), sigma=(0, 1.5, 1.5))
    maps = ndimage.gaussian_filter(masks.astype(float), sigma=(0, 1.5, 1.5)) + 0.6 * noise / noise.std()
    return maps.astype(np.float32), masks


def _theirs(maps, masks, fpr_limit=0.3) -> float:
    metric = anomalib_aupro._AUPRO(fpr_limit=fpr_limit)
    metric.update(torch.from_numpy(maps), torch.from_numpy(masks.astype(np.int64)))   # [N, H, W] each
    return float(metric.compute())


def _n_regions(masks, structure) -> int:
    return sum(ndimage.label(m, structure=structure)[1] for m in masks)


@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_shipped_aupro_matches_anomalib_when_connectivities_agree(fpr_limit):
    maps, masks = _maps_masks(ragged=False)
    assert _n_regions(masks, FOUR) == _n_regions(masks, metrics.REGION_STRUCTURE)   # same regions under 4 and 8
    assert metrics.aupro(maps, masks, fpr_limit) == pytest.approx(_theirs(maps, masks, fpr_limit), abs=TOL)


@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_shipped_aupro_matches_anomalib_on_corner_contacts(fpr_limit):
    maps, masks = _maps_masks(ragged=True)
    assert _n_regions(masks, FOUR) > _n_regions(masks, metrics.REGION_STRUCTURE)    # corner-only contacts
    theirs = _theirs(maps, masks, fpr_limit)
    assert metrics.aupro(maps, masks, fpr_limit) == pytest.approx(theirs, abs=TOL)
    # contrast: 4-connected regions give a different number, by far more than TOL
    with mock.patch.object(metrics, "REGION_STRUCTURE", FOUR):
        ours4 = metrics.aupro(maps, masks, fpr_limit)
    assert abs(ours4 - theirs) > 100 * TOL

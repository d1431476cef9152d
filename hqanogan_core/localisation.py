"""Where is the anomaly? Localisation and naturalness metrics as pure functions of maps, masks and images.

    dice                 per-image Dice of a thresholded map against its mask
    dice_threshold       the threshold with the best mean Dice on a set of images (choose it on validation)
    pixel_bootstrap      bootstrap 95 % intervals of pixel AUROC and AUPRO, resampling whole images
    naturalness          how normal a method's restorations of abnormal images look (SWD to real normals)
                         and how much they change the image outside vs inside the finding

Maps are [N, H, W] (higher = more anomalous), masks [N, H, W] bool. The point values of pixel AUROC and
AUPRO are `metrics.pixel_auroc` / `metrics.aupro`; the intervals here come from the same quantities
computed on histograms over fixed bins (so one resample is a weighted sum, not a new sort), which the
tests check against the exact functions.
"""
from __future__ import annotations

import numpy as np
import torch

from .metrics import mask_regions
from .swd import swd

NATURALNESS_SWD = {"descriptors_per_image": 64}      # half ProGAN's 128 patches per image: same mean, 2x faster


def dice(maps: np.ndarray, masks: np.ndarray, threshold: float) -> np.ndarray:
    """Dice 2|P & M| / (|P| + |M|) per image, P = map >= threshold. [N, H, W] x 2 -> [N] (1 when both empty)."""
    maps, masks = np.asarray(maps), np.asarray(masks) > 0
    assert maps.shape == masks.shape and maps.ndim == 3, (maps.shape, masks.shape)
    pred = maps >= threshold
    inter = (pred & masks).sum(axis=(1, 2))
    total = pred.sum(axis=(1, 2)) + masks.sum(axis=(1, 2))
    return np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)


def dice_threshold(maps: np.ndarray, masks: np.ndarray, n_candidates: int = 200) -> tuple[float, float]:
    """(threshold, mean Dice) maximising the mean per-image Dice over these images (all with a finding).

    Candidates are `n_candidates` quantiles of the map values between the 50th and the 99.99th percentile."""
    maps = np.asarray(maps, dtype=np.float64)
    candidates = np.unique(np.quantile(maps, np.linspace(0.5, 0.9999, n_candidates)))
    means = np.array([dice(maps, masks, t).mean() for t in candidates])
    best = int(np.argmax(means))
    return float(candidates[best]), float(means[best])


def _stratified_weights(labels: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """How often each image appears in each stratified resample (normals and abnormals separately). [B, N]"""
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_boot, len(labels)))
    for group in (np.flatnonzero(labels), np.flatnonzero(~labels)):
        for b in range(n_boot):
            np.add.at(weights[b], rng.choice(group, len(group)), 1.0)
    return weights


def pixel_bootstrap(maps: np.ndarray, masks: np.ndarray, n_boot: int = 200, seed: int = 0, fpr_limit: float = 0.3,
                    bins: int = 2048) -> dict:
    """Percentile 95 % intervals of pixel AUROC and AUPRO over stratified resamples of whole images.

    Pixel values are put into `bins` quantile bins once; per image the histogram of its normal pixels and
    per mask region (8-connected, as in `metrics.pro_curve`) the histogram of its pixels are kept, and a
    resample weighs them by how often it drew each image. -> {"pixel_auroc": [lo, hi], "aupro": [lo, hi],
    "binned": {"pixel_auroc": full-sample value, "aupro": ...}} (the binned values show the binning error)."""
    maps, masks = np.asarray(maps, dtype=np.float64), np.asarray(masks) > 0
    assert maps.shape == masks.shape and maps.ndim == 3, (maps.shape, masks.shape)
    n = len(maps)
    edges = np.unique(np.quantile(maps, np.linspace(0, 1, bins + 1)[1:-1]))
    b = np.searchsorted(edges, maps, side="right")                                  # bin index [N, H, W]
    nb = len(edges) + 1
    neg = np.stack([np.bincount(b[i][~masks[i]], minlength=nb) for i in range(n)]).astype(np.float64)   # [N, nb]
    pos = np.stack([np.bincount(b[i][masks[i]], minlength=nb) for i in range(n)]).astype(np.float64)
    regions, owner = [], []
    for i in range(n):
        labelled, k = mask_regions(masks[i])
        for r in range(1, k + 1):
            hist = np.bincount(b[i][labelled == r], minlength=nb).astype(np.float64)
            regions.append(hist / hist.sum())
            owner.append(i)
    if not regions:
        raise ValueError("pixel_bootstrap needs at least one anomalous region in the masks")
    regions, owner = np.stack(regions), np.array(owner)                              # [R, nb], [R]
    has_finding = masks.reshape(n, -1).any(axis=1)
    weights = np.vstack([np.ones((1, n)), _stratified_weights(has_finding, n_boot, seed)])   # row 0: full sample

    def above(h):  # fraction called abnormal when thresholding at each bin's lower edge, highest bin first
        return np.cumsum(h[:, ::-1], axis=1) / np.maximum(h.sum(axis=1, keepdims=True), 1e-12)

    neg_w, pos_w = weights @ neg, weights @ pos                                     # [B+1, nb]
    below_neg = np.cumsum(neg_w, axis=1) - neg_w                                    # negatives in lower bins
    auroc = (pos_w * (below_neg + 0.5 * neg_w)).sum(axis=1) / (pos_w.sum(axis=1) * neg_w.sum(axis=1))
    fpr = np.hstack([np.zeros((len(weights), 1)), above(neg_w)])                    # [B+1, nb+1]
    w_reg = weights[:, owner]                                                        # [B+1, R]
    pro = np.hstack([np.zeros((len(weights), 1)), (w_reg @ np.cumsum(regions[:, ::-1], axis=1))
                     / w_reg.sum(axis=1, keepdims=True)])
    aupro = np.empty(len(weights))
    for row in range(len(weights)):
        f, p = fpr[row], pro[row]
        keep = f <= fpr_limit
        f_cut, p_cut = np.r_[f[keep], fpr_limit], np.r_[p[keep], np.interp(fpr_limit, f, p)]
        aupro[row] = np.trapezoid(p_cut, f_cut) / fpr_limit
    ci = lambda v: [float(x) for x in np.quantile(v[1:], [0.025, 0.975])]       # noqa: E731
    return {"pixel_auroc": ci(auroc), "aupro": ci(aupro),
            "binned": {"pixel_auroc": float(auroc[0]), "aupro": float(aupro[0])}}


def inside_outside(change: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image with a finding: the mean of `change` (a residual |x - x_hat|) inside its mask and outside it.

    change, masks [N, H, W] -> (inside [n], outside [n]) over the n images whose mask is not empty. Their
    means' ratio is the "contrast" of a restoration: does the finding stay in the residual?"""
    change, masks = np.asarray(change), np.asarray(masks) > 0
    assert change.shape == masks.shape and change.ndim == 3, (change.shape, masks.shape)
    has = masks.reshape(len(masks), -1).any(axis=1)
    inside = np.array([c[m].mean() for c, m in zip(change[has], masks[has])])
    outside = np.array([c[~m].mean() for c, m in zip(change[has], masks[has])])
    return inside, outside


def naturalness(restored: np.ndarray, inputs: np.ndarray, masks: np.ndarray, normals: np.ndarray,
                seed: int = 0) -> dict:
    """How normal do restorations of abnormal images look, and what did they change?

    restored, inputs, masks [N, H, W] (abnormal images, restorations in [0, 1] at the input's size);
    normals [M, H, W] real normal images. -> {"swd": SWD x1e3 restored vs normals (lower = more like real
    normals), "change_inside" / "change_outside": mean |x - x_hat| inside / outside the finding (mean over
    images), "contrast": their ratio (> 1: the restoration changed the finding more than the rest; inf when it
    changed only the finding, nan when it changed nothing)}"""
    restored, inputs, masks = np.asarray(restored), np.asarray(inputs), np.asarray(masks) > 0
    assert restored.shape == inputs.shape == masks.shape and restored.ndim == 3, (restored.shape, inputs.shape)
    inside, outside = inside_outside(np.abs(inputs - restored), masks)
    c_in, c_out = float(inside.mean()), float(outside.mean())
    contrast = c_in / c_out if c_out > 0 else (np.inf if c_in > 0 else np.nan)   # no 0/0 warnings
    return {"swd": image_swd(restored, normals, seed), "change_inside": c_in, "change_outside": c_out,
            "contrast": contrast}


def image_swd(a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
    """SWD x1e3 (the package's multi-scale SWD, NATURALNESS_SWD settings) between two sets of [N, H, W]
    images in [0, 1]."""
    to_tensor = lambda x: torch.from_numpy(np.asarray(x, np.float32)[:, None] * 2 - 1)   # noqa: E731
    return float(swd(to_tensor(a), to_tensor(b), seed=seed, **NATURALNESS_SWD)["avg"])

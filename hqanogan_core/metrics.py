"""Detection metrics as pure functions of (scores, labels) and (maps, masks).

Conventions (shared with anomalib): a higher score means more anomalous, label 1 is
abnormal, label 0 is normal. Image metrics and pixel metrics are separate functions.
Thresholds are never chosen here; `sensitivity_at_specificity` only reads off the ROC.

Everything is numpy, exact (ties handled by midranks / grouped thresholds) and checked
against scikit-learn and hand computations in tests/test_metrics.py.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores has {scores.size} entries but labels has {labels.size}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"scores contain {np.sum(~np.isfinite(scores))} non-finite values")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (abnormal)")
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("need both normal (0) and abnormal (1) labels to compute this metric")
    return scores, labels


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    # boundaries of runs of equal values
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x)) + 1]
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def auroc(scores, labels) -> float:
    """Area under the ROC curve = P(score_abnormal > score_normal) + 0.5 P(tie).

    Mann-Whitney U statistic from midranks: U / (n_pos * n_neg).
    """
    scores, labels = _check(scores, labels)
    ranks = _midranks(scores)
    n_pos = labels.sum()
    n_neg = len(labels) - n_pos
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _counts_by_threshold(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Cumulative (true positives, false positives) when calling score >= t abnormal, for each
    distinct score t in decreasing order; plus those thresholds and the class sizes."""
    scores, labels = _check(scores, labels)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_run]
    fp = np.cumsum(~y)[last_of_run]
    return tp, fp, s[last_of_run], int(y.sum()), int((~y).sum())


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds), thresholds decreasing.

    One point per distinct score; the first point is (0, 0) at threshold +inf.
    An image is called abnormal when score >= threshold.
    """
    tp, fp, thresholds, n_pos, n_neg = _counts_by_threshold(scores, labels)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, thresholds]


def average_precision(scores, labels) -> float:
    """Average precision: sum over thresholds of (recall step) x precision (no interpolation)."""
    tp, fp, _, n_pos, _ = _counts_by_threshold(scores, labels)
    precision = tp / (tp + fp)
    recall_step = np.diff(np.r_[0.0, tp / n_pos])
    return float(np.sum(recall_step * precision))


def sensitivity_at_specificity(scores, labels, specificity: float = 0.95) -> float:
    """Highest true-positive rate among thresholds whose specificity (1 - FPR) >= `specificity`."""
    if not 0.0 < specificity <= 1.0:
        raise ValueError(f"specificity must be in (0, 1], got {specificity}")
    fpr, tpr, _ = roc_curve(scores, labels)
    ok = fpr <= 1.0 - specificity + 1e-12
    return float(tpr[ok].max())


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    scores,
    labels,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(point estimate, lower, upper): percentile bootstrap CI at level 1 - alpha.

    Resamples normals and abnormals separately (stratified), so every replicate has
    both classes and the class balance of the test set is kept. For `auroc` the replicates
    are computed all at once from the resampling counts (`_auroc_of_resamples`: the same
    values as calling auroc on each resample, in a fraction of the time).
    """
    scores, labels = _check(scores, labels)
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(labels)
    neg = np.flatnonzero(~labels)
    draws = [(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(n_boot)]
    if metric is auroc:
        stats = _auroc_of_resamples(scores, pos, neg, draws)
    else:
        stats = np.array([metric(scores[np.r_[p, n]], labels[np.r_[p, n]]) for p, n in draws])
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(metric(scores, labels)), float(lo), float(hi)


def _auroc_of_resamples(scores: np.ndarray, pos: np.ndarray, neg: np.ndarray, draws) -> np.ndarray:
    """AUROC of every resample [(abnormal indices, normal indices), ...] -> [B].

    A resample is a count per image. AUROC = sum over abnormals i of c_i * (weight of normals scored
    below s_i + half the weight tied with it) / (n_pos * n_neg), and the normal weight below any value is a
    cumulative sum over the normals sorted by score."""
    order = np.argsort(scores[neg], kind="mergesort")
    sorted_neg = scores[neg][order]
    slot = np.empty(len(scores), dtype=np.int64)        # image index -> its place among the abnormals, or
    slot[pos] = np.arange(len(pos))                     # among the normals sorted by score
    slot[neg[order]] = np.arange(len(neg))
    c_pos = np.stack([np.bincount(slot[p], minlength=len(pos)) for p, _ in draws])            # [B, P]
    c_neg = np.stack([np.bincount(slot[n], minlength=len(neg)) for _, n in draws])            # [B, N] sorted
    cum = np.concatenate([np.zeros((len(draws), 1)), np.cumsum(c_neg, axis=1)], axis=1)             # [B, N + 1]
    below = np.searchsorted(sorted_neg, scores[pos], side="left")                                    # [P]
    up_to = np.searchsorted(sorted_neg, scores[pos], side="right")
    wins = cum[:, below] + 0.5 * (cum[:, up_to] - cum[:, below])                                     # [B, P]
    return (c_pos * wins).sum(axis=1) / (len(pos) * len(neg))


def delong_test(scores_a, scores_b, labels) -> dict:
    """DeLong, DeLong & Clarke-Pearson (1988) test of AUROC(a) = AUROC(b) for two scores of the SAME images.

    The AUROC is a mean of per-image "placement" values (V10 for abnormals, V01 for normals); their
    covariances across the two methods give the variance of the difference, and z = diff / sd is
    referred to a standard normal. -> {"auroc_a", "auroc_b", "diff", "se", "z", "p"} (p two-sided)."""
    from scipy.stats import norm

    a, labels = _check(scores_a, labels)
    b, _ = _check(scores_b, labels)
    pos, neg = labels, ~labels
    m, n = int(pos.sum()), int(neg.sum())
    v10, v01 = [], []
    for s in (a, b):
        r_all, r_pos, r_neg = _midranks(s), _midranks(s[pos]), _midranks(s[neg])
        v10.append((r_all[pos] - r_pos) / n)          # per abnormal: fraction of normals below it
        v01.append(1 - (r_all[neg] - r_neg) / m)      # per normal: fraction of abnormals above it
    auc = np.array([v.mean() for v in v10])
    cov = np.cov(np.stack(v10)) / m + np.cov(np.stack(v01)) / n                     # [2, 2]
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = float(auc[0] - auc[1])
    se = float(np.sqrt(max(var, 0.0)))
    z = diff / se if se > 0 else (0.0 if diff == 0 else float(np.sign(diff)) * np.inf)
    return {"auroc_a": float(auc[0]), "auroc_b": float(auc[1]), "diff": diff, "se": se, "z": float(z),
            "p": float(2 * norm.sf(abs(z)))}


def paired_bootstrap(metric: Callable[[np.ndarray, np.ndarray], float], scores_a, scores_b, labels,
                     n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict:
    """metric(a) - metric(b) on the same images, with a stratified paired bootstrap: each replicate
    resamples images (normals and abnormals separately) and scores both methods on the same resample.
    -> {"diff", "ci95": [lo, hi], "p"}: p two-sided, 2 (1 + min(#(diff* <= 0), #(diff* >= 0))) / (B + 1), so
    its resolution (2 / (B + 1)) is stated by its smallest value rather than hidden behind a 0."""
    a, labels = _check(scores_a, labels)
    b, _ = _check(scores_b, labels)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    draws = [(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(n_boot)]
    if metric is auroc:
        diffs = _auroc_of_resamples(a, pos, neg, draws) - _auroc_of_resamples(b, pos, neg, draws)
    else:
        diffs = np.array([metric(a[np.r_[p, n]], labels[np.r_[p, n]]) - metric(b[np.r_[p, n]], labels[np.r_[p, n]])
                          for p, n in draws])
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * (1 + min(np.sum(diffs <= 0), np.sum(diffs >= 0))) / (n_boot + 1))   # never below 2 / (B + 1)
    return {"diff": float(metric(a, labels) - metric(b, labels)), "ci95": [float(lo), float(hi)], "p": float(p)}


def pixel_auroc(maps, masks, max_pixels: int = 2_000_000, seed: int = 0) -> float:
    """AUROC over all pixels of all images: anomaly maps [N, H, W] vs binary masks [N, H, W].

    Above `max_pixels` pixels a seeded uniform subsample is used (the estimate is
    unbiased; its standard error is far below the image-level CI widths we report).
    """
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks)
    if maps.shape != masks.shape:
        raise ValueError(f"anomaly maps have shape {maps.shape} but masks have {masks.shape}")
    flat_maps = maps.ravel()
    flat_masks = (masks.ravel() > 0).astype(np.int64)
    if flat_maps.size > max_pixels:
        idx = np.random.default_rng(seed).choice(flat_maps.size, max_pixels, replace=False)
        flat_maps, flat_masks = flat_maps[idx], flat_masks[idx]
    return auroc(flat_maps, flat_masks)


def image_metrics(scores, labels, n_boot: int = 1000, seed: int = 0) -> dict:
    """AUROC, AP and sensitivity at 95 % specificity, each with a bootstrap 95 % CI."""
    out = {}
    for name, fn in (
        ("auroc", auroc),
        ("ap", average_precision),
        ("sens_at_95spec", sensitivity_at_specificity),
    ):
        value, lo, hi = bootstrap_ci(fn, scores, labels, n_boot=n_boot, seed=seed)
        out[name] = {"value": value, "ci95": [lo, hi]}
    return out


REGION_STRUCTURE = np.ones((3, 3), dtype=int)   # 8-connected regions, as MVTec AD's evaluation and anomalib


def mask_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(labelled [H, W], number of regions): the 8-connected components of one mask [H, W]."""
    from scipy import ndimage

    return ndimage.label(mask, structure=REGION_STRUCTURE)


def pro_curve(maps, masks, fpr_limit: float = 0.3, max_thresholds: int = 10_000
              ) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) points of the per-region-overlap curve (Bergmann et al., IJCV 2021), up to and including
    the first point at or beyond `fpr_limit`.

    Regions are the 8-connected components of each mask (`mask_regions`; pixels touching at a corner
    belong to one region, as in MVTec AD's evaluation code and anomalib's AUPRO). At a threshold t a pixel
    is called abnormal when its map value is >= t; PRO(t) is the mean over all regions of the fraction of
    the region's pixels called abnormal, and FPR(t) the fraction of all mask-free pixels (of every image)
    called abnormal. Thresholds are the distinct map values from the largest down to the first at which FPR
    reaches the limit (thinned evenly to `max_thresholds`), preceded by +inf, where FPR = PRO = 0.
    """
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks) > 0
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"need maps and masks of the same shape [N, H, W], got {maps.shape} and {masks.shape}")
    regions = []
    for m, a in zip(masks, maps):
        labelled, n = mask_regions(m)
        regions += [np.sort(a[labelled == k]) for k in range(1, n + 1)]      # ascending pixel values
    if not regions:
        raise ValueError("PRO needs at least one anomalous region in the masks")
    negatives = np.sort(maps[~masks])                                          # ascending
    if negatives.size == 0:
        raise ValueError("PRO needs mask-free pixels to measure false positives")
    n_limit = int(np.ceil(fpr_limit * negatives.size))                         # negatives called abnormal
    lowest = negatives[max(negatives.size - n_limit, 0)] if n_limit < negatives.size else -np.inf
    values = maps.ravel()
    candidates = np.unique(values[values >= lowest])[::-1]                     # distinct, descending
    if candidates.size > max_thresholds:
        candidates = candidates[np.linspace(0, candidates.size - 1, max_thresholds).round().astype(int)]
    thresholds = np.r_[np.inf, candidates]
    fpr = (negatives.size - np.searchsorted(negatives, thresholds, side="left")) / negatives.size
    pro = np.mean([(r.size - np.searchsorted(r, thresholds, side="left")) / r.size for r in regions], axis=0)
    return fpr, pro


def aupro(maps, masks, fpr_limit: float = 0.3, max_thresholds: int = 10_000) -> float:
    """Area under the PRO curve up to `fpr_limit`, divided by `fpr_limit` (1 = perfect; MVTec AD's AUPRO).

    Trapezoids between the points of `pro_curve`; the segment crossing `fpr_limit` is cut there by linear
    interpolation."""
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, pro = pro_curve(maps, masks, fpr_limit, max_thresholds)
    keep = fpr <= fpr_limit
    f, p = fpr[keep], pro[keep]
    if f[-1] < fpr_limit:
        nxt = np.flatnonzero(~keep)[0]
        p_cut = np.interp(fpr_limit, [fpr[nxt - 1], fpr[nxt]], [pro[nxt - 1], pro[nxt]])
        f, p = np.r_[f, fpr_limit], np.r_[p, p_cut]
    return float(np.trapezoid(p, f) / fpr_limit)

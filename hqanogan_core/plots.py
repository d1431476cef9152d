"""Figure helpers for the book, so notebook cells stay one line long.

All functions take numpy arrays (images [N, H, W] in [0, 1]) and return the
matplotlib Figure they drew on.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from hqanogan_core import metrics

MASK_COLOR = "#ff3b30"


def _grid(n: int, ncols: int, cell: float = 1.6):
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    return fig, axes.ravel()


def show_images(images, titles=None, masks=None, ncols: int = 8, cell: float = 1.6, suptitle: str | None = None):
    """A grid of grayscale images (a list, sizes may differ); optional titles and red mask contours."""
    images = [np.asarray(im) for im in images]  # each [H, W]; sizes may differ
    assert all(im.ndim == 2 for im in images), "expected a list of [H, W] images"
    fig, axes = _grid(len(images), min(ncols, len(images)), cell)
    for i, img in enumerate(images):
        axes[i].imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="lanczos")
        if masks is not None and masks[i] is not None and np.any(masks[i]):
            axes[i].contour(masks[i].astype(float), levels=[0.5], colors=MASK_COLOR, linewidths=0.9)
        if titles is not None:
            axes[i].set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def normal_vs_abnormal(normal, abnormals: dict, masks: dict, cell: float = 2.2):
    """One patient: the normal image, then each anomaly without and with its mask outline.

    normal: [H, W]; abnormals: {type: [H, W]}; masks: {type: bool [H, W]}.
    """
    kinds = list(abnormals)
    fig, axes = plt.subplots(2, len(kinds) + 1, figsize=(cell * (len(kinds) + 1), cell * 2))
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(normal, cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title("normal", fontsize=9)
    axes[1, 0].text(0.5, 0.5, "top: image\nbottom: with\nmask outline", ha="center", va="center", fontsize=9)
    for j, kind in enumerate(kinds, start=1):
        axes[0, j].imshow(abnormals[kind], cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(kind, fontsize=9)
        axes[1, j].imshow(abnormals[kind], cmap="gray", vmin=0, vmax=1)
        if masks[kind].any():
            axes[1, j].contour(masks[kind].astype(float), levels=[0.5], colors=MASK_COLOR, linewidths=1)
        axes[1, j].set_title("mask outline", fontsize=9)
    fig.tight_layout()
    return fig


def roc_curves(scores_by_method: dict, labels, ax=None, title: str = "ROC on the test split"):
    """ROC curve per method, AUROC in the legend. scores_by_method: {name: [N] scores}."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
    else:
        fig = ax.figure
    for name, scores in scores_by_method.items():
        fpr, tpr, _ = metrics.roc_curve(scores, labels)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {metrics.auroc(scores, labels):.2f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--", label="chance")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_aspect("equal")
    fig.tight_layout()
    return fig


def auroc_by_type(report: dict, ax=None, reference: float | None = 0.70):
    """Per-anomaly-type AUROC with 95 % CIs for every method of a benchmark report."""
    methods = list(report["methods"])
    kinds = sorted({k for m in methods for k in report["methods"][m]["per_type"]}) + ["overall"]
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.2 * len(kinds) + 2, 3.4))
    else:
        fig = ax.figure
    width = 0.8 / len(methods)
    for i, name in enumerate(methods):
        r = report["methods"][name]
        entries = [r["per_type"][k]["auroc"] for k in kinds[:-1]] + [r["image"]["auroc"]]
        values = np.array([e["value"] for e in entries])
        lo = values - np.array([e["ci95"][0] for e in entries])
        hi = np.array([e["ci95"][1] for e in entries]) - values
        x = np.arange(len(kinds)) + (i - (len(methods) - 1) / 2) * width
        ax.errorbar(x, values, yerr=[lo, hi], fmt="o", capsize=3, label=name)
    ax.axhline(0.5, color="0.6", lw=0.8, ls="--")
    if reference is not None:
        ax.axhline(reference, color=MASK_COLOR, lw=0.8, ls=":", label=f"floor limit {reference:.2f}")
    ax.set_xticks(np.arange(len(kinds)), kinds, rotation=20)
    ax.set_ylabel("image AUROC (95 % CI)")
    ax.set_ylim(0.0, 1.0)
    ax.legend(fontsize=8, ncols=len(methods) + 1, loc="upper center", bbox_to_anchor=(0.5, 1.18))
    fig.tight_layout()
    return fig

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


# ----------------------------------------------------------------------------- GAN figures (StyleGAN2-ADA chapter)


def to_unit(images) -> np.ndarray:
    """Generator-space images (torch or numpy, [N, 1, H, W] or [N, H, W], values in [-1, 1]) -> [N, H, W] in [0, 1]."""
    arr = images.detach().float().cpu().numpy() if hasattr(images, "detach") else np.asarray(images, dtype=np.float32)
    if arr.ndim == 4:
        assert arr.shape[1] == 1, f"expected one channel, got {arr.shape}"
        arr = arr[:, 0]
    return np.clip((arr + 1.0) / 2.0, 0.0, 1.0)


def image_grid_tensor(images, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """Tile [N, 1, H, W] generator-space images (in [-1, 1]) into one [H', W'] array in [0, 1] (pad pixels white)."""
    imgs = to_unit(images)
    n, h, w = imgs.shape
    ncol = int(np.ceil(n / nrow))
    grid = np.ones((ncol * (h + pad) - pad, nrow * (w + pad) - pad), np.float32)
    for i, im in enumerate(imgs):
        r, c = divmod(i, nrow)
        grid[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = im
    return grid


def grids_side_by_side(grids: dict, cell: float = 4.2, suptitle: str | None = None):
    """Several image grids ({title: [H, W] in [0, 1]}) next to each other, same scale."""
    fig, axes = plt.subplots(1, len(grids), figsize=(cell * len(grids), cell + 0.4), squeeze=False)
    for ax, (title, grid) in zip(axes[0], grids.items()):
        ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def image_table(rows, row_labels=None, col_labels=None, cell: float = 1.1, title: str | None = None):
    """A table of grayscale images: rows is a list of lists of [H, W] arrays in [0, 1] (None = blank cell)."""
    nrows, ncols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols + (0.6 if row_labels else 0), cell * nrows + 0.3),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j in range(ncols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(row) and row[j] is not None:
                ax.imshow(row[j], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if i == 0 and col_labels is not None and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=8, rotation=0, ha="right", va="center")
    top = 1.0
    if title:
        fig.suptitle(title, fontsize=10)
        top = 1.0 - 0.3 / fig.get_figheight()  # keep the title clear of the column labels
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, top))
    return fig


def style_mixing_grid(coarse_sources, fine_sources, mixed, cell: float = 1.1, title: str | None = None):
    """Style mixing: row i takes its coarse styles from coarse_sources[i] (left column), column j its fine
    styles from fine_sources[j] (top row); mixed[i][j] is the result. Images in generator space ([-1, 1])."""
    top = [None] + list(to_unit(fine_sources))
    rows = [top] + [[left] + list(to_unit(row)) for left, row in zip(to_unit(coarse_sources), mixed)]
    fig = image_table(rows, cell=cell, title=title)
    ax = fig.axes[0]
    ax.text(0.5, 0.5, "coarse ↓\nfine →", ha="center", va="center", fontsize=8, transform=ax.transAxes)
    return fig


def training_curves(log_lines: list[dict], title: str | None = None):
    """StyleGAN2-ADA log (log.jsonl lines): losses, D logits, ADA p and r_t, SWD over kimg."""
    def series(key):
        pts = [(ln["kimg"], ln[key]) for ln in log_lines if ln.get(key) is not None]
        return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) if pts else (np.array([]), np.array([]))

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    ax = axes[0]
    for key, label in (("loss_G", "G: softplus(-D(G(z)))"), ("loss_D", "D: softplus(D(fake)) + softplus(-D(real))")):
        ax.plot(*series(key), label=label, lw=1)
    ax.set_title("losses", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[1]
    for key, label in (("D_real", "D(real), mean logit"), ("D_fake", "D(fake), mean logit")):
        ax.plot(*series(key), label=label, lw=1)
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set_title("discriminator outputs", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[2]
    ax.plot(*series("r_t"), label="r_t = E[sign D(real)]", lw=1, color="C2")
    ax.plot(*series("p"), label="augmentation p", lw=1.5, color="C3")
    ax.axhline(0.6, color="C2", lw=0.8, ls=":", label="target 0.6")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("ADA", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[3]
    x, y = series("swd")
    ax.plot(x, y, "o-", ms=3, lw=1, color="C4")
    ax.set_title("SWD x1e3, G_ema vs reals (lower = closer)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("kimg (thousands of real images shown to D)")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def demodulation_plot(scales, std_modulated, std_demodulated):
    """Output std of a modulated conv against the style scale, with and without demodulation (log-log)."""
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    ax.loglog(scales, std_modulated, "o-", label="modulation only")
    ax.loglog(scales, std_demodulated, "s-", label="modulation + demodulation")
    ax.set_xlabel("style scale s (all styles multiplied by s)")
    ax.set_ylabel("std of the conv output")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- encoder and score figures


def encoder_curves(log_lines: list[dict], terms=("l2", "perceptual", "feat", "latent", "w_norm"), title=None):
    """Encoder training log: one panel per loss term (unweighted), x = step."""
    ticks = [ln for ln in log_lines if "step" in ln]
    terms = [t for t in terms if any(t in ln for ln in ticks)]
    fig, axes = plt.subplots(1, len(terms), figsize=(2.6 * len(terms), 2.6), squeeze=False)
    for ax, term in zip(axes[0], terms):
        pts = [(ln["step"], ln[term]) for ln in ticks if ln.get(term) is not None]
        ax.plot(*zip(*pts), lw=1)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        if term != "w_norm":
            ax.set_yscale("log")
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def restoration_grid(images, restored, residuals, masks=None, titles=None, vmax: float | None = None,
                     cell: float = 1.5):
    """Three rows: input, restored normal G(E(x)), |residual| (hot colour map, shared scale); red contours
    mark ground-truth masks on the input and residual rows. images/restored [N, H, W] in [0, 1]."""
    images, restored, residuals = (np.asarray(a) for a in (images, restored, residuals))
    n = len(images)
    vmax = float(np.percentile(residuals, 99.5)) if vmax is None else vmax
    fig, axes = plt.subplots(3, n, figsize=(cell * n + 0.8, cell * 3 + 0.3), squeeze=False)
    for j in range(n):
        for i, (img, cmap, hi) in enumerate(((images[j], "gray", 1), (restored[j], "gray", 1),
                                             (residuals[j], "inferno", vmax))):
            ax = axes[i, j]
            ax.imshow(img, cmap=cmap, vmin=0, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if masks is not None and masks[j] is not None and np.any(masks[j]) and i != 1:
                ax.contour(masks[j].astype(float), levels=[0.5], colors=MASK_COLOR if i == 0 else "#38bdf8",
                           linewidths=0.8)
        if titles is not None:
            axes[0, j].set_title(titles[j], fontsize=8)
    for i, label in enumerate(("input", "restored", "|residual|")):
        axes[i, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout(pad=0.3)
    return fig


def metric_bars(values: dict, metric_names, errors: dict | None = None, title=None, log_scale=(), cell=2.6):
    """One panel per metric, one bar per entry. values: {entry: {metric: value}}; errors likewise (± bars)."""
    names = list(values)
    metric_names = list(metric_names)
    fig, axes = plt.subplots(1, len(metric_names), figsize=(cell * len(metric_names), 2.2 + 0.12 * len(names)),
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], metric_names):
        v = [values[n][metric] for n in names]
        err = [errors[n][metric] for n in names] if errors is not None else None
        ax.barh(np.arange(len(names)), v, xerr=err, color=[colors[i % len(colors)] for i in range(len(names))],
                capsize=2)
        ax.set_yticks(np.arange(len(names)), names if ax is axes[0, 0] else [""] * len(names), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(metric, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        if metric in log_scale:
            ax.set_xscale("log")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def score_distributions(scores: dict, types, terms, ncols: int = 3, cell: float = 3.0):
    """Per score term: normal vs each anomaly type as box plots (one panel per term). scores: {term: [N]}."""
    types = np.asarray(types)
    kinds = ["good"] + sorted(set(types) - {"good"})
    terms = list(terms)
    nrows = int(np.ceil(len(terms) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows * 0.85), squeeze=False)
    for ax in axes.ravel()[len(terms):]:
        ax.axis("off")
    for ax, term in zip(axes.ravel(), terms):
        v = np.asarray(scores[term], dtype=float)
        data = [v[types == k] for k in kinds]
        ax.boxplot(data, vert=False, showfliers=False, widths=0.6)
        ax.set_yticks(np.arange(1, len(kinds) + 1), ["normal" if k == "good" else k for k in kinds], fontsize=7)
        ax.axvline(np.median(data[0]), color="0.6", lw=0.8, ls="--")
        ax.invert_yaxis()
        ax.set_title(term, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return fig


def heatmap(matrix, row_labels, col_labels, title=None, vmin=0.3, vmax=1.0, fmt="{:.2f}", cmap="RdBu_r",
            center: float | None = 0.5):
    """Annotated heat map (e.g. AUROC per W+ slot and anomaly type)."""
    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(0.55 * len(col_labels) + 2.2, 0.38 * len(row_labels) + 1.2))
    from matplotlib.colors import TwoSlopeNorm

    norm = TwoSlopeNorm(center, vmin, vmax) if center is not None else None
    im = ax.imshow(m, cmap=cmap, norm=norm, vmin=None if norm else vmin, vmax=None if norm else vmax, aspect="auto")
    ax.set_xticks(np.arange(len(col_labels)), col_labels, fontsize=8, rotation=25, ha="right")
    ax.set_yticks(np.arange(len(row_labels)), row_labels, fontsize=8)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.04)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def method_gallery(images, rows: dict, masks=None, titles=None, cell: float = 1.25):
    """Input row, then per method a restoration row and a map row. images [N, H, W] in [0, 1];
    rows: {method: (restored [N, H, W] in [0, 1] or None, map [N, H, W] or None)}; each map row is scaled
    from its own 0.5th to its 99.5th percentile (methods' maps have different units and offsets: a
    Mahalanobis map is never near 0). Red contours: ground truth."""
    images = np.asarray(images)
    n = len(images)
    panels = [("input", images, "gray", 0.0, 1.0)]
    for name, (restored, maps) in rows.items():
        if restored is not None:
            panels.append((f"{name}\nrestored", np.asarray(restored), "gray", 0.0, 1.0))
        if maps is not None:
            maps = np.asarray(maps)
            lo, hi = (float(v) for v in np.percentile(maps, [0.5, 99.5]))
            panels.append((f"{name}\nmap", maps, "inferno", lo, hi if hi > lo else lo + 1.0))
    fig, axes = plt.subplots(len(panels), n, figsize=(cell * n + 1.0, cell * len(panels)), squeeze=False)
    for i, (label, arr, cmap, lo, hi) in enumerate(panels):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(arr[j], cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if masks is not None and np.any(masks[j]) and (i == 0 or cmap != "gray"):     # input and map rows
                ax.contour(masks[j].astype(float), levels=[0.5], colors=MASK_COLOR, linewidths=0.6)
        axes[i, 0].set_ylabel(label, fontsize=7)
    if titles is not None:
        for j, t in enumerate(titles):
            axes[0, j].set_title(t, fontsize=8)
    fig.tight_layout(pad=0.2)
    return fig


def roc_by_family(scores_by_method: dict, labels, families: dict, reference: str = "hqanogan", cell: float = 3.3):
    """One ROC panel per family of methods ({family: [method, ...]}), each with `reference` dashed in black
    for comparison. scores_by_method: {name: [N]} on the same images."""
    n = len(families)
    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows), squeeze=False)
    for ax, (family, names) in zip(axes.flat, families.items()):
        for name in names:
            if name == reference or name not in scores_by_method:
                continue
            fpr, tpr, _ = metrics.roc_curve(scores_by_method[name], labels)
            ax.plot(fpr, tpr, lw=1.2, label=f"{name} {metrics.auroc(scores_by_method[name], labels):.2f}")
        if reference in scores_by_method:
            fpr, tpr, _ = metrics.roc_curve(scores_by_method[reference], labels)
            ax.plot(fpr, tpr, color="k", lw=1.2, ls="--",
                    label=f"{reference} {metrics.auroc(scores_by_method[reference], labels):.2f}")
        ax.plot([0, 1], [0, 1], color="0.75", lw=0.6, ls=":")
        ax.set_title(family, fontsize=9)
        ax.set_aspect("equal")
        ax.legend(fontsize=7, loc="lower right", title="AUROC", title_fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.supxlabel("false positive rate", fontsize=8)
    fig.supylabel("true positive rate", fontsize=8)
    fig.tight_layout()
    return fig


def forest_by_type(report: dict, methods=None, highlight: str = "hqanogan", cell: float = 2.3):
    """AUROC with 95 % CI of every method (rows), one panel per anomaly type and one overall: a forest
    plot, methods sorted by overall AUROC, `highlight` in black."""
    methods = list(methods or report["methods"])
    methods.sort(key=lambda m: report["methods"][m]["image"]["auroc"]["value"])
    kinds = sorted({k for m in methods for k in report["methods"][m]["per_type"]}) + ["overall"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(cell * len(kinds), 0.22 * len(methods) + 1.0), sharey=True)
    y = np.arange(len(methods))
    lowest = min(min(e["ci95"][0] for e in [report["methods"][m]["image"]["auroc"]]
                     + [v["auroc"] for v in report["methods"][m]["per_type"].values()]) for m in methods)
    for ax, kind in zip(axes, kinds):
        for i, m in enumerate(methods):
            r = report["methods"][m]
            e = r["image"]["auroc"] if kind == "overall" else r["per_type"][kind]["auroc"]
            color = "k" if m == highlight else "tab:blue"
            ax.errorbar(e["value"], i, xerr=[[e["value"] - e["ci95"][0]], [e["ci95"][1] - e["value"]]], fmt="o",
                        ms=3, color=color, capsize=2, lw=1)
        ax.axvline(0.5, color="0.7", lw=0.7, ls="--")
        ax.set_title(kind, fontsize=9)
        ax.set_xlim(min(0.3, lowest - 0.02), 1.0)
        ax.tick_params(labelsize=7)
    axes[0].set_yticks(y, methods, fontsize=7)
    fig.supxlabel("image AUROC (95 % CI)", fontsize=8)
    fig.tight_layout()
    return fig


def label_curve(points: list[dict], reference: dict | None = None, title: str | None = None):
    """Test AUROC (95 % CI) against the number of labelled anomalies k. points: [{"k", "value", "ci95"}];
    reference: {"name", "value", "ci95"} drawn as a band (e.g. the unsupervised method the book is about)."""
    fig, ax = plt.subplots(figsize=(4.4, 3.0))
    k = np.array([p["k"] for p in points])
    v = np.array([p["value"] for p in points])
    lo = v - np.array([p["ci95"][0] for p in points])
    hi = np.array([p["ci95"][1] for p in points]) - v
    ax.errorbar(k, v, yerr=[lo, hi], fmt="o-", capsize=3, label="Deep SAD (k = 0: Deep SVDD)")
    if reference is not None:
        ax.axhspan(*reference["ci95"], color="0.85", zorder=0)
        ax.axhline(reference["value"], color="k", lw=1, ls="--", label=f"{reference['name']} (k = 0)")
    ax.set_xlabel("labelled anomalies from the validation split, k")
    ax.set_ylabel("test AUROC (95 % CI)")
    ax.set_xticks(k)
    ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def slot_bars(ax, d2, band, flagged=None, repaired=None):
    """Per-slot squared Mahalanobis distance of one code (bars, log scale) against the held-out normals'
    5-95 % band (grey); repaired slots red, with the distance after repair as a tick."""
    d2, band = np.asarray(d2), np.asarray(band)
    slots = np.arange(len(d2))
    flagged = np.zeros(len(d2), bool) if flagged is None else np.asarray(flagged, bool)
    ax.fill_between(np.r_[slots - 0.5, slots[-1] + 0.5], np.r_[band[0], band[0][-1]], np.r_[band[1], band[1][-1]],
                    step="post", color="0.85", label="normals 5-95 %")
    ax.bar(slots, d2, color=np.where(flagged, MASK_COLOR, "#2563eb"), width=0.7)
    if repaired is not None and flagged.any():
        ax.scatter(slots[flagged], np.asarray(repaired)[flagged], marker="_", s=160, color="k", label="after repair")
    ax.set_yscale("log")
    ax.set_xticks(slots)
    ax.set_xlabel("W+ slot (coarse -> fine)", fontsize=8)
    ax.set_ylabel("Mahalanobis d^2", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="upper right", frameon=False)


def latent_panel(view: dict, i: int, repaired: bool, mask=None, title: str | None = None, vmax: float = 0.5):
    """One image of an `explore.latent_view`: input (finding outlined), restoration (plain or repaired),
    map (same scale for every image: 0..vmax), per-slot bars."""
    restored = view["repaired" if repaired else "restored"][i]
    amap = view["map_repaired" if repaired else "map"][i]
    fig, axes = plt.subplots(1, 4, figsize=(9.6, 2.5), gridspec_kw={"width_ratios": [1, 1, 1, 1.7]})
    for ax, img, cmap, hi, label in ((axes[0], view["input"][i], "gray", 1, "input"),
                                     (axes[1], restored, "gray", 1, "repaired" if repaired else "restored"),
                                     (axes[2], amap, "inferno", vmax, "|x - restoration|")):
        ax.imshow(img, cmap=cmap, vmin=0, vmax=hi, interpolation="nearest")
        if mask is not None and np.any(mask) and ax is not axes[1]:
            ax.contour(np.asarray(mask, float), levels=[0.5], colors=MASK_COLOR if ax is axes[0] else "#38bdf8",
                       linewidths=0.8)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    slot_bars(axes[3], view["d2"][i], view["band"], view["flagged"][i] if repaired else None,
              view["d2_repaired"][i] if repaired else None)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.3)
    return fig


def binary_panel(amap, mask, threshold: float, dice: float | None = None):
    """A map thresholded at `threshold` (white = called abnormal) with the finding outlined, Dice in the title."""
    fig, ax = plt.subplots(figsize=(1.9, 2.1))
    ax.imshow(np.asarray(amap) >= threshold, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if mask is not None and np.any(mask):
        ax.contour(np.asarray(mask, float), levels=[0.5], colors=MASK_COLOR, linewidths=0.8)
    ax.set_title(f"map >= {threshold:.3f}" + ("" if dice is None else f"\nDice {dice:.2f}"), fontsize=8)
    ax.axis("off")
    fig.tight_layout(pad=0.2)
    return fig


def interval_dots(rows: dict, metrics_: list[str], highlight: str | None = None, cell: float = 2.8):
    """One panel per metric: a dot and its 95 % interval per entry. rows: {entry: {metric: (value, lo, hi)}}
    (entries missing a metric are left blank)."""
    names = list(rows)
    fig, axes = plt.subplots(1, len(metrics_), figsize=(cell * len(metrics_) + 1.2, 0.8 + 0.28 * len(names)),
                             squeeze=False, sharey=True)
    for ax, metric in zip(axes[0], metrics_):
        for y, name in enumerate(names):
            if metric not in rows[name]:
                continue
            v, lo, hi = rows[name][metric]
            color = MASK_COLOR if name == highlight else "#2563eb"
            ax.plot([lo, hi], [y, y], color=color, lw=1.5)
            ax.plot(v, y, "o", color=color, ms=4)
        ax.set_yticks(np.arange(len(names)), names, fontsize=8)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_title(metric, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the score study (chapter 4)


def semi_supervised_curve(curve: dict, reference: dict | None = None, title: str | None = None):
    """Test AUROC against k labelled abnormal images (`score_study.semi_supervised_curve`): the mean over
    draws with the 2.5-97.5 % range over draws, and the bootstrap CI of the median draw as error bars.
    reference: {label: AUROC} drawn as horizontal lines (e.g. the supervised ceiling)."""
    points = sorted(curve.values(), key=lambda p: p["k"])
    ks = np.array([p["k"] for p in points])
    x = np.arange(len(ks))
    mean = np.array([p["auroc_mean"] for p in points])
    lo = np.array([p["draw_range"][0] for p in points])
    hi = np.array([p["draw_range"][1] for p in points])
    med = np.array([p["median_draw"]["auroc"] for p in points])
    ci = np.array([p["median_draw"]["ci95"] for p in points])
    fig, ax = plt.subplots(figsize=(5.2, 3.3))
    ax.fill_between(x, lo, hi, color="C0", alpha=0.2, label="range over draws of the k images")
    ax.plot(x, mean, "o-", color="C0", label="mean over draws")
    ax.errorbar(x + 0.06, med, yerr=[med - ci[:, 0], ci[:, 1] - med], fmt="s", ms=3, color="C1", capsize=3,
                label="median draw, 95 % bootstrap CI")
    for i, (label, value) in enumerate((reference or {}).items()):
        ax.axhline(value, color=f"C{i + 2}", ls="--", lw=1, label=label)
    ax.set_xticks(x, [str(k) for k in ks])
    ax.set_xlabel("labelled abnormal validation images k")
    ax.set_ylabel("test image AUROC")
    ax.set_title(title or "HQ-AnoGAN with k labels", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def refinement_curve(report: dict):
    """What refinement does, step by step, from a score study's report (`score_study.study_report`): PSNR of
    the restored validation normals, the findings' inside/outside residual contrast (the dashed line is
    G(E(x))'s: the eligibility bar) and the best validation AUROC of any option on that restoration, one line
    per pixel loss of the refinement (MSE, L1), both starting at G(E(x)); the chosen restoration is marked.
    Hollow markers: not eligible."""
    from .score_study import best_valid_auroc
    from .terms import restoration_settings

    restorations = report["restorations"]
    settings = {r: restoration_settings(r) for r in restorations}
    best_valid = best_valid_auroc(report)
    losses = sorted({s["refine_loss"] for s in settings.values()}, key=lambda k: k != "mse")
    panels = (("psnr_normals", "PSNR on normals (dB)"), ("contrast", "residual inside / outside the finding"),
              (None, "best validation AUROC"))
    chosen = report["chosen"]["restoration"]
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 2.9))
    for ax, (field, label) in zip(axes, panels):
        def value(r):
            return best_valid[r] if field is None else restorations[r].get(field, np.nan)
        for i, loss in enumerate(losses):
            line = sorted((r for r in restorations if r == "0" or settings[r]["refine_loss"] == loss),
                          key=lambda r: settings[r]["refine_steps"])
            x = np.array([settings[r]["refine_steps"] for r in line])
            y = np.array([value(r) for r in line])
            ok = np.array([restorations[r].get("keeps_findings", True) for r in line])
            color = f"C{2 * i}"
            ax.plot(x, y, "-", color=color, lw=1)
            ax.plot(x[ok], y[ok], "o", color=color, label=f"{loss.upper()} refinement")
            ax.plot(x[~ok], y[~ok], "o", mfc="white", color=color)
        if field == "contrast":
            ax.axhline(restorations["0"].get("contrast", np.nan), color="k", ls="--", lw=1, label="G(E(x))")
        ax.plot([settings[chosen]["refine_steps"]], [value(chosen)], "*", ms=12, color="C1", label="chosen")
        ax.set_xticks(sorted({s["refine_steps"] for s in settings.values()}))
        ax.set_xlabel("refinement steps (0: G(E(x)))")
        ax.set_title(label, fontsize=9)
    axes[1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig

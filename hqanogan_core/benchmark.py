"""One harness for every method: same split, same metrics, same bootstrap.

`run_benchmark(data, methods)` fits each method on `train/good`, scores `test/`, and
returns one JSON-able dict: per method, image AUROC / AP / sensitivity at 95 %
specificity with stratified-bootstrap 95 % CIs, AUROC per anomaly type (that type
vs all normals), pixel AUROC where the method gives maps and masks exist, wall
times for fitting and scoring, peak traced memory, and the device.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hqanogan_core import floors, metrics
from hqanogan_core.data.folder import read_grayscale, read_mask, scan_split
from hqanogan_core.data.preprocess import resize, resize_nearest

def _hqanogan(**kwargs):
    from hqanogan_core.pipeline import HQAnoGANMethod  # torch and the networks load only when asked for

    return HQAnoGANMethod(**kwargs)


# The methods the harness knows, by the name used on the command line. Each takes `seed`.
METHODS = {
    "mean": floors.MeanIntensity,
    "iforest": floors.PixelIsolationForest,
    "pca": floors.PCAReconstruction,
    "hqanogan": _hqanogan,
}


@dataclass
class SplitArrays:
    images: np.ndarray  # [N, H, W] float32 in [0, 1]
    labels: np.ndarray  # [N] int, 1 = abnormal
    types: np.ndarray  # [N] str, "good" for normals
    masks: np.ndarray | None  # [N, H, W] bool, None when no masks exist
    paths: list[str]


def load_split(root: str | Path, split: str, size: int | None = None) -> SplitArrays:
    """All images of one split as arrays (resized to `size` if given)."""
    samples = scan_split(root, split)
    images, masks = [], []
    for s in samples:
        img = read_grayscale(s.path)  # [H, W]
        mask = read_mask(s.mask_path, img.shape) if s.mask_path is not None else np.zeros(img.shape, bool)
        if size is not None and img.shape != (size, size):
            img = resize(img, size)
            mask = resize_nearest(mask.astype(np.float32), size) > 0.5
        images.append(img)
        masks.append(mask)
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(
            f"images under {Path(root) / split} have different sizes {sorted(shapes)}; pass size=..."
        )
    has_masks = any(s.mask_path is not None for s in samples)
    return SplitArrays(
        images=np.stack(images).astype(np.float32),
        labels=np.array([s.gt_label for s in samples], dtype=np.int64),
        types=np.array([s.anomaly_type for s in samples]),
        masks=np.stack(masks) if has_masks else None,
        paths=[str(s.path) for s in samples],
    )


def device_description() -> str:
    """What the numbers were measured on (CPU model / GPU name)."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
    except ImportError:  # pragma: no cover - torch is a requirement
        pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu} ({os.cpu_count()} cores)"


def evaluate(scores: np.ndarray, test: SplitArrays, maps: np.ndarray | None, n_boot: int, seed: int) -> dict:
    """Metrics for one method's test scores (and maps)."""
    result = {"image": metrics.image_metrics(scores, test.labels, n_boot=n_boot, seed=seed), "per_type": {}}
    normal = test.labels == 0
    for kind in sorted(set(test.types[test.labels == 1])):
        pick = normal | (test.types == kind)
        value, lo, hi = metrics.bootstrap_ci(
            metrics.auroc, scores[pick], test.labels[pick], n_boot=n_boot, seed=seed
        )
        result["per_type"][str(kind)] = {
            "auroc": {"value": value, "ci95": [lo, hi]},
            "n": int((test.types == kind).sum()),
        }
    result["pixel_auroc"] = None
    if maps is not None and test.masks is not None:
        abnormal_with_mask = test.masks.reshape(len(test.masks), -1).any(axis=1)
        pick = normal | abnormal_with_mask
        result["pixel_auroc"] = metrics.pixel_auroc(maps[pick], test.masks[pick], seed=seed)
    return result


@dataclass
class MethodRun:
    scores: np.ndarray          # [N] test scores
    maps: np.ndarray | None     # [N, H, W] anomaly maps, or None
    timing: dict                # fit / score seconds, peak memory (and `info` for learned methods)
    terms: dict                 # {term: [N]} extra per-image score terms (may be empty)
    method: object              # the fitted method


def run_method(name: str, train: SplitArrays, test: SplitArrays, seed: int = 0,
               options: dict | None = None) -> MethodRun:
    """Fit `name` on the training normals and score the test split.

    options: extra constructor arguments (e.g. {"run": ...} for hqanogan)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    kwargs = {"seed": seed} if name in ("iforest", "pca", "hqanogan") else {}
    method = METHODS[name](**kwargs, **(options or {}))
    tracemalloc.start()
    t0 = time.perf_counter()
    method.fit(train.images)
    t1 = time.perf_counter()
    scores = np.asarray(method.score(test.images), dtype=np.float64)
    maps = method.anomaly_map(test.images)
    t2 = time.perf_counter()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert scores.shape == (len(test.images),), f"{name} returned scores of shape {scores.shape}"
    timing = {"train_seconds": t1 - t0, "score_seconds": t2 - t1, "peak_traced_mb": peak / 2**20,
              "peak_rss_mb": _peak_rss_mb()}
    if getattr(method, "info", None):  # where a learned method's networks came from
        timing["info"] = method.info
    # methods with several score terms expose them as `last` ({term: [N]}); they go into the CSV too
    terms = {k: np.asarray(v) for k, v in (getattr(method, "last", None) or {}).items()
             if np.ndim(v) == 1 and len(v) == len(scores)}
    return MethodRun(scores, maps, timing, terms, method)


def _peak_rss_mb() -> float | None:
    """The process's peak resident memory so far (includes torch's allocations, which tracemalloc misses)."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    except (ImportError, OSError):  # pragma: no cover - not Linux
        return None


def write_scores_csv(path: Path, test: SplitArrays, scores: np.ndarray, terms: dict | None = None) -> None:
    """One row per image: path, type, label, pred_score, then any extra per-image score terms."""
    terms = {k: v for k, v in (terms or {}).items() if k != "pred_score"}
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "anomaly_type", "gt_label", "pred_score", *terms])
        for i, (p, t, y, s) in enumerate(zip(test.paths, test.types, test.labels, scores)):
            writer.writerow([p, t, int(y), f"{s:.8g}", *(f"{v[i]:.8g}" for v in terms.values())])


def load_score_terms(out_dir: str | Path, method: str) -> dict[str, np.ndarray]:
    """Every numeric column of scores_<method>.csv (pred_score, and per-term columns when present)."""
    with open(Path(out_dir) / f"scores_{method}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    skip = {"image", "anomaly_type", "gt_label"}
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k not in skip}


def headline_numbers(report: dict) -> dict:
    """Flat {name: value} of a report's key numbers, for `myst_nb.glue` in the book.

    Per method: <m>_auroc, <m>_lo, <m>_hi, <m>_pixel_auroc (when present), <m>_<type>_auroc;
    plus floor_max_type_auroc / floor_max_type_name: the best single (method, type) AUROC.
    """
    out = {}
    best = (-1.0, "")
    for name, r in report["methods"].items():
        auroc = r["image"]["auroc"]
        out[f"{name}_auroc"], (out[f"{name}_lo"], out[f"{name}_hi"]) = auroc["value"], auroc["ci95"]
        if r.get("pixel_auroc") is not None:
            out[f"{name}_pixel_auroc"] = r["pixel_auroc"]
        for kind, t in r["per_type"].items():
            out[f"{name}_{kind}_auroc"] = t["auroc"]["value"]
            best = max(best, (t["auroc"]["value"], f"{name} on {kind}"))
    out["max_type_auroc"], out["max_type_name"] = best
    return out


def load_scores(out_dir: str | Path, methods: list[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read back the per-image scores CSVs: (labels [N], anomaly types [N], {method: scores [N]})."""
    scores, labels, types = {}, None, None
    for name in methods:
        with open(Path(out_dir) / f"scores_{name}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        scores[name] = np.array([float(r["pred_score"]) for r in rows])
        labels = np.array([int(r["gt_label"]) for r in rows])
        types = np.array([r["anomaly_type"] for r in rows])
    return labels, types, scores


def run_benchmark(
    data: str | Path,
    methods: list[str],
    out: str | Path | None = None,
    size: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    log=sys.stderr,
    method_options: dict | None = None,
    fitted: dict | None = None,
) -> dict:
    """Fit and score every method on `data` (MVTec layout); write scores CSVs and JSON to `out`.

    method_options: {method: constructor kwargs}; fitted: a dict that receives {method: fitted object}.
    """
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    train = load_split(data, "train", size)
    test = load_split(data, "test", size)
    report = {
        "data": str(data),
        "device": device_description(),
        "n_train": int(len(train.labels)),
        "n_test": int(len(test.labels)),
        "n_test_abnormal": int(test.labels.sum()),
        "image_size": list(test.images.shape[1:]),
        "bootstrap": {"n_boot": n_boot, "seed": seed, "kind": "stratified percentile, 95 %"},
        "methods": {},
    }
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for name in methods:
        print(f"[benchmark] {name}: fitting on {len(train.labels)} normals ...", file=log, flush=True)
        run = run_method(name, train, test, seed=seed, options=(method_options or {}).get(name))
        scores, maps, timing, terms = run.scores, run.maps, run.timing, run.terms
        if fitted is not None:  # the caller wants the fitted objects (e.g. to draw maps in the book)
            fitted[name] = run.method
        result = evaluate(scores, test, maps, n_boot=n_boot, seed=seed)
        result.update(timing)
        report["methods"][name] = result
        print(
            f"[benchmark] {name}: AUROC {result['image']['auroc']['value']:.3f} "
            f"({timing['train_seconds']:.1f} s fit, {timing['score_seconds']:.1f} s score)",
            file=log,
            flush=True,
        )
        if out_dir is not None:
            write_scores_csv(out_dir / f"scores_{name}.csv", test, scores, terms)
    if out_dir is not None:
        (out_dir / "benchmark.json").write_text(json.dumps(report, indent=2))
    return report

"""One harness for every method: same split, same metrics, same bootstrap.

`run_benchmark(data, methods)` fits each registered method (`methods.METHODS`) on `train/good`, scores
`test/`, and returns one JSON-able dict: per method, image AUROC / AP / sensitivity at 95 % specificity
with stratified-bootstrap 95 % CIs, AUROC per anomaly type (that type vs all normals), pixel AUROC and
AUPRO (FPR <= 0.3) where the method gives maps and masks exist, wall times for fitting and scoring,
peak memory, the method's `info()` and the device. The harness knows nothing about any method beyond
the interface in `methods.base`.

Expensive results can be kept: with `cache=DIR` each method's result (report entry + per-image scores)
is written to DIR/<method>/ under a key (method, options, a digest of the scored images, a digest of the
weights the method loaded); `reuse=[DIR, ...]` and `cache` are searched first, and a matching entry is
loaded instead of scoring again (the report says `cached_from`; its times are those of the original run).
The book ships AnoGAN's result this way (its per-image optimisation is minutes on a CPU).

A method too slow for the whole test split (AnoGAN optimises a latent per image) declares
`test_subset = n`: it is then scored on a seeded stratified subset with n images of each type, and the
report says so (`n_test`, `test_subset`).
"""
from __future__ import annotations

import csv
import hashlib
import inspect
import json
import os
import platform
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hqanogan_core import localisation, metrics
from hqanogan_core.data.splits import SplitArrays, load_split, resize_batch, stratified_subset
from hqanogan_core.methods import METHODS
from hqanogan_core.provenance import images_signature, keys_match, portable_path

FPR_LIMIT = 0.3          # AUPRO integrates the PRO curve up to this false-positive rate (MVTec AD)
PIXEL_N_BOOT = 200       # resamples for the intervals of pixel AUROC and AUPRO (each a weighted histogram sum)
NATURAL_PER_TYPE = 40    # naturalness: restorations of this many abnormal test images of each type


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


def evaluate(scores: np.ndarray, test: SplitArrays, maps: np.ndarray | None, n_boot: int, seed: int,
             valid: SplitArrays | None = None, valid_maps: np.ndarray | None = None,
             restored: np.ndarray | None = None, normals: np.ndarray | None = None) -> dict:
    """Metrics for one method's test scores (and maps, and restorations).

    With maps: pixel AUROC and AUPRO with image-bootstrap intervals, and the best Dice per anomaly type
    (threshold chosen on `valid_maps` of the validation split, reported on test). With restorations
    [N, R, R] of the test images and real `normals`: `localisation.naturalness` on the abnormal images
    of a stratified subset (`NATURAL_PER_TYPE` per type)."""
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
    result["pixel_auroc"] = result["aupro"] = None
    if maps is not None and test.masks is not None and test.masks.any():     # image labels only: no pixel metrics
        abnormal_with_mask = test.masks.reshape(len(test.masks), -1).any(axis=1)
        pick = normal | abnormal_with_mask
        result["pixel_auroc"] = metrics.pixel_auroc(maps[pick], test.masks[pick], seed=seed)
        result["aupro"] = metrics.aupro(maps[pick], test.masks[pick], fpr_limit=FPR_LIMIT)
        boot = localisation.pixel_bootstrap(maps[pick], test.masks[pick], n_boot=PIXEL_N_BOOT, seed=seed,
                                            fpr_limit=FPR_LIMIT)
        result["pixel_auroc_ci95"], result["aupro_ci95"] = boot["pixel_auroc"], boot["aupro"]
        if valid_maps is not None:
            result["dice"] = dice_by_type(maps, test, valid_maps, valid, n_boot, seed)
    if restored is not None and normals is not None:
        pick = stratified_subset(test, NATURAL_PER_TYPE, seed=seed)
        pick = pick[test.labels[pick] == 1]
        fixed = restored[pick] if restored.shape[1:] == test.images.shape[1:] else resize_batch(
            restored[pick], test.images.shape[1])
        result["naturalness"] = localisation.naturalness(fixed, test.images[pick], test.masks[pick], normals, seed)
    return result


def dice_by_type(maps: np.ndarray, test: SplitArrays, valid_maps: np.ndarray, valid: SplitArrays, n_boot: int,
                 seed: int) -> dict:
    """Per anomaly type (and "all" types with one threshold): the threshold with the best mean Dice on the
    validation images of that type, and the mean Dice it gives on the test images of that type [95 % CI]."""
    out = {}
    rng = np.random.default_rng(seed)
    for kind in [*sorted(set(test.types[test.labels == 1])), "all"]:
        v_pick = (valid.labels == 1) if kind == "all" else (valid.types == kind)
        t_pick = (test.labels == 1) if kind == "all" else (test.types == kind)
        if not v_pick.any():
            continue
        threshold, valid_dice = localisation.dice_threshold(valid_maps[v_pick], valid.masks[v_pick])
        per_image = localisation.dice(maps[t_pick], test.masks[t_pick], threshold)
        boot = [per_image[rng.integers(0, len(per_image), len(per_image))].mean() for _ in range(n_boot)]
        out[str(kind)] = {"threshold": threshold, "valid_dice": valid_dice, "value": float(per_image.mean()),
                          "ci95": [float(x) for x in np.quantile(boot, [0.025, 0.975])], "n": int(t_pick.sum())}
    return out


@dataclass
class MethodRun:
    scores: np.ndarray          # [N] test scores (pred_score)
    maps: np.ndarray | None     # [N, H, W] anomaly maps, or None
    timing: dict                # fit / score seconds, peak memory, the method's info()
    terms: dict                 # {term: [N]} the other per-image score terms (may be empty)
    method: object              # the method (fitted unless a stored result was loaded: see ensure_fitted)
    test: SplitArrays           # what was scored (the whole test split, or the method's subset)
    fitted: bool = True
    valid: SplitArrays | None = None         # validation images mapped (for thresholds), with their maps:
    valid_maps: np.ndarray | None = None     # [V, H, W] or None
    restored: np.ndarray | None = None       # [N, R, R] restorations of `test` in [0, 1], or None


def make_method(name: str, seed: int = 0, options: dict | None = None):
    """METHODS[name](seed=seed, **options), with a clear error for an unknown name or option
    (a `seed` among the options overrides the harness's)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    cls, options = METHODS[name], dict(options or {})
    seed = options.pop("seed", seed)
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"method {name!r} has no option(s) {unknown}; it accepts: {', '.join(accepted)}")
    return cls(seed=seed, **options)


def run_method(name: str, train: SplitArrays, test: SplitArrays, seed: int = 0, options: dict | None = None,
               valid: SplitArrays | None = None, fitted: tuple | None = None) -> MethodRun:
    """Fit `name` on the training normals and score the test split (or the method's declared subset).

    fitted: (method, fit seconds) of an instance already fitted on `train` (then it is not fitted again)."""
    method = fitted[0] if fitted is not None else make_method(name, seed, options)
    subset = getattr(method, "test_subset", None)
    if subset:
        test = test.take(stratified_subset(test, int(subset), seed=seed))
    _reset_peak_rss()
    rss_before = _rss_mb()
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        if fitted is None:
            method.fit(train.images, valid=valid)
        t1 = time.perf_counter()
        out = method.score(test.images)
        maps = method.anomaly_map(test.images)
        t2 = time.perf_counter()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    fit_seconds = fitted[1] if fitted is not None else t1 - t0
    if not isinstance(out, dict) or "pred_score" not in out:
        raise TypeError(f"{name}.score() must return a dict with 'pred_score', got {type(out).__name__}")
    scores = np.asarray(out["pred_score"], dtype=np.float64)
    assert scores.shape == (len(test.images),), f"{name} returned scores of shape {scores.shape}"
    if maps is not None:
        assert maps.shape == test.images.shape, f"{name} returned maps of shape {maps.shape}"
    timing = {"train_seconds": fit_seconds, "score_seconds": t2 - t1,
              "ms_per_image": 1000 * (t2 - t1) / len(test.images), "peak_traced_mb": peak / 2**20,
              "peak_rss_mb": (peak_rss := _peak_rss_mb()), "info": method.info(),
              "peak_added_mb": None if peak_rss is None or rss_before is None else max(0.0, peak_rss - rss_before)}
    terms = {k: np.asarray(v) for k, v in out.items()
             if k != "pred_score" and np.ndim(v) == 1 and len(v) == len(scores)}
    restored = method.restoration(test.images)       # not timed: reuses what score() computed where it can
    mapped, valid_maps = None, None
    if maps is not None and valid is not None and valid.masks is not None and (valid.labels == 1).any():
        mapped = valid.take(stratified_subset(valid, int(subset), seed=seed)) if subset else valid
        valid_maps = method.anomaly_map(mapped.images)
    return MethodRun(scores, maps, timing, terms, method, test, valid=mapped, valid_maps=valid_maps,
                     restored=restored)


def _rss_mb() -> float | None:
    """Resident memory of the process now, in MB (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return None


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux: clear_refs 5), so the next reading is the
    peak while one method ran; elsewhere the reading stays the process's peak so far."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # pragma: no cover - not Linux, or not permitted
        pass


def _peak_rss_mb() -> float | None:
    """Peak resident memory of the process since the last reset, in MB (includes torch's allocations,
    which tracemalloc misses; the process's own baseline is part of it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    except (ImportError, OSError):  # pragma: no cover
        return None


def write_scores_csv(path: Path, test: SplitArrays, scores: np.ndarray, terms: dict | None = None) -> None:
    """One row per image: path (relative to the dataset root when `test.root` is known), type, label,
    pred_score, then any extra per-image score terms."""
    terms = {k: v for k, v in (terms or {}).items() if k != "pred_score"}
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "anomaly_type", "gt_label", "pred_score", *terms])
        for i, (p, t, y, s) in enumerate(zip(test.relative_paths(), test.types, test.labels, scores)):
            writer.writerow([p, t, int(y), f"{s:.8g}", *(f"{v[i]:.8g}" for v in terms.values())])


def load_score_terms(out_dir: str | Path, method: str | None) -> dict[str, np.ndarray]:
    """Every numeric column of scores_<method>.csv (or scores.csv for method None)."""
    with open(Path(out_dir) / (f"scores_{method}.csv" if method else "scores.csv"), newline="") as f:
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
    scores = {name: load_score_terms(out_dir, name)["pred_score"] for name in methods}
    with open(Path(out_dir) / f"scores_{methods[-1]}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([int(r["gt_label"]) for r in rows]), np.array([r["anomaly_type"] for r in rows]), scores

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
    cache: str | Path | None = None,
    reuse: list | None = None,
) -> dict:
    """Fit and score every method on `data` (MVTec layout); write scores CSVs and JSON to `out`.

    method_options: {method: constructor options}; fitted: a dict that receives {method: MethodRun}.
    The labelled `valid/` split, when present, is passed to `fit` (unsupervised methods ignore it).
    """
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    searched = [Path(d) for d in (reuse or [])] + ([Path(cache)] if cache is not None else [])
    unknown = sorted(set(method_options or {}) - set(methods))
    if unknown:
        raise ValueError(f"options given for {unknown}, which are not among the methods run ({', '.join(methods)})")
    train = load_split(data, "train", size)
    test = load_split(data, "test", size)
    valid = load_split(data, "valid", size) if (Path(data) / "valid").is_dir() else None
    report = {
        "data": portable_path(data),
        "device": device_description(),
        "n_train": int(len(train.labels)),
        "n_test": int(len(test.labels)),
        "n_test_abnormal": int(test.labels.sum()),
        "image_size": list(test.images.shape[1:]),
        "bootstrap": {"n_boot": n_boot, "seed": seed, "kind": "stratified percentile, 95 %"},
        "aupro_fpr_limit": FPR_LIMIT,
        "methods": {},
    }
    reference = naturalness_normals(test)
    report["naturalness_reference"] = naturalness_reference(train, test, reference, seed)
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for name in methods:
        print(f"[benchmark] {name}: fitting on {len(train.labels)} normals ...", file=log, flush=True)
        options = (method_options or {}).get(name)
        run, result, prefit = None, None, None
        if searched:
            run, result, prefit = _cached_run(name, train, test, seed, options, valid, searched, n_boot, reference)
        if run is None:
            run = run_method(name, train, test, seed=seed, options=options, valid=valid, fitted=prefit)
            result = evaluate(run.scores, run.test, run.maps, n_boot=n_boot, seed=seed, valid=run.valid,
                              valid_maps=run.valid_maps, restored=run.restored, normals=reference)
            result.update(run.timing, n_test=len(run.test), test_subset=getattr(run.method, "test_subset", None))
            if cache is not None:
                _store_result(Path(cache) / name, result_key(name, options, run, train, n_boot, seed, valid, reference),
                              result, run)
        if fitted is not None:  # the caller wants the fitted objects (e.g. to draw maps in the book)
            fitted[name] = run
        report["methods"][name] = result
        print(
            f"[benchmark] {name}: AUROC {result['image']['auroc']['value']:.3f} "
            f"({result['train_seconds']:.1f} s fit, {result['ms_per_image']:.1f} ms / image)",
            file=log,
            flush=True,
        )
        if out_dir is not None:
            write_scores_csv(out_dir / f"scores_{name}.csv", run.test, run.scores, run.terms)
    if out_dir is not None:
        (out_dir / "benchmark.json").write_text(json.dumps(report, indent=2))
    return report


def naturalness_normals(test: SplitArrays) -> np.ndarray:
    """The real normals restorations are compared with: the first NATURAL_PER_TYPE x (number of anomaly
    types) test normals, as many as the abnormal images whose restorations are measured. [M, H, W]"""
    return test.images[test.labels == 0][:NATURAL_PER_TYPE * len(set(test.types[test.labels == 1]))]


def naturalness_reference(train: SplitArrays, test: SplitArrays, normals: np.ndarray, seed: int = 0) -> dict:
    """The two ends of the naturalness scale: SWD x1e3 to the real test `normals` of the abnormal test
    inputs themselves (no restoration) and of as many training normals (what sampling alone gives)."""
    pick = stratified_subset(test, NATURAL_PER_TYPE, seed=seed)
    abnormal = test.images[pick[test.labels[pick] == 1]]
    return {"swd_inputs": localisation.image_swd(abnormal, normals, seed),
            "swd_normals": localisation.image_swd(train.images[:len(normals)], normals, seed),
            "n": int(len(normals))}


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# what a stored result's numbers depend on besides the code the method imports (hashed into its key)
RESULT_CODE = ("benchmark.py", "metrics.py", "localisation.py", "swd.py", "data/splits.py", "data/folder.py",
               "data/preprocess.py")


def _imported_modules(name: str, seen: set) -> None:
    """Every hqanogan_core module that module `name` imports, anywhere in its source (also inside
    functions), recursively; a package's import also pulls in the package module itself."""
    import ast
    import importlib
    import importlib.util

    if name in seen or not name.startswith("hqanogan_core"):
        return
    seen.add(name)
    module = importlib.import_module(name)
    package = name if hasattr(module, "__path__") else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(Path(inspect.getsourcefile(module)).read_text())):
        targets = []
        if isinstance(node, ast.ImportFrom):
            base = (importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level
                    else node.module)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for target in targets:
            if target and target.startswith("hqanogan_core") and _is_module(target):
                _imported_modules(target, seen)


def _is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ModuleNotFoundError, ValueError):       # "from .base import Method": a name, not a module
        return False


def _code_digest(method) -> str:
    """sha256 over the source of every package module the method's classes use (their import closure:
    nets, training recipes, scoring math) and RESULT_CODE (the harness and the image loading)."""
    root = Path(__file__).parent
    seen: set = set()
    for cls in type(method).__mro__:
        _imported_modules(cls.__module__, seen)
    files = {Path(inspect.getsourcefile(sys.modules[m])) for m in seen} | {root / f for f in RESULT_CODE}
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.relative_to(root).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def result_key(name: str, options: dict | None, run: MethodRun, train: SplitArrays, n_boot: int, seed: int,
               valid: SplitArrays | None = None, reference: np.ndarray | None = None) -> dict:
    """What a stored result depends on: method, options, bootstrap, the training and scored images with
    their labels and masks, the validation split (Dice thresholds) and the real normals of the naturalness
    measure, the weights the method loaded, and the code that computed it."""
    digest = getattr(run.method, "weights_digest", lambda: None)()
    test = run.test
    labels = lambda s: None if s is None else _digest(s.labels, s.types.astype("U32"))   # noqa: E731
    return {"method": name, "options": json.loads(json.dumps(options or {}, sort_keys=True, default=str)),
            "n_boot": n_boot, "seed": seed, "weights_sha256": digest, "code_sha256": _code_digest(run.method),
            # the images by signature (robust to last-bit rendering differences between CPUs), labels exactly
            "train_signature": images_signature(train.images),
            "test_signature": images_signature(test.images, test.masks), "test_labels_sha256": labels(test),
            "valid_signature": None if valid is None else images_signature(valid.images, valid.masks),
            "valid_labels_sha256": labels(valid), "reference_signature": images_signature(reference)}


def _store_result(folder: Path, key: dict, result: dict, run: MethodRun) -> None:
    from hqanogan_core.checkpoint import atomic_write_json

    folder.mkdir(parents=True, exist_ok=True)
    write_scores_csv(folder / "scores.csv", run.test, run.scores, run.terms)
    argv = sys.argv[1:] if sys.argv and sys.argv[0].endswith("__main__.py") else [Path(sys.argv[0]).name, *sys.argv[1:]]
    command = ("python -m hqanogan_core " if sys.argv[0].endswith("__main__.py") else "") + " ".join(argv)
    atomic_write_json(folder / "result.json", {"key": key, "result": result, "command": command})
    (folder / "result.json").chmod(0o644)


def _cached_run(name, train, test, seed, options, valid, folders, n_boot, reference):
    """(MethodRun, result, None) from the first folder holding a result with this key, else
    (None, None, (fitted method, fit seconds)) so the caller does not fit it again.

    A method whose weights are known before fitting (`weights_known_before_fit`: its fit is a function
    of the training images and options, which the key holds) is looked up unfitted, so a hit costs
    nothing; `ensure_fitted` fits it later if a figure needs it. Other methods are fitted first (cheap
    for the methods worth caching) to learn which weights they loaded."""
    method = make_method(name, seed, options)
    subset = getattr(method, "test_subset", None)
    scored = test.take(stratified_subset(test, int(subset), seed=seed)) if subset else test
    fit_seconds = None
    if not getattr(method, "weights_known_before_fit", False):
        t0 = time.perf_counter()
        method.fit(train.images, valid=valid)
        fit_seconds = time.perf_counter() - t0
    probe = MethodRun(np.zeros(len(scored)), None, {}, {}, method, scored, fitted=fit_seconds is not None)
    key = result_key(name, options, probe, train, n_boot, seed, valid, reference)
    for folder in folders:
        file = Path(folder) / name / "result.json"
        if file.is_file() and keys_match(json.loads(file.read_text())["key"], json.loads(json.dumps(key))):
            doc = json.loads(file.read_text())
            terms = load_score_terms(Path(folder) / name, None)
            scores = terms.pop("pred_score")
            print(f"[benchmark] {name}: loaded the stored result {file}", file=sys.stderr, flush=True)
            result = dict(doc["result"], cached_from=portable_path(file))
            return MethodRun(scores, None, {}, terms, method, scored, fitted=probe.fitted), result, None
    return None, None, ((method, fit_seconds) if fit_seconds is not None else None)


def ensure_fitted(run: MethodRun, train: SplitArrays, valid: SplitArrays | None = None):
    """The run's method, fitted on `train` if a stored result was loaded without fitting it."""
    if not run.fitted:
        run.method.fit(train.images, valid=valid)
        run.fitted = True
    return run.method


MAP_SCALE = 2.0   # maps are stored as 16-bit PNG: pixel = round(65535 * value / scale), scale in maps.json


def write_map_png(path: Path, value: np.ndarray, scale: float = MAP_SCALE) -> None:
    """One anomaly map [H, W] (values in [0, scale]) as a 16-bit grayscale PNG."""
    from PIL import Image

    assert value.ndim == 2, value.shape
    u16 = np.round(np.clip(value / scale, 0, 1) * 65535).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(u16).save(path)


def score_split(data, out_csv, method: str = "hqanogan", options: dict | None = None, maps_dir=None,
                split: str = "test", seed: int = 0) -> dict:
    """Fit `method` on DATA/train/good, score DATA/<split>, write one CSV row per image (and maps).

    CSV columns: image, anomaly_type, gt_label, pred_score, then every other term the method returns
    (for hqanogan: image_residual, perceptual, feature_residual, latent, latent_l<k>, cycle and z_<term>).
    Maps (optional): MAPS/<anomaly_type>/<image name>.png, 16-bit (scale in MAPS/maps.json)."""
    data, out_csv = Path(data), Path(out_csv)
    model = make_method(method, seed, options)
    train = load_split(data, "train")
    if (train.labels != 0).any():
        raise ValueError(f"{data / 'train'} holds abnormal images; methods fit on normals only")
    target = load_split(data, split)
    valid = load_split(data, "valid") if (data / "valid").is_dir() else None
    model.fit(train.images, valid=valid)
    seen = getattr(model, "labelled_indices", lambda v: [])(valid) if split == "valid" and valid is not None else []
    if len(seen):            # a semi-supervised method's own labelled images are not scored as if unseen
        target = target.take(np.setdiff1d(np.arange(len(target)), seen))
    out = model.score(target.images)
    scores = np.asarray(out["pred_score"], dtype=np.float64)
    terms = {k: np.asarray(v) for k, v in out.items() if k != "pred_score" and np.ndim(v) == 1}
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    write_scores_csv(out_csv, target, scores, terms)
    if maps_dir is not None:
        maps = model.anomaly_map(target.images)
        if maps is None:
            raise ValueError(f"method {method!r} gives no anomaly maps; drop --maps")
        maps_dir = Path(maps_dir)
        scale = getattr(model, "map_scale", None) or float(np.max(maps)) or 1.0      # fixed units, else the max
        for path, kind, m in zip(target.paths, target.types, maps):
            write_map_png(maps_dir / str(kind) / (Path(path).stem + ".png"), m, scale)
        (maps_dir / "maps.json").write_text(json.dumps({
            "method": method,
            "what": getattr(model, "map_description", "anomaly map per pixel, higher = more anomalous"),
            "png": "16-bit grayscale", "value": f"pixel / 65535 * {scale}",
        }, indent=2))
    labels = target.labels
    summary = {"n": len(labels), "columns": ["pred_score", *terms], "info": model.info()}
    summary["auroc"] = metrics.auroc(scores, labels) if 0 < labels.sum() < len(labels) else None
    return summary


def paired_comparisons(runs: dict, ours: str = "hqanogan", n_boot: int = 1000, seed: int = 0) -> dict:
    """`ours` against every other method on the images both scored (matched by path): DeLong's test and a
    stratified paired bootstrap of the AUROC difference (ours - other). runs: {method: MethodRun}.
    -> {other: {"n", "diff", "ci95", "p_bootstrap", "p_delong", "z"}}"""
    base = runs[ours]
    index = {p: i for i, p in enumerate(base.test.paths)}
    out = {}
    for name, run in runs.items():
        if name == ours:
            continue
        pick = [(index[p], j) for j, p in enumerate(run.test.paths) if p in index]
        mine, theirs = np.array([i for i, _ in pick]), np.array([j for _, j in pick])
        labels = base.test.labels[mine]
        delong = metrics.delong_test(base.scores[mine], run.scores[theirs], labels)
        boot = metrics.paired_bootstrap(metrics.auroc, base.scores[mine], run.scores[theirs], labels,
                                        n_boot=n_boot, seed=seed)
        out[name] = {"n": len(pick), "diff": boot["diff"], "ci95": boot["ci95"], "p_bootstrap": boot["p"],
                     "p_delong": delong["p"], "z": delong["z"]}
    return out


def label_curve(train: SplitArrays, test: SplitArrays, valid: SplitArrays, ks=(5, 20, 50), n_boot: int = 1000,
                seed: int = 0, method: str = "deepsad", zero: str = "deepsvdd", options: dict | None = None
                ) -> list[dict]:
    """Test AUROC [95 % CI] of a semi-supervised method against the number k of labelled anomalies it was
    given from the validation split (k = 0: its unsupervised counterpart `zero`). -> [{"k", "value", "ci95"}]
    options: {method name: constructor options} (e.g. a preset's training budget) for either method."""
    points, options = [], options or {}
    for k in (0, *ks):
        name = zero if k == 0 else method
        extra = {} if k == 0 else {"n_labelled": int(k)}
        opts = {**options.get(name, {}), **extra} or None
        run = run_method(name, train, test, seed=seed, options=opts, valid=valid)
        value, lo, hi = metrics.bootstrap_ci(metrics.auroc, run.scores, run.test.labels, n_boot=n_boot, seed=seed)
        points.append({"k": int(k), "method": name, "value": value, "ci95": [lo, hi],
                       "weights": run.timing["info"].get("weights")})
    return points

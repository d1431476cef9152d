"""Small-budget ablations of the encoder: what does each loss term and W+ buy?

Every variant is one `EncoderTrainConfig` override (data, below), trained with the same seed, steps and
batch on the same frozen generator, then judged by `evaluate_encoder` on the *validation* split (the test
split is kept for the final benchmark, so no choice here is tuned on it):

  reconstruction   L1 / PSNR / SSIM / perceptual on the validation normals   (how well normal comes back)
  detection        AUROC on the validation split of each score term and of the combined score, with the
                   scorer fitted on `n_fit` training normals                   (does the restoration help?)

Runs are cached in `out_root/<variant>` with the trainer's own resumable checkpoints: a finished variant
loads instantly, an interrupted one continues where it stopped.

Five trainings take 10-20 minutes on two CPU cores, too long for every book build. So the CLI runs them
once and ships the numbers (not the encoders):

    python -m hqanogan_core ablate-encoder --run data/pretrained/gan64 --data DIR --steps 400 \
        --out data/pretrained/ablation_encoder64

and `encoder_ablation(...)` loads `results.json` from there when its key (generator weights, data
fingerprint, variants, steps, batch, seed, evaluation split, perceptual backend) matches the request,
else runs `run_encoder_ablation` itself, the same function the CLI ran.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from .metrics import auroc
from .data.splits import load_split, to_model_input
from .pipeline import Pipeline, fit_scorer
from .paths import data_dir
from .provenance import images_signature, keys_match, tensor_digest
from .recon import encode_images, reconstruction_metrics, summarise
from .terms import ScoreConfig

# name -> EncoderTrainConfig overrides; the first entry is the reference
ENCODER_VARIANTS = {
    "W+ (all losses)": {},
    "W+ without perceptual": {"lambda_perceptual": 0.0},
    "W+ without D-feature": {"lambda_feat": 0.0},
    "W+ without latent loss": {"lambda_latent": 0.0, "synthetic_fraction": 0.0},
    "single w (all losses)": {"encoder": "single"},
}

SCORE_TERMS = ("image_residual", "perceptual", "feature_residual", "latent", "hqanogan")
# the score the ablation judges encoders by: the four global terms, equal weights (fixed, so that shipped
# results keep their meaning when the default score changes)
ABLATION_SCORE = ScoreConfig(terms=SCORE_TERMS[:-1])


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def evaluate_encoder(G, D, E, train_images: np.ndarray, eval_split, percep, n_fit: int = 1000,
                     seed: int = 0) -> dict:
    """Reconstruction of eval normals and per-term AUROC on the eval split (see the module docstring).

    train_images [N, H, W] in [0, 1] (normals; the first `n_fit` of a seeded permutation are used);
    eval_split: a benchmark.SplitArrays with normals and abnormals.
    """
    pipe = Pipeline(G, D, E)
    normals = to_model_input(eval_split.images[eval_split.labels == 0], G.resolution)
    _, rec = encode_images(G, E, normals)
    recon = summarise(reconstruction_metrics(normals, rec, percep))
    pick = np.random.default_rng(seed).permutation(len(train_images))[:n_fit]
    scorer = fit_scorer(pipe, to_model_input(train_images[pick], G.resolution), ABLATION_SCORE, seed=seed,
                        percep=percep)
    scores = scorer.score(to_model_input(eval_split.images, G.resolution))
    aurocs = {t: auroc(scores[t], eval_split.labels) for t in SCORE_TERMS if t in scores}
    return {"reconstruction": recon, "auroc": aurocs, "scores": scores["hqanogan"]}


def run_encoder_ablation(G, D, data, out_root, steps: int, batch: int = 8, variants: dict | None = None,
                         eval_split: str = "valid", n_fit: int = 1000, seed: int = 0, percep=None,
                         progress: bool = False, log=print) -> dict:
    """Train (or load) every variant for `steps` steps and evaluate it. Returns {name: result}, where
    result = {"reconstruction", "auroc", "scores" (combined, [N_eval]), "train_seconds", "log", "config",
    "encoder"}."""
    from .nets.perceptual import PerceptualDistance
    from .checkpoint import read_meta
    from .train.encoder import EncoderTrainConfig, train_encoder
    from .train.loop import read_log, step_seconds

    variants = variants if variants is not None else ENCODER_VARIANTS
    percep = percep or PerceptualDistance()
    train = load_split(data, "train")
    evaluation = load_split(data, eval_split)
    images = to_model_input(train.images, G.resolution)
    results = {}
    for name, overrides in variants.items():
        cfg = EncoderTrainConfig(steps=steps, batch=batch, seed=seed, snapshot_every=max(steps // 2, 1),
                                 log_every=max(steps // 50, 1), **overrides)
        out = Path(out_root) / slug(name)
        done = out / "encoder.safetensors"
        if done.exists() and read_meta(done)["step"] > steps:   # a longer cached run is not this variant
            shutil.rmtree(out)
        t0 = time.time()
        summary = train_encoder((G, D), images, out, cfg, resume=True, progress=progress, percep=percep)
        E = summary["trainer"].E.eval()
        lines = [ln for ln in read_log(out / "log.jsonl") if "step" in ln]
        train_seconds = step_seconds(lines)
        with torch.no_grad():
            result = evaluate_encoder(G, D, E, train.images, evaluation, percep, n_fit=n_fit, seed=seed)
        result.update(train_seconds=train_seconds, log=lines, config=cfg.to_dict(), encoder=E)
        results[name] = result
        log(f"[ablation] {name}: PSNR {result['reconstruction']['psnr'][0]:.2f} dB, "
            f"AUROC {result['auroc'].get('hqanogan', float('nan')):.3f} ({time.time() - t0:.0f} s)")
    return results


# ----------------------------------------------------------------------------- shipped results

ABLATION_FORMAT = "hqanogan-encoder-ablation-v1"
RESULTS_FILE = "results.json"


def default_ablation_path() -> Path:
    return data_dir() / "pretrained" / "ablation_encoder64"


def ablation_key(G, data, steps: int, batch: int, variants: dict, eval_split: str, n_fit: int, seed: int,
                 perceptual: str) -> dict:
    """Everything the ablation's numbers depend on; shipped results are used only when it matches."""
    marker = Path(data) / "fingerprint.txt"
    return {"generator_sha256": tensor_digest(G),
            "data_fingerprint": marker.read_text().strip() if marker.exists() else None,
            "variants": variants, "steps": steps, "batch": batch, "eval_split": eval_split, "n_fit": n_fit,
            "seed": seed, "perceptual": perceptual}


def results_to_json(results: dict) -> dict:
    """The ablation's results without the trained encoders, arrays as lists."""
    out = {}
    for name, r in results.items():
        out[name] = {"reconstruction": {k: list(v) for k, v in r["reconstruction"].items()},
                     "auroc": r["auroc"], "scores": np.asarray(r["scores"]).tolist(),
                     "train_seconds": r["train_seconds"], "log": r["log"], "config": r["config"]}
    return out


def save_ablation(path, results: dict, key: dict, command: str = "") -> Path:
    """Write results.json (atomically) with the key, the command and the code revision."""
    from .checkpoint import atomic_write_json
    from .provenance import code_revision

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    doc = {"format": ABLATION_FORMAT, "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": command, "code": code_revision(), "key": key, "results": results_to_json(results)}
    atomic_write_json(path / RESULTS_FILE, doc)
    return path / RESULTS_FILE


def load_ablation(path, key: dict, log=print) -> dict | None:
    """Shipped results if `path/results.json` exists and its key equals `key`, else None (and why)."""
    file = Path(path) / RESULTS_FILE
    if not file.is_file():
        return None
    doc = json.loads(file.read_text())
    if doc.get("format") != ABLATION_FORMAT:
        log(f"[ablation] {file} has format {doc.get('format')!r}, expected {ABLATION_FORMAT!r}: recomputing")
        return None
    key = json.loads(json.dumps(key))     # as stored: tuples (e.g. in variants) compare equal to JSON lists
    differ = sorted(k for k in set(key) | set(doc["key"]) if doc["key"].get(k) != key.get(k))
    if differ:
        log(f"[ablation] {file} was computed for other settings ({', '.join(differ)} differ): recomputing")
        return None
    log(f"[ablation] loaded {file} (command: {doc.get('command') or 'not recorded'})")
    return doc["results"]


def encoder_ablation(G, D, data, steps: int = 400, batch: int = 8, variants: dict | None = None,
                     eval_split: str = "valid", n_fit: int = 1000, seed: int = 0, percep=None,
                     shipped=None, out_root=None, log=print) -> dict:
    """Shipped results when they match these settings, else `run_encoder_ablation` (then cached in out_root).

    Returns {variant: {"reconstruction", "auroc", "scores", "train_seconds", "log", "config"}}."""
    from .nets.perceptual import PerceptualDistance
    from .paths import cache_dir

    variants = variants if variants is not None else ENCODER_VARIANTS
    percep = percep or PerceptualDistance()
    key = ablation_key(G, data, steps, batch, variants, eval_split, n_fit, seed, percep.backend_name)
    out_root = Path(out_root) if out_root is not None else cache_dir() / "ablation_encoder64"
    for where in (shipped if shipped is not None else default_ablation_path(), out_root):
        if (found := load_ablation(where, key, log)) is not None:
            return {name: found[name] for name in variants}          # JSON sorts keys; keep the variants' order
    results = run_encoder_ablation(G, D, data, out_root, steps=steps, batch=batch, variants=variants,
                                   eval_split=eval_split, n_fit=n_fit, seed=seed, percep=percep, log=log)
    save_ablation(out_root, results, key, command="encoder_ablation() (recomputed, not shipped)")
    return results_to_json(results)


# ----------------------------------------------------------------------------- encoder vs projector, shipped

INVERSION_FORMAT = "hqanogan-inversion-study-v1"


def default_inversion_path() -> Path:
    return data_dir() / "pretrained" / "inversion64"


def inversion_images(data, resolution: int, n_normals: int = 16) -> dict:
    """The images of chapter 3's encoder-vs-projector comparison: the first `n_normals` test normals, and
    per anomaly type the validation image with the largest finding. -> {"normals" [n, 1, R, R],
    "abnormal" [T, 1, R, R] (model input), "masks" [T, H, W], "kinds" [T], "valid_index" [T]}"""
    test, valid = load_split(data, "test"), load_split(data, "valid")
    kinds = sorted(set(valid.types[valid.labels == 1]))
    pick = []
    for kind in kinds:
        idx = np.flatnonzero(valid.types == kind)
        pick.append(int(idx[np.argmax(valid.masks[idx].reshape(len(idx), -1).sum(1))]))
    return {"normals": to_model_input(test.images[test.labels == 0][:n_normals], resolution),
            "abnormal": to_model_input(valid.images[pick], resolution), "masks": valid.masks[pick],
            "kinds": kinds, "valid_index": pick}


def inversion_study(G, E, percep, normals: torch.Tensor, abnormal: torch.Tensor, steps: int = 300, seed: int = 0,
                    shipped=None, out=None, log=print) -> dict:
    """Encoder vs the `steps`-step W+ projector on held-out normals (quality and seconds per image), and the
    projector's restorations of `abnormal` images. Loaded from `shipped` (default data/pretrained/inversion64)
    or `out` (default data/cache/inversion64) when the key (generator, encoder, images, steps, seed,
    perceptual backend) matches, else computed (minutes on a CPU) and written to `out`.

    -> {"compare": {"encoder" | "projector_w+": {"metrics": {metric: [n]}, "seconds_per_image",
        "reconstructions" [n, 1, R, R]}}, "abnormal_projection" [T, 1, R, R], "device", "loaded_from"}"""
    from safetensors.torch import load_file, save_file

    from .checkpoint import atomic_write_json
    from .paths import cache_dir
    from .project import project
    from .provenance import code_revision
    from .recon import compare_inversions

    key = {"generator_sha256": tensor_digest(G), "encoder_sha256": tensor_digest(E),
           "normals_signature": images_signature(normals), "abnormal_signature": images_signature(abnormal),
           "steps": steps, "seed": seed, "perceptual": percep.backend_name}
    out = Path(out) if out is not None else cache_dir() / "inversion64"
    for where in (Path(shipped) if shipped is not None else default_inversion_path(), out):
        file = where / RESULTS_FILE
        if file.is_file() and keys_match((doc := json.loads(file.read_text())).get("key", {}), key):
            tensors = load_file(str(where / "reconstructions.safetensors"))
            log(f"[inversion] loaded {file} (command: {doc.get('command')})")
            compare = {name: {"metrics": {k: np.array(v) for k, v in r["metrics"].items()},
                              "seconds_per_image": r["seconds_per_image"], "reconstructions": tensors[name]}
                       for name, r in doc["compare"].items()}
            return {"compare": compare, "abnormal_projection": tensors["abnormal_projection"],
                    "device": doc["device"], "loaded_from": str(file.relative_to(data_dir().parent))
                    if file.is_relative_to(data_dir().parent) else str(file)}
    from .benchmark import device_description

    compare = compare_inversions(G, E, normals, percep, projector_steps=steps, spaces=("w+",), seed=seed)
    ws, _ = project(G, abnormal, space="w+", steps=steps, percep=percep, seed=seed)
    with torch.no_grad():
        rec_ab = G.synthesis(ws, noise_mode="const").cpu()
    out.mkdir(parents=True, exist_ok=True)
    save_file({**{n: r["reconstructions"].contiguous() for n, r in compare.items()}, "abnormal_projection": rec_ab},
              str(out / "reconstructions.safetensors"))
    doc = {"format": INVERSION_FORMAT, "key": key, "device": device_description(), "code": code_revision(),
           "command": "inversion_study()" if out != default_inversion_path() else
           "python -m hqanogan_core compare-inversions --data DIR --out data/pretrained/inversion64",
           "compare": {n: {"metrics": {k: np.asarray(v).tolist() for k, v in r["metrics"].items()},
                           "seconds_per_image": r["seconds_per_image"]} for n, r in compare.items()}}
    atomic_write_json(out / RESULTS_FILE, doc)
    return {"compare": {n: {k: r[k] for k in ("metrics", "seconds_per_image", "reconstructions")}
                        for n, r in compare.items()},
            "abnormal_projection": rec_ab, "device": doc["device"], "loaded_from": None}


# ----------------------------------------------------------------------------- latent repair, on validation

REPAIR_CONFIGS = [{"mode": mode, "quantile": q, "target_quantile": t}
                  for mode, targets in (("shrink", (None, 0.5)), ("retrieve", (None,)))
                  for q in (0.5, 0.9, 0.95, 0.99) for t in targets]


def repair_sweep(method, valid, configs=None, fpr_limit: float = 0.3) -> list[dict]:
    """Every latent-repair setting judged on the validation split by the AUPRO of its map (the scorer's anomaly
    map with G(repaired) as the restoration), next to the plain map (first row, config None). method: a fitted
    HQ-AnoGAN; valid: SplitArrays with masks.
    -> [{"config", "aupro", "pixel_auroc", "flagged_normal", "flagged_abnormal", "latent_kept"}] where the
    flagged fractions are of slots, and latent_kept is the abnormal images' latent term after / before."""
    from .metrics import aupro, pixel_auroc
    from .terms import Evidence

    scorer = method.scorer
    x = to_model_input(valid.images, method.pipe.resolution)
    ev = Evidence(scorer, x)                # the score's restoration: the map every repair is compared with
    abnormal = valid.labels == 1
    plain = scorer.anomaly_maps(x, ev)
    rows = [{"config": None, "aupro": aupro(plain, valid.masks, fpr_limit),
             "pixel_auroc": pixel_auroc(plain, valid.masks),
             "flagged_normal": 0.0, "flagged_abnormal": 0.0, "latent_kept": 1.0}]
    for config in configs if configs is not None else REPAIR_CONFIGS:
        out = scorer.repair(x, ws=ev.ws, **config)
        amap = scorer.anomaly_maps(x, ev.with_restoration(torch.from_numpy(out["repaired"])))
        rows.append({"config": dict(config), "aupro": aupro(amap, valid.masks, fpr_limit),
                     "pixel_auroc": pixel_auroc(amap, valid.masks),
                     "flagged_normal": float(out["flagged"][~abnormal].mean()),
                     "flagged_abnormal": float(out["flagged"][abnormal].mean()),
                     "latent_kept": float(out["d2_repaired"][abnormal].sum() / out["d2"][abnormal].sum())})
    return rows

"""Small-budget ablations of the encoder: what does each loss term and W+ buy?

Every variant is one `EncoderTrainConfig` override (data, below), trained with the same seed, steps and
batch on the same frozen generator, then judged by `evaluate_encoder` on the *validation* split (the test
split is kept for the final benchmark, so no choice here is tuned on it):

  reconstruction   L1 / PSNR / SSIM / perceptual on the validation normals   (how well normal comes back)
  detection        AUROC on the validation split of each score term and of the combined score, with the
                   scorer fitted on `n_fit` training normals                   (does the restoration help?)

Runs are cached in `out_root/<variant>` with the trainer's own resumable checkpoints: a finished variant
loads instantly, an interrupted one continues where it stopped.
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from .benchmark import load_split
from .metrics import auroc
from .pipeline import Pipeline, fit_scorer, to_model_input
from .recon import encode_images, reconstruction_metrics, summarise

# name -> EncoderTrainConfig overrides; the first entry is the reference
ENCODER_VARIANTS = {
    "W+ (all losses)": {},
    "W+ without perceptual": {"lambda_perceptual": 0.0},
    "W+ without D-feature": {"lambda_feat": 0.0},
    "W+ without latent loss": {"lambda_latent": 0.0, "synthetic_fraction": 0.0},
    "single w (all losses)": {"encoder": "single"},
}

SCORE_TERMS = ("image_residual", "perceptual", "feature_residual", "latent", "hqanogan")


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
    scorer = fit_scorer(pipe, to_model_input(train_images[pick], G.resolution), seed=seed, percep=percep)
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
    from .train.checkpoint import read_meta
    from .train.encoder import EncoderTrainConfig, train_encoder

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
        lines = _read_log(out / "log.jsonl")
        train_seconds = sum(ln["s_per_step"] * (ln["step"] - prev) for ln, prev in
                            zip(lines, [0] + [ln["step"] for ln in lines[:-1]]))
        with torch.no_grad():
            result = evaluate_encoder(G, D, E, train.images, evaluation, percep, n_fit=n_fit, seed=seed)
        result.update(train_seconds=train_seconds, log=lines, config=cfg.to_dict(), encoder=E)
        results[name] = result
        log(f"[ablation] {name}: PSNR {result['reconstruction']['psnr'][0]:.2f} dB, "
            f"AUROC {result['auroc'].get('hqanogan', float('nan')):.3f} ({time.time() - t0:.0f} s)")
    return results


def _read_log(path: Path) -> list[dict]:
    import json

    lines = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
    return [ln for ln in lines if "step" in ln]

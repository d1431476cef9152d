"""Peer check: anomalib's GANomaly, trained on our split with our budget, vs our GANomaly; same harness.

    python benchmarks/peer_ganomaly.py [--install] [--data DIR] [--steps N] [--seed S] [--n-boot B] [--json OUT]

anomalib is NOT a requirement of the package: with --install this script installs it into the running
interpreter when it is missing (`python -m pip install anomalib==2.7.0`). On torch 2.14.1+cu130 that install
changes no installed package (torch included); it only adds (pip freeze diff, ~1 min): anomalib 2.7.0,
aiohappyeyeballs, aiohttp, aiosignal, anyio, docstring_parser, einops, FrEIA 0.2, frozenlist, h11, hf-xet,
httpcore2, httpx2, huggingface_hub, imagecodecs, ImageIO, jsonargparse, kornia 0.9.0, kornia_rs,
lazy-loader, lightning 2.6.6, lightning-utilities, multidict, omegaconf, opencv-python-headless,
pandas, propcache, pytorch-lightning 2.6.6, rich, rich-argparse, scikit-image, tifffile, timm 1.0.31,
torchmetrics 1.9.0, truststore, typeshed_client, yarl. No --no-deps fallback was needed.

anomalib side (its code, our data and budget):
  model   anomalib.models.image.ganomaly.torch_model.GanomalyModel(input_size=(64, 64),
          num_input_channels=1, n_features=<our width>, latent_vec_size=<our nz>). The torch model takes
          1 channel; only anomalib's Lightning wrapper hard-codes 3, and it is not used here.
  losses  anomalib's GeneratorLoss(w_adv, w_con, w_enc) and DiscriminatorLoss().
  step    Ganomaly.training_step of anomalib/models/image/ganomaly/lightning_model.py, line for line:
          one forward, G update (retain_graph), then D update on the same fake detached; no D re-init.
  data    our train normals, `to_model_input` ([-1, 1], what the tanh decoder outputs; anomalib's
          default ImageNet Normalize pre-processor is not used), shuffled epochs as its
          DataLoader(shuffle=True) does, last partial batch kept.
  score   the torch model's eval-mode pred_score, mean_nz (z - z_hat)^2, raw: the min-max
          normalisation lives in the Lightning module's test hooks, which are not used.
Budget (steps, batch, lr, betas, nz, width, loss weights) comes from our
`train.baselines.baseline_config("ganomaly")`, the config our GANomaly trains with.
Both are scored by `benchmark.run_method` and `benchmark.evaluate`: same split, metrics, bootstrap.
Image level only (anomalib's GANomaly gives no anomaly map, so maps=None for both).
"""
from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hqanogan_core import benchmark
from hqanogan_core.data.splits import load_split, to_model_input
from hqanogan_core.methods import METHODS
from hqanogan_core.methods.base import Method, check_images, n_parameters
from hqanogan_core.train.baselines import baseline_config

ANOMALIB = "anomalib==2.7.0"
BATCH = 128   # images per forward pass when scoring (as methods.learned)


def ensure_anomalib(install: bool) -> str:
    """anomalib's version; with `install`, pip-install it into this interpreter first if it is missing."""
    try:
        import anomalib
    except ImportError:
        if not install:
            raise SystemExit(f"anomalib is not installed; rerun with --install to pip-install {ANOMALIB} into "
                             f"{sys.prefix} (about 35 packages, none of them a requirement of hqanogan_core)")
        print(f"[peer] installing {ANOMALIB} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", ANOMALIB], check=True)
        importlib.invalidate_caches()
        import anomalib
    importlib.import_module("anomalib.models.image.ganomaly.torch_model")   # the slow import, outside fit's timing
    return anomalib.__version__


def epoch_batches(n: int, batch: int, g: torch.Generator):
    """Index batches like DataLoader(shuffle=True, drop_last=False): a new permutation every epoch."""
    while True:
        yield from torch.randperm(n, generator=g).split(batch)


class AnomalibGanomaly(Method):
    """anomalib's GanomalyModel + losses + training step, behind our Method interface."""

    name = "anomalib-ganomaly"

    def __init__(self, seed: int = 0, steps: int | None = None):
        self.seed, self.steps = seed, steps
        self.model, self.cfg, self.step_seconds, self.steps_done = None, None, 0.0, 0

    def fit(self, train: np.ndarray, valid=None) -> "AnomalibGanomaly":
        from anomalib.models.image.ganomaly.loss import DiscriminatorLoss, GeneratorLoss
        from anomalib.models.image.ganomaly.torch_model import GanomalyModel

        train = check_images(train, f"{self.name}.fit")                     # [N, R, R] in [0, 1]
        overrides = {"steps": self.steps} if self.steps is not None else {}
        cfg = self.cfg = baseline_config("ganomaly", resolution=train.shape[-1], seed=self.seed, **overrides)
        x = to_model_input(train, cfg.resolution, cfg.channels)             # [N, 1, R, R] in [-1, 1]
        torch.manual_seed(cfg.seed)
        self.model = GanomalyModel(input_size=(cfg.resolution, cfg.resolution), num_input_channels=cfg.channels,
                                   n_features=cfg.width, latent_vec_size=cfg.nz).train()
        g_loss_fn, d_loss_fn = GeneratorLoss(cfg.w_adv, cfg.w_con, cfg.w_enc), DiscriminatorLoss()
        # Ganomaly.configure_optimizers: one Adam per net, same lr and betas
        d_opt = torch.optim.Adam(self.model.discriminator.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        g_opt = torch.optim.Adam(self.model.generator.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        batches = epoch_batches(len(x), cfg.batch, torch.Generator().manual_seed(cfg.seed))
        for _, idx in zip(range(cfg.steps), batches):
            t0 = time.perf_counter()
            self.training_step(x[idx], g_opt, d_opt, g_loss_fn, d_loss_fn)
            self.step_seconds += time.perf_counter() - t0
            self.steps_done += 1
        self.model.eval()
        return self

    def training_step(self, images, g_opt, d_opt, g_loss_fn, d_loss_fn) -> tuple[float, float]:
        """anomalib's Ganomaly.training_step (Lightning's manual_backward = backward here)."""
        model = self.model
        padded, fake, latent_i, latent_o = model(images)     # [B,1,R,R], [B,1,R,R], [B,nz,1,1] x 2
        pred_real, _ = model.discriminator(padded)            # [B] sigmoid outputs
        pred_fake, _ = model.discriminator(fake)
        g_loss = g_loss_fn(latent_i, latent_o, padded, fake, pred_real, pred_fake)
        g_opt.zero_grad()
        g_loss.backward(retain_graph=True)
        g_opt.step()
        pred_fake, _ = model.discriminator(fake.detach())
        d_loss = d_loss_fn(pred_real, pred_fake)
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        return g_loss.item(), d_loss.item()

    @torch.no_grad()
    def score(self, images: np.ndarray) -> dict:
        x = to_model_input(check_images(images, self.name), self.cfg.resolution, self.cfg.channels)
        out = [self.model(x[i:i + BATCH]).pred_score for i in range(0, len(x), BATCH)]   # [b] each, raw
        return {"pred_score": torch.cat(out).numpy()}

    def anomaly_map(self, images: np.ndarray):
        return None                                           # anomalib's GANomaly gives none

    def info(self) -> dict:
        return {"name": self.name, "parameters": n_parameters(self.model), "train_steps": self.steps_done,
                "train_seconds": round(self.step_seconds, 1), "config": self.cfg.to_dict()}


def run_one(name: str, train, test, seed: int, steps: int | None, n_boot: int) -> dict:
    """Fit and score one method with our harness; the numbers of one table row."""
    options = {"steps": steps} if steps is not None else None
    run = benchmark.run_method(name, train, test, seed=seed, options=options)
    result = benchmark.evaluate(run.scores, run.test, None, n_boot=n_boot, seed=seed)   # image level only
    info = run.timing["info"]
    return {"method": name, "image": result["image"], "per_type": result["per_type"],
            "train_steps": info.get("train_steps"),
            "train_seconds": info.get("train_seconds") or run.timing["train_seconds"],   # inside step()
            "fit_seconds": run.timing["train_seconds"], "ms_per_image": run.timing["ms_per_image"],
            "parameters": info["parameters"], "weights": info.get("weights", "trained here")}


def print_table(rows: list[dict]) -> None:
    print(f"{'method':<18} {'AUROC [95 % CI]':<24} {'AP':>6} {'steps':>6} {'train s':>8} {'ms/img':>7} {'params':>10}")
    for r in rows:
        a = r["image"]["auroc"]
        ci = f"{a['value']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]"
        print(f"{r['method']:<18} {ci:<24} {r['image']['ap']['value']:>6.3f} {r['train_steps']!s:>6} "
              f"{r['train_seconds']:>8.1f} {r['ms_per_image']:>7.2f} {r['parameters']:>10,}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="MVTec-layout folder (default: the 64 px phantom)")
    p.add_argument("--steps", type=int, default=None, help="override the training budget (quick runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--json", type=Path, default=None, help="write the numbers here")
    p.add_argument("--install", action="store_true", help=f"pip-install {ANOMALIB} if it is missing")
    args = p.parse_args(argv)

    version = ensure_anomalib(args.install)
    if args.data is None:
        from hqanogan_core.data.default import phantom_dataset
        args.data = phantom_dataset()
    train, test = load_split(args.data, "train"), load_split(args.data, "test")   # [N, H, W] in [0, 1]
    METHODS[AnomalibGanomaly.name] = AnomalibGanomaly     # in this process only, so run_method can time it
    rows = [run_one(name, train, test, args.seed, args.steps, args.n_boot)
            for name in ("ganomaly", AnomalibGanomaly.name)]
    ours, peer = rows
    lo, hi = peer["image"]["auroc"]["ci95"]
    inside = bool(lo <= ours["image"]["auroc"]["value"] <= hi)

    print(f"data {args.data}: {len(train)} train normals, {len(test)} test ({int(test.labels.sum())} abnormal); "
          f"anomalib {version}, torch {torch.__version__}, {benchmark.device_description()}")
    print_table(rows)
    print(f"ours ({ours['weights']}) inside anomalib's AUROC 95 % CI: {'yes' if inside else 'NO'}")
    report = {"data": str(args.data), "anomalib": version, "torch": torch.__version__, "seed": args.seed,
              "steps_override": args.steps, "n_boot": args.n_boot, "device": benchmark.device_description(),
              "n_train": len(train), "n_test": len(test), "rows": rows, "ours_inside_anomalib_ci": inside}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()

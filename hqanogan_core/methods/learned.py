"""What every trained baseline shares: where its weights come from.

`fit(train)` loads weights when it can and trains only when it must:
  1. `run=`: a train-baseline run folder (checkpoint.safetensors) or a shipped folder (weights.safetensors);
  2. else, unless `steps=` or `settings=` ask for a training budget, the shipped folder
     data/pretrained/<name> if it was trained on exactly these images (its manifest's digest);
  3. else it trains with `train.baselines` on the training normals (CPU budget, `steps=` / `settings=`
     override it), in a resumable run folder under the cache keyed by the settings.
Everything loaded is safetensors + JSON (nothing unpickled); `info()` says which of the three happened.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint as ckpt
from ..data.splits import resize_batch, to_model_input
from ..paths import cache_dir, data_dir
from ..provenance import file_sha256, images_signature, portable_path, same_signature
from ..train import baselines as recipes
from ..train.loop import read_log, step_seconds
from .base import Method, check_images, n_parameters

SHIPPED_WEIGHTS = "weights.safetensors"     # a shipped folder: net tensors + meta (see ship.py)
BATCH = 128                                  # images per forward pass when scoring
MAP_SIGMA = 1.0                              # px: every baseline's residual map is smoothed like HQ-AnoGAN's


def shipped_path(method: str) -> Path:
    return data_dir() / "pretrained" / method


def weights_file(path: Path) -> Path | None:
    """The safetensors file of a run or shipped folder (or the file itself), None when there is none."""
    path = Path(path)
    if path.is_file():
        return path
    for name in (SHIPPED_WEIGHTS, recipes.CHECKPOINT_NAME):
        if (path / name).is_file():
            return path / name
    return None


def load_baseline_nets(path, method: str, device="cpu") -> tuple[dict[str, torch.nn.Module], dict]:
    """(nets in eval mode, meta) from a run or shipped folder of `method`; errors name the file."""
    file = weights_file(path)
    if file is None:
        raise FileNotFoundError(f"{path} holds no {method} weights (expected {SHIPPED_WEIGHTS} or "
                                f"{recipes.CHECKPOINT_NAME}; train one with `python -m hqanogan_core train-baseline "
                                f"{method} --data DIR --out RUN`)")
    tensors, meta = ckpt.load_checkpoint(file)
    if meta.get("kind") != "baseline" or meta.get("method") != method:
        raise ValueError(f"{file} holds {meta.get('kind')!r} weights of method {meta.get('method')!r}, not {method!r}")
    nets = recipes.build_nets(method, meta["arch"])
    needed = recipes.scoring_nets(method)
    nets = {k: v for k, v in nets.items() if needed is None or k in needed}     # training-only nets stay out
    for name, net in nets.items():
        net.load_state_dict(ckpt.unprefixed(f"net.{name}", tensors))
        net.to(device).eval().requires_grad_(False)
    return nets, meta


def images_digest(images: np.ndarray, *more: np.ndarray) -> str:
    """sha256 of image arrays as float32 (what a model was trained on: the normals, then any labelled images)."""
    h = hashlib.sha256(np.ascontiguousarray(images, dtype=np.float32).tobytes())
    for extra in more:
        h.update(np.ascontiguousarray(extra, dtype=np.float32).tobytes())
    return h.hexdigest()


class LearnedBaseline(Method):
    """Weights from a run, the shipped folder, or training (see the module docstring).

    A subclass implements `forward(images) -> (restored [N, R, R] in [0, 1], {"pred_score": [N], ...})`
    at the model's resolution R and sets `residual` ("squared" or "abs"); `score` and `anomaly_map` are
    shared: the map is the smoothed residual between the (resized) input and the restoration, at R, then
    resized back to the input's size. A method that restores nothing returns `restored = None` and has no
    map. Hooks: `training_extras(valid, cfg)` (more training inputs, e.g. labelled anomalies) and
    `after_load(train)` (statistics of the training normals under the loaded weights)."""

    recipe = "ae"          # the train.baselines recipe whose nets this method uses
    residual = "squared"
    restores = True        # False: forward() returns no restoration, and there is no map

    def __init__(self, run=None, steps: int | None = None, settings: dict | None = None, seed: int = 0,
                 device: str = "cpu", work=None):
        self.run, self.steps, self.settings = run, steps, dict(settings or {})
        self.seed, self.device, self.work = seed, torch.device(device), work
        self.nets: dict[str, torch.nn.Module] = {}
        self.meta: dict = {}
        self.source, self.weights_path, self.train_log = None, None, []
        self.fit_seconds = 0.0
        self._last = None        # (images, residual at R, restored at R) of the last score() call

    # ------------------------------------------------------------------ weights

    def _config(self, resolution: int):
        overrides = {"resolution": resolution, "seed": self.seed, "device": str(self.device), **self.settings}
        if self.steps is not None:
            overrides["steps"] = self.steps
        return recipes.baseline_config(self.recipe, **overrides)

    def shipped_folder(self) -> Path:
        return shipped_path(self.recipe)

    @classmethod
    def training_extras(cls, valid, cfg) -> dict:
        """Extra keyword arguments of `train_baseline` from the validation split (none for unsupervised
        methods); their images are part of the training digest."""
        return {}


    def after_load(self, train: np.ndarray) -> None:
        """Called after the weights are loaded, with the training normals [N, H, W]."""

    def _train_dir(self, cfg, data_digest: str) -> Path:
        if self.work is not None:
            return Path(self.work)
        key = json.dumps({"config": cfg.to_dict(), "data": data_digest}, sort_keys=True).encode()
        return cache_dir() / "runs" / f"{self.recipe}-{cfg.resolution}px-{hashlib.sha256(key).hexdigest()[:10]}"

    def _shipped_fits(self, path: Path, train: np.ndarray, digest: str, signature: list | None = None) -> bool:
        """The shipped folder serves only the images it was trained on: its manifest's sha256 of them, or (the
        same images rendered on another CPU, see `provenance.images_signature`) their signature."""
        manifest = path / "manifest.json"
        if self.steps is not None or self.settings or weights_file(path) is None or not manifest.is_file():
            return False                                     # a budget given means "train", not "load"
        data = json.loads(manifest.read_text()).get("data", {})
        signature = images_signature(train) if signature is None else signature
        return (data.get("train_images_sha256") == digest
                or same_signature(data.get("train_images_signature"), signature))

    def fit(self, train: np.ndarray, valid=None) -> "LearnedBaseline":
        t0 = time.perf_counter()
        self._last = None
        train = check_images(train, f"{self.name}.fit")
        resolution = train.shape[-1]
        cfg = self._config(resolution)
        extras = self.training_extras(valid, cfg) if self.run is None else {}
        digest = images_digest(train, *(v.numpy() for v in extras.values()))
        signature = images_signature(train, *(v.numpy() for v in extras.values()))
        if self.run is not None:
            path, self.source = Path(self.run), portable_path(self.run)   # asked for: errors below name it
        elif self._shipped_fits(self.shipped_folder(), train, digest, signature):
            path = self.shipped_folder()
            self.source = portable_path(path)
        else:
            path = self._train_dir(cfg, digest)
            recipes.train_baseline(self.recipe, to_model_input(train, resolution, cfg.channels), path, cfg,
                                   resume=True, progress=False, **extras)
            self.source = f"trained in fit(): {portable_path(path)}"
        self.weights_path = Path(path)
        self.nets, self.meta = load_baseline_nets(path, self.recipe, self.device)
        if self.meta["arch"]["resolution"] != resolution:
            raise ValueError(f"{weights_file(path)} was trained at {self.meta['arch']['resolution']} px but the "
                             f"images are {resolution} px")
        self.train_log = read_log(Path(path) / "log.jsonl") if Path(path).is_dir() else []
        self.after_load(train)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def weights_digest(self) -> str | None:
        """sha256 of the weights file in use (stored results are keyed by it)."""
        file = weights_file(self.weights_path) if self.weights_path is not None else None
        return file_sha256(file) if file is not None else None

    # ------------------------------------------------------------------ scoring

    @property
    def resolution(self) -> int:
        return self.meta["arch"]["resolution"]

    def model_input(self, images: np.ndarray) -> torch.Tensor:
        return to_model_input(check_images(images, self.name), self.resolution, self.meta["arch"]["channels"])

    def batches(self, images: np.ndarray):
        """Model-input batches [B, C, R, R] on the device."""
        x = self.model_input(images)
        for i in range(0, len(x), BATCH):
            yield x[i:i + BATCH].to(self.device)

    def forward(self, images: np.ndarray) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def restore(self, images: np.ndarray) -> np.ndarray:
        """The method's reconstruction in [0, 1] at its resolution, [N, R, R] (what score() computed, for the
        same images object)."""
        if self._last is not None and self._last[0] is images:
            return self._last[2]
        return self.forward(images)[0]

    def restoration(self, images: np.ndarray) -> np.ndarray | None:
        return self.restore(images) if self.restores else None

    def _residual(self, images: np.ndarray, restored: np.ndarray) -> np.ndarray:
        diff = resize_batch(check_images(images, self.name), self.resolution) - restored      # [N, R, R]
        return diff ** 2 if self.residual == "squared" else np.abs(diff)

    def score(self, images: np.ndarray) -> dict:
        if not self.nets:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        restored, out = self.forward(images)
        self._last = None if restored is None else (images, self._residual(images, restored), restored)
        return out

    def anomaly_map(self, images: np.ndarray) -> np.ndarray | None:
        """Smoothed residual to the restoration, at the input's size (None if the method restores nothing). [N, H, W]"""
        if not self.restores:
            return None
        same = self._last is not None and self._last[0] is images
        residual = self._last[1] if same else self._residual(images, self.restore(images))
        maps = smooth_maps(residual, MAP_SIGMA)
        return maps if maps.shape[1:] == images.shape[1:] else resize_batch(maps, images.shape[1])

    def info(self) -> dict:
        return {"name": self.name, "parameters": n_parameters(*self.nets.values()), "weights": self.source,
                "train_steps": self.meta.get("step"), "train_seconds": round(step_seconds(self.train_log), 1)
                if self.train_log else self.meta.get("train_seconds"), "config": self.meta.get("config"),
                "fit_seconds": self.fit_seconds}


def smooth_maps(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of each map [N, H, W] (sigma in pixels; 0 = none)."""
    from scipy import ndimage

    return maps if sigma <= 0 else ndimage.gaussian_filter(maps, sigma=(0, sigma, sigma))

"""HQ-AnoGAN behind the method interface: frozen StyleGAN2 + pSp encoder, scorer fitted on normals.

Networks are loaded (never trained here) from `run` (default: the shipped encoder64 and the generator its
manifest names, see `pipeline.load_pipeline`). `fit` fits the per-slot W+ Gaussians on 90 % of the
training normals and standardises every term on the other 10 %, so no abnormal label is used.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..data.splits import resize_batch, to_model_input
from ..pipeline import fit_scorer, load_pipeline
from ..provenance import tensor_digest
from ..scores import DEFAULT_TERMS, HQAnoGANScorer
from .base import Method, check_images, n_parameters


class HQAnoGAN(Method):
    name = "hqanogan"
    weights_known_before_fit = True          # the shipped or given networks; fit only computes statistics
    map_scale = 2.0              # maps are |x - G(E(x))| with x in [-1, 1]: at most 2
    map_description = "Gaussian-smoothed |x - G(E(x))| per pixel, x in [-1, 1]"

    def __init__(self, run=None, encoder=None, seed: int = 0, terms=DEFAULT_TERMS, device="cpu",
                 held_out_fraction: float = 0.1):
        self.pipe = load_pipeline(run, encoder, device=device)
        self.seed, self.terms, self.held_out_fraction = seed, tuple(terms), held_out_fraction
        self.scorer: HQAnoGANScorer | None = None
        self.fit_seconds = 0.0
        self._last_images = None

    def info(self) -> dict:
        G, D, E = self.pipe.G, self.pipe.D, self.pipe.E
        shrinkage = None if self.scorer is None else self.scorer.gaussians.shrinkage
        return {"name": self.name, "parameters": n_parameters(G, D, E), "fit_seconds": self.fit_seconds,
                "train_seconds": self.pipe.info.get("train_seconds"), **self.pipe.info, "terms": list(self.terms),
                "held_out_fraction": self.held_out_fraction, "n_slots": G.num_ws,
                "latent_shrinkage": None if shrinkage is None else [float(shrinkage.min()), float(shrinkage.max())]}

    def weights_digest(self) -> str:
        """sha256 over the generator's, discriminator's and encoder's tensors (stored results are keyed by it)."""
        return tensor_digest(torch.nn.ModuleList([m for m in (self.pipe.G, self.pipe.D, self.pipe.E) if m is not None]))

    def fit(self, train: np.ndarray, valid=None) -> "HQAnoGAN":
        t0 = time.perf_counter()
        x = to_model_input(check_images(train, "hqanogan.fit"), self.pipe.resolution)
        self.scorer = fit_scorer(self.pipe, x, self.held_out_fraction, self.seed)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def score(self, images: np.ndarray) -> dict:
        """pred_score (the equal-weight z-sum of `terms`), every raw term and its z-score `z_<term>`."""
        if self.scorer is None:
            raise RuntimeError("call fit() before score()")
        out = self.scorer.score(to_model_input(check_images(images, "hqanogan.score"), self.pipe.resolution),
                                names=self.terms)
        self._last_images = images          # anomaly_map(images) reuses these restorations
        return {"pred_score": out.pop("hqanogan"), **out}

    def _networks(self) -> HQAnoGANScorer:
        """The fitted scorer, or (before fit) an unfitted one: restorations and maps need only G and E."""
        return self.scorer or HQAnoGANScorer(self.pipe.G, self.pipe.E, self.pipe.D, None, device=self.pipe.G.w_avg.device)

    def restore(self, images: np.ndarray) -> np.ndarray:
        """The restored normal G(E(x)) in [0, 1], at the model's resolution. [N, R, R]"""
        _, rec = self._networks().encode(to_model_input(images, self.pipe.resolution))
        return ((rec.mean(dim=1) + 1) / 2).numpy()

    def restoration(self, images: np.ndarray) -> np.ndarray:
        return self.restore(images)

    def anomaly_map(self, images: np.ndarray) -> np.ndarray:
        """Smoothed |x - G(E(x))| (in [-1, 1] units), at the input's size. [N, H, W]"""
        same = self._last_images is images and self.scorer is not None
        maps = self._networks().anomaly_maps(to_model_input(images, self.pipe.resolution),
                                             self.scorer.last_restored if same else None)      # [N, R, R]
        if maps.shape[1:] != images.shape[1:]:
            maps = np.stack([resize_batch(m[None], images.shape[1])[0] for m in maps])
        return maps

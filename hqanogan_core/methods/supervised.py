"""The supervised ceiling behind the method interface: a small CNN trained *with labels* on phantoms drawn
from seeds disjoint from the benchmark's (`train.supervised`), scored on the same test split.

It is not an anomaly detector: it has seen every kind of finding. It answers "how well can these images be
told apart at all at this resolution?", the upper bound for the unsupervised methods. `fit` ignores the
training normals it is given (except for their size) and renders its own labelled set, so it exists only for
phantom data.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..data.splits import to_model_input
from ..train.supervised import labelled_phantoms, train_classifier
from .base import Method, check_images, n_parameters


class SupervisedCeiling(Method):
    name = "supervised"
    weights_known_before_fit = True     # fit renders and trains from its options alone (seeded)

    def __init__(self, seed: int = 0, phantom_seed: int = 1000, n_normal: int = 2000, n_per_type: int = 400,
                 steps: int = 1500, width: int = 16, pool: str = "max"):
        self.seed, self.phantom_seed, self.n_normal, self.n_per_type = seed, phantom_seed, n_normal, n_per_type
        self.steps, self.width, self.pool = steps, width, pool
        self.net = None
        self.train_seconds = 0.0
        self.render_seconds = 0.0

    def fit(self, train: np.ndarray, valid=None) -> "SupervisedCeiling":
        resolution = check_images(train, "supervised.fit").shape[1]
        t0 = time.perf_counter()
        images, labels, _ = labelled_phantoms(resolution, self.n_normal, self.n_per_type, self.phantom_seed)
        self.render_seconds = time.perf_counter() - t0
        self.net, self.log = train_classifier(images, labels, steps=self.steps, width=self.width,
                                             pool=self.pool, seed=self.seed)
        self.train_seconds = time.perf_counter() - t0 - self.render_seconds
        return self

    @torch.no_grad()
    def score(self, images: np.ndarray) -> dict:
        if self.net is None:
            raise RuntimeError("call fit() before score()")
        x = to_model_input(check_images(images, "supervised.score"), self.net.resolution)
        logits = torch.cat([self.net(x[i:i + 256]) for i in range(0, len(x), 256)])
        return {"pred_score": logits.numpy().astype(np.float64)}

    def anomaly_map(self, images: np.ndarray):
        return None

    def info(self) -> dict:
        return {"name": self.name, "parameters": n_parameters(self.net), "phantom_seed": self.phantom_seed,
                "n_normal": self.n_normal, "n_per_type": self.n_per_type, "steps": self.steps, "pool": self.pool,
                "render_seconds": self.render_seconds, "train_seconds": self.train_seconds,
                "labels": "supervised: trained on labelled normal and abnormal phantoms (seed "
                          f"{self.phantom_seed}), an upper bound, not an anomaly detector"}

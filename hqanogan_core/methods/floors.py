"""Trivial pixel-statistics detectors: the floor every real method must clear.

If one of these scores well, the benchmark measures image statistics, not anatomy,
and a GAN that "wins" tells us nothing. Each detector is fitted on normal training
images only and implements `methods.base.Method`.
"""
from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest

from .base import Method


def _flat(images: np.ndarray) -> np.ndarray:
    assert images.ndim == 3, f"expected [N, H, W], got {images.shape}"
    return images.reshape(len(images), -1).astype(np.float32)  # [N, H*W]


class MeanIntensity(Method):
    """|mean intensity - normal mean| / normal std: catches anything that brightens or darkens."""

    name = "mean"
    weights_known_before_fit = True

    def __init__(self, seed: int = 0):
        self.seed = seed                      # nothing random; accepted like every method's

    def fit(self, train: np.ndarray, valid=None) -> "MeanIntensity":
        means = _flat(train).mean(axis=1)
        self.mu, self.sigma = float(means.mean()), float(means.std() + 1e-8)
        return self

    def score(self, images: np.ndarray) -> dict:
        return {"pred_score": np.abs(_flat(images).mean(axis=1) - self.mu) / self.sigma}  # [N]

    def info(self) -> dict:
        return {"name": self.name, "parameters": 2}


class PixelIsolationForest(Method):
    """IsolationForest on raw pixel vectors (Liu et al. 2008)."""

    name = "iforest"
    weights_known_before_fit = True

    def __init__(self, n_estimators: int = 200, seed: int = 0):
        self.forest = IsolationForest(n_estimators=n_estimators, random_state=seed, n_jobs=1)

    def fit(self, train: np.ndarray, valid=None) -> "PixelIsolationForest":
        self.forest.fit(_flat(train))
        return self

    def score(self, images: np.ndarray) -> dict:
        return {"pred_score": -self.forest.score_samples(_flat(images))}  # [N], higher = easier to isolate

    def info(self) -> dict:
        return {"name": self.name, "parameters": int(sum(t.tree_.node_count for t in self.forest.estimators_))}


class PCAReconstruction(Method):
    """Mean squared error of the reconstruction from the top principal components of normals.

    The number of components keeps `variance` of the normal training variance
    (capped at `max_components`). Its residual is also a per-pixel anomaly map.
    """

    name = "pca"
    weights_known_before_fit = True

    def __init__(self, variance: float = 0.95, max_components: int = 256, seed: int = 0):
        self.variance, self.max_components, self.seed = variance, max_components, seed

    def fit(self, train: np.ndarray, valid=None) -> "PCAReconstruction":
        x = _flat(train)
        full = PCA(n_components=min(self.max_components, *x.shape), random_state=self.seed).fit(x)
        cumulative = np.cumsum(full.explained_variance_ratio_)
        k = int(np.searchsorted(cumulative, self.variance) + 1)
        self.n_components = min(k, len(cumulative))
        self.mean = full.mean_  # [D]
        self.components = full.components_[: self.n_components]  # [K, D]
        return self

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        x = _flat(images) - self.mean  # [N, D]
        recon = (x @ self.components.T) @ self.components + self.mean
        return recon.reshape(images.shape)  # [N, H, W]

    def anomaly_map(self, images: np.ndarray) -> np.ndarray:
        return (images - self.reconstruct(images)) ** 2  # [N, H, W]

    def restoration(self, images: np.ndarray) -> np.ndarray:
        return np.clip(self.reconstruct(images), 0, 1)

    def score(self, images: np.ndarray) -> dict:
        return {"pred_score": self.anomaly_map(images).reshape(len(images), -1).mean(axis=1)}  # [N]

    def info(self) -> dict:
        return {"name": self.name, "parameters": int(self.components.size + self.mean.size),
                "n_components": self.n_components}

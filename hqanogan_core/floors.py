"""Trivial pixel-statistics detectors: the floor every real method must clear.

If one of these scores well, the benchmark measures image statistics, not anatomy,
and a GAN that "wins" tells us nothing. Each detector is fitted on normal training
images only and follows the same tiny protocol the benchmark harness uses:

    det.fit(train)            # train: [N, H, W] float in [0, 1], normals only
    det.score(images)         # -> [M] float, higher = more anomalous
    det.anomaly_map(images)   # -> [M, H, W] or None when the method has no map
"""
from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest


def _flat(images: np.ndarray) -> np.ndarray:
    assert images.ndim == 3, f"expected [N, H, W], got {images.shape}"
    return images.reshape(len(images), -1).astype(np.float32)  # [N, H*W]


class MeanIntensity:
    """|mean intensity - normal mean| / normal std: catches anything that brightens or darkens."""

    name = "mean"

    def fit(self, train: np.ndarray) -> "MeanIntensity":
        means = _flat(train).mean(axis=1)
        self.mu, self.sigma = float(means.mean()), float(means.std() + 1e-8)
        return self

    def score(self, images: np.ndarray) -> np.ndarray:
        return np.abs(_flat(images).mean(axis=1) - self.mu) / self.sigma  # [N]

    def anomaly_map(self, images: np.ndarray) -> None:
        return None


class PixelIsolationForest:
    """IsolationForest on raw pixel vectors (Liu et al. 2008)."""

    name = "iforest"

    def __init__(self, n_estimators: int = 200, seed: int = 0):
        self.forest = IsolationForest(n_estimators=n_estimators, random_state=seed, n_jobs=1)

    def fit(self, train: np.ndarray) -> "PixelIsolationForest":
        self.forest.fit(_flat(train))
        return self

    def score(self, images: np.ndarray) -> np.ndarray:
        return -self.forest.score_samples(_flat(images))  # [N], higher = easier to isolate

    def anomaly_map(self, images: np.ndarray) -> None:
        return None


class PCAReconstruction:
    """Mean squared error of the reconstruction from the top principal components of normals.

    The number of components keeps `variance` of the normal training variance
    (capped at `max_components`). Its residual is also a per-pixel anomaly map.
    """

    name = "pca"

    def __init__(self, variance: float = 0.95, max_components: int = 256, seed: int = 0):
        self.variance, self.max_components, self.seed = variance, max_components, seed

    def fit(self, train: np.ndarray) -> "PCAReconstruction":
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

    def score(self, images: np.ndarray) -> np.ndarray:
        return self.anomaly_map(images).reshape(len(images), -1).mean(axis=1)  # [N]

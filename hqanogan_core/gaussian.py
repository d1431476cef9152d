"""Gaussian models of normal features and the squared Mahalanobis distance to them (pure math).

Used wherever a method says "fit a Gaussian to the normals and score the distance": the W+ slots of
HQ-AnoGAN's latent term, CutPaste/AnatPaste's density on embeddings, Gaussian AD (Rippel et al. 2021)
per layer. Covariances are shrunk with Ledoit-Wolf (as Rippel et al. do), which keeps them invertible
when the dimension is close to the number of normals. PaDiM's per-position Gaussians add 0.01 I
instead, as its paper does (`positional_gaussians`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.covariance import LedoitWolf


@dataclass
class Gaussian:
    """mean [D], precision [D, D] (inverse covariance), Ledoit-Wolf shrinkage in [0, 1]."""

    mean: np.ndarray
    precision: np.ndarray
    shrinkage: float


def fit_gaussian(x: np.ndarray) -> Gaussian:
    """Ledoit-Wolf Gaussian of samples x [N, D]."""
    assert x.ndim == 2, f"expected samples [N, D], got {x.shape}"
    if len(x) < 2:
        raise ValueError(f"need at least 2 samples to fit a Gaussian, got {len(x)}")
    lw = LedoitWolf().fit(x.astype(np.float64))
    return Gaussian(lw.location_, lw.precision_, float(lw.shrinkage_))


def mahalanobis(x: np.ndarray, g: Gaussian) -> np.ndarray:
    """Squared Mahalanobis distance of each row of x [N, D] to g. -> [N]"""
    assert x.ndim == 2 and x.shape[1] == g.mean.shape[0], f"x {x.shape} vs Gaussian of dim {g.mean.shape}"
    diff = x.astype(np.float64) - g.mean
    return np.einsum("nd,de,ne->n", diff, g.precision, diff)


def positional_gaussians(count: int, sum_x: np.ndarray, sum_xx: np.ndarray, ridge: float = 0.01
                         ) -> tuple[np.ndarray, np.ndarray]:
    """One Gaussian per position from streamed moments of `count` images: sum_x [P, D] and sum_xx [P, D, D]
    (sums of x and of x x^T over the images) -> (means [P, D], precisions [P, D, D]), the covariance
    unbiased + ridge * I (PaDiM's regularisation)."""
    assert sum_x.ndim == 2 and sum_xx.shape == sum_x.shape + sum_x.shape[-1:], (sum_x.shape, sum_xx.shape)
    if count < 2:
        raise ValueError(f"need at least 2 images to fit per-position Gaussians, got {count}")
    mean = sum_x / count
    cov = (sum_xx - count * np.einsum("pd,pe->pde", mean, mean)) / (count - 1)
    cov += ridge * np.eye(sum_x.shape[1])[None]
    return mean.astype(np.float32), np.linalg.inv(cov).astype(np.float32)


def positional_mahalanobis(x: np.ndarray, means: np.ndarray, precisions: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance at every position: x [N, P, D] -> [N, P]."""
    assert x.shape[1:] == means.shape, f"x {x.shape} vs means {means.shape}"
    diff = (x - means[None]).transpose(1, 0, 2)                       # [P, N, D]
    return np.einsum("pnd,pnd->np", diff @ precisions, diff)          # batched matmul per position

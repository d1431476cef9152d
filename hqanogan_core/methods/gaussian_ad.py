"""Gaussian AD (Rippel, Mertens & Merhof, ICPR 2020): one Gaussian per backbone stage, fitted to the
globally average-pooled features of normals (Ledoit-Wolf shrinkage); score = the sum over stages of the
Mahalanobis distances (not squared, as the authors' code: a squared distance grows with the stage's
dimension, so the widest stages would dominate). It is HQ-AnoGAN's latent term with an ImageNet CNN in place of the
encoder's W+ slots. The paper uses EfficientNet features; we use the offline AlexNet (all five stages).
No map: pooling removes where."""
from __future__ import annotations

import numpy as np

from ..gaussian import fit_gaussian, mahalanobis
from .pretrained_features import PretrainedFeatureMethod


class GaussianAD(PretrainedFeatureMethod):
    name = "gaussian_ad"
    stages = (0, 1, 2, 3, 4)

    def _pooled(self, images: np.ndarray) -> list[np.ndarray]:
        """Per stage, pooled features [N, C_s]."""
        per_stage = [[] for _ in self.stages]
        for feats in self.features(images):
            for s, f in enumerate(feats):
                per_stage[s].append(f.mean(dim=(2, 3)).cpu().numpy())
        return [np.concatenate(p) for p in per_stage]

    def fit_statistics(self, images: np.ndarray) -> None:
        self.gaussians = [fit_gaussian(f) for f in self._pooled(images)]

    def score(self, images: np.ndarray) -> dict:
        dists = [np.sqrt(np.maximum(mahalanobis(f, g), 0)) for f, g in zip(self._pooled(images), self.gaussians)]
        out = {f"stage{s}": d for s, d in zip(self.stages, dists)}
        return {"pred_score": np.sum(dists, axis=0), **out}                       # [N]

    def n_statistics(self) -> int:
        return int(sum(g.mean.size + g.precision.size for g in self.gaussians))

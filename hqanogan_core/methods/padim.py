"""PaDiM (Defard et al., ICPR 2021): a Gaussian per patch position.

Features of the first three backbone stages are resized to the first stage's grid (nearest) and
concatenated; a seeded random subset of `dims` channels is kept (the paper: 100 of ResNet-18's 448; here
100 of AlexNet's 64 + 192 + 384 = 640). At each position of the grid (30 x 30 at 64 px) one Gaussian is
fitted over the normals (covariance + 0.01 I), from streamed sums so the fit holds only [P, D, D]. The map
is the Mahalanobis distance per position, upsampled bilinearly and smoothed (sigma 4 px at the paper's
224 px, scaled); the image score is the map's maximum.
"""
from __future__ import annotations

import numpy as np
import torch

from ..gaussian import positional_gaussians, positional_mahalanobis
from .pretrained_features import PretrainedFeatureMethod, smooth_and_resize, to_grid


class PaDiM(PretrainedFeatureMethod):
    name = "padim"
    stages = (0, 1, 2)

    def __init__(self, dims: int = 100, backbone: str = "alex", n_fit: int = 1000, input_size: int | None = None,
                 seed: int = 0, device: str = "cpu"):
        super().__init__(backbone=backbone, n_fit=n_fit, input_size=input_size, seed=seed, device=device)
        total = sum(self.backbone.channels)
        if not 0 < dims <= total:
            raise ValueError(f"padim: dims must be in 1..{total}, got {dims}")
        g = torch.Generator().manual_seed(self.seed)
        self.channels = torch.sort(torch.randperm(total, generator=g)[:dims]).values       # [D]

    def _embeddings(self, images: np.ndarray):
        """Yield [B, P, D] embeddings (P grid positions, row-major) and the grid's (h, w)."""
        for feats in self.features(images):
            grid = to_grid(feats, tuple(feats[0].shape[2:]))[:, self.channels]        # [B, D, h, w]
            b, d, h, w = grid.shape
            yield grid.flatten(2).transpose(1, 2).double().cpu().numpy(), (h, w)

    def fit_statistics(self, images: np.ndarray) -> None:
        count, sum_x, sum_xx = 0, 0.0, 0.0
        for emb, grid in self._embeddings(images):
            count += len(emb)
            sum_x = sum_x + emb.sum(axis=0)                                  # [P, D]
            per_position = emb.transpose(1, 0, 2)                           # [P, B, D]
            sum_xx = sum_xx + per_position.transpose(0, 2, 1) @ per_position  # [P, D, D]
        self.grid = grid                                                     # (h, w) of the patch grid
        self.means, self.precisions = positional_gaussians(count, sum_x, sum_xx)

    def patch_maps(self, images: np.ndarray) -> np.ndarray:
        """Mahalanobis distance per grid position. [N, h, w]"""
        out = [np.sqrt(np.maximum(positional_mahalanobis(emb.astype(np.float32), self.means, self.precisions), 0))
               for emb, _ in self._embeddings(images)]
        return np.concatenate(out).reshape(len(images), *self.grid)

    def anomaly_map(self, images: np.ndarray) -> np.ndarray:
        if self._last is not None and self._last[0] is images:
            return self._last[1]
        return smooth_and_resize(self.patch_maps(images), images.shape[-1])          # [N, H, W]

    def score(self, images: np.ndarray) -> dict:
        maps = self.anomaly_map(images)
        self._last = (images, maps)
        return {"pred_score": maps.reshape(len(images), -1).max(axis=1)}                # [N]

    def n_statistics(self) -> int:
        return int(self.means.size + self.precisions.size)

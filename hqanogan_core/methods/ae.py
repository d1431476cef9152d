"""Convolutional autoencoder: score = mean squared residual, map = smoothed squared residual."""
from __future__ import annotations

import numpy as np
import torch

from .learned import LearnedBaseline, smooth_maps

MAP_SIGMA = 1.0          # px, the same smoothing as HQ-AnoGAN's residual map


class Autoencoder(LearnedBaseline):
    name = "ae"
    recipe = "ae"

    @torch.no_grad()
    def restore(self, images: np.ndarray) -> np.ndarray:
        """Reconstructions in [0, 1]. [N, R, R]"""
        rec = torch.cat([self.nets["ae"](x).cpu() for x in self.batches(images)])
        return ((rec.mean(dim=1) + 1) / 2).numpy()

    def score(self, images: np.ndarray) -> dict:
        residual = (images - self.restore(images)) ** 2                      # [N, R, R] in [0, 1] units
        self._last = (images, residual)
        return {"pred_score": residual.reshape(len(images), -1).mean(axis=1)}

    def anomaly_map(self, images: np.ndarray) -> np.ndarray:
        residual = self._last[1] if self._last and self._last[0] is images else (images - self.restore(images)) ** 2
        return smooth_maps(residual, MAP_SIGMA)

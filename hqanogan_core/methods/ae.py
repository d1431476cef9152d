"""Convolutional autoencoder: score = mean squared residual, map = smoothed squared residual."""
from __future__ import annotations

import numpy as np
import torch

from .learned import LearnedBaseline


class Autoencoder(LearnedBaseline):
    name = "ae"
    recipe = "ae"
    residual = "squared"

    @torch.no_grad()
    def forward(self, images: np.ndarray) -> tuple[np.ndarray, dict]:
        rec = torch.cat([self.nets["ae"](x).mean(dim=1).cpu() for x in self.batches(images)])
        restored = ((rec + 1) / 2).numpy()                                    # [N, R, R] in [0, 1]
        residual = self._residual(images, restored)
        return restored, {"pred_score": residual.reshape(len(images), -1).mean(axis=1)}

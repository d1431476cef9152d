"""GANomaly (Akcay et al. 2018): score = mean over nz of (z - z_hat)^2, the latent residual of
encoder -> decoder -> encoder. GANomaly's paper gives no map; the image residual |x - x_hat| (smoothed)
is reported as one so its localisation can be measured like the others'."""
from __future__ import annotations

import numpy as np
import torch

from .ae import MAP_SIGMA
from .learned import LearnedBaseline, smooth_maps


class GANomaly(LearnedBaseline):
    name = "ganomaly"
    recipe = "ganomaly"

    @torch.no_grad()
    def _forward(self, images: np.ndarray):
        rec, latent = [], []
        for x in self.batches(images):
            x_hat, z, z_hat = self.nets["G"](x)
            rec.append(x_hat.mean(dim=1).cpu())
            latent.append(((z - z_hat) ** 2).mean(dim=1).cpu())
        return ((torch.cat(rec) + 1) / 2).numpy(), torch.cat(latent).numpy()

    def restore(self, images: np.ndarray) -> np.ndarray:
        return self._forward(images)[0]

    def score(self, images: np.ndarray) -> dict:
        rec, latent = self._forward(images)
        residual = np.abs(images - rec)
        self._last = (images, residual)
        return {"pred_score": latent, "image_residual": residual.reshape(len(images), -1).mean(axis=1)}

    def anomaly_map(self, images: np.ndarray) -> np.ndarray:
        residual = self._last[1] if self._last and self._last[0] is images else np.abs(images - self.restore(images))
        return smooth_maps(residual, MAP_SIGMA)

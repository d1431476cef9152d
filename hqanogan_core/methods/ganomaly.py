"""GANomaly (Akcay et al. 2018): score = mean over nz of (z - z_hat)^2, the latent residual of
encoder -> decoder -> encoder. GANomaly's paper gives no map; the image residual |x - x_hat| (smoothed)
is reported as one so its localisation can be measured like the others'."""
from __future__ import annotations

import numpy as np
import torch

from .learned import LearnedBaseline


class GANomaly(LearnedBaseline):
    name = "ganomaly"
    recipe = "ganomaly"
    residual = "abs"

    @torch.no_grad()
    def forward(self, images: np.ndarray) -> tuple[np.ndarray, dict]:
        rec, latent = [], []
        for x in self.batches(images):
            x_hat, z, z_hat = self.nets["G"](x)
            rec.append(x_hat.mean(dim=1).cpu())
            latent.append(((z - z_hat) ** 2).mean(dim=1).cpu())
        restored = ((torch.cat(rec) + 1) / 2).numpy()
        residual = self._residual(images, restored).reshape(len(images), -1).mean(axis=1)
        return restored, {"pred_score": torch.cat(latent).numpy(), "image_residual": residual}

"""f-AnoGAN (Schlegl et al. 2019): score = izi_f = MSE(x, G(E(x))) + kappa * MSE(f(x), f(G(E(x)))).

f is the WGAN-GP critic's last feature layer; the map is the (smoothed) squared image residual.
"""
from __future__ import annotations

import numpy as np
import torch

from ..train.baselines import izif_loss
from .ae import MAP_SIGMA
from .learned import LearnedBaseline, smooth_maps


class FAnoGAN(LearnedBaseline):
    name = "fanogan"
    recipe = "fanogan"

    @torch.no_grad()
    def _forward(self, images: np.ndarray):
        G, critic, E = self.nets["G"], self.nets["critic"], self.nets["E"]
        kappa = self.meta["config"]["kappa"]
        rec, score, residual, feature = [], [], [], []
        for x in self.batches(images):
            s, r, f = izif_loss(E, G, critic, x, kappa)
            rec.append(G(E(x)).mean(dim=1).cpu())
            score.append(s.cpu()), residual.append(r.cpu()), feature.append(f.cpu())
        out = {"pred_score": torch.cat(score).numpy(), "image_residual": torch.cat(residual).numpy(),
               "feature_residual": torch.cat(feature).numpy()}
        return ((torch.cat(rec) + 1) / 2).numpy(), out

    def restore(self, images: np.ndarray) -> np.ndarray:
        return self._forward(images)[0]

    def score(self, images: np.ndarray) -> dict:
        rec, out = self._forward(images)
        self._last = (images, (images - rec) ** 2)
        return out

    def anomaly_map(self, images: np.ndarray) -> np.ndarray:
        residual = self._last[1] if self._last and self._last[0] is images else (images - self.restore(images)) ** 2
        return smooth_maps(residual, MAP_SIGMA)

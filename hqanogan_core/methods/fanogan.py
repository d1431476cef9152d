"""f-AnoGAN (Schlegl et al. 2019): score = izi_f = MSE(x, G(E(x))) + kappa * MSE(f(x), f(G(E(x)))).

f is the WGAN-GP critic's last feature layer; the map is the (smoothed) squared image residual.
"""
from __future__ import annotations

import numpy as np
import torch

from ..train.baselines import izif_loss
from .learned import LearnedBaseline


class FAnoGAN(LearnedBaseline):
    name = "fanogan"
    recipe = "fanogan"
    residual = "squared"

    @torch.no_grad()
    def forward(self, images: np.ndarray) -> tuple[np.ndarray, dict]:
        G, critic, E = self.nets["G"], self.nets["critic"], self.nets["E"]
        kappa = self.meta["config"]["kappa"]
        rec, score, residual, feature = [], [], [], []
        for x in self.batches(images):
            s, r, f, x_rec = izif_loss(E, G, critic, x, kappa)
            rec.append(x_rec.mean(dim=1).cpu())
            score.append(s.cpu()), residual.append(r.cpu()), feature.append(f.cpu())
        out = {"pred_score": torch.cat(score).numpy(), "image_residual": torch.cat(residual).numpy(),
               "feature_residual": torch.cat(feature).numpy()}
        return ((torch.cat(rec) + 1) / 2).numpy(), out

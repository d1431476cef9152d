"""VAE (Kingma & Welling 2014): score = negative ELBO, with the mean decoding's residual as a term and map.

The negative ELBO is evaluated deterministically: the reconstruction term at z = mu (no sampling, so a
score does not change between calls) plus the KL of q(z|x) to N(0, I), in the units the VAE was trained in
(Gaussian decoder with the training sigma, summed over pixels).
"""
from __future__ import annotations

import numpy as np
import torch

from ..nets.autoencoder import gaussian_nll, kl_to_standard_normal
from .ae import MAP_SIGMA
from .learned import LearnedBaseline, smooth_maps


class VariationalAutoencoder(LearnedBaseline):
    name = "vae"
    recipe = "vae"

    @torch.no_grad()
    def _forward(self, images: np.ndarray):
        vae, sigma = self.nets["vae"], self.meta["config"]["sigma"]
        rec, nll, kl = [], [], []
        for x in self.batches(images):
            mu, logvar = vae.encode(x)
            x_hat = vae.decoder(mu)
            rec.append(x_hat.mean(dim=1).cpu())
            nll.append(gaussian_nll(x, x_hat, sigma).cpu())
            kl.append(kl_to_standard_normal(mu, logvar).cpu())
        return ((torch.cat(rec) + 1) / 2).numpy(), torch.cat(nll).numpy(), torch.cat(kl).numpy()

    def restore(self, images: np.ndarray) -> np.ndarray:
        return self._forward(images)[0]

    def score(self, images: np.ndarray) -> dict:
        rec, nll, kl = self._forward(images)
        residual = (images - rec) ** 2
        self._last = (images, residual)
        return {"pred_score": nll + kl, "kl": kl, "residual": residual.reshape(len(images), -1).mean(axis=1)}

    def anomaly_map(self, images: np.ndarray) -> np.ndarray:
        residual = self._last[1] if self._last and self._last[0] is images else (images - self.restore(images)) ** 2
        return smooth_maps(residual, MAP_SIGMA)

"""VAE (Kingma & Welling 2014): score = negative ELBO, with the mean decoding's residual as a term and map.

The negative ELBO is evaluated deterministically: the reconstruction term at z = mu (no sampling, so a
score does not change between calls) plus the KL of q(z|x) to N(0, I), in the units the VAE was trained in
(Gaussian decoder with the training sigma, summed over pixels).
"""
from __future__ import annotations

import numpy as np
import torch

from ..nets.autoencoder import gaussian_nll, kl_to_standard_normal
from .learned import LearnedBaseline


class VariationalAutoencoder(LearnedBaseline):
    name = "vae"
    recipe = "vae"
    residual = "squared"

    @torch.no_grad()
    def forward(self, images: np.ndarray) -> tuple[np.ndarray, dict]:
        vae, sigma = self.nets["vae"], self.meta["config"]["sigma"]
        rec, nll, kl = [], [], []
        for x in self.batches(images):
            mu, logvar = vae.encode(x)
            x_hat = vae.decoder(mu)
            rec.append(x_hat.mean(dim=1).cpu())
            nll.append(gaussian_nll(x, x_hat, sigma).cpu())
            kl.append(kl_to_standard_normal(mu, logvar).cpu())
        restored = ((torch.cat(rec) + 1) / 2).numpy()
        nll, kl = torch.cat(nll).numpy(), torch.cat(kl).numpy()
        residual = self._residual(images, restored).reshape(len(images), -1).mean(axis=1)
        return restored, {"pred_score": nll + kl, "kl": kl, "residual": residual}

"""AnoGAN (Schlegl et al., IPMI 2017): find the latent whose generated image best explains x, per image.

For each image, z starts from N(0, I) and is optimised with Adam for `steps` iterations on

    loss(z) = (1 - lambda) * sum |x - G(z)|  +  lambda * sum |f(x) - f(G(z))|,      lambda = 0.1

(residual loss + discrimination loss, with f the critic's features); the anomaly score is the final loss
and the map is |x - G(z)|. G and f are f-AnoGAN's WGAN-GP generator and critic (the same GAN f-AnoGAN
uses, so the two differ only in how they find z). All images of a batch are optimised together: the loss
is a sum over images and Adam is element-wise, so this is exactly one optimisation per image.

It costs `steps` generator + critic passes per image, so on a CPU the harness scores a stratified subset
(`test_subset` images of each type; `test_subset=None` scores everything).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .ae import MAP_SIGMA
from .learned import LearnedBaseline, smooth_maps

LAMBDA = 0.1              # AnoGAN's weight of the discrimination loss
Z_SEED_STRIDE = 7919      # initial z of batch b comes from a generator seeded seed * STRIDE + b


class AnoGAN(LearnedBaseline):
    name = "anogan"
    recipe = "fanogan"            # its nets (the encoder is not used)

    def __init__(self, run=None, steps: int | None = None, settings: dict | None = None, seed: int = 0,
                 device: str = "cpu", work=None, iterations: int = 100, lr: float = 0.05,
                 test_subset: int | None = 40):
        super().__init__(run=run, steps=steps, settings=settings, seed=seed, device=device, work=work)
        self.iterations, self.lr, self.test_subset = iterations, lr, test_subset
        self.seconds_per_image = None

    def _optimise(self, x: torch.Tensor, batch_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(final loss per image [B], G(z) [B, C, R, R]) after `iterations` Adam steps on z."""
        G, critic = self.nets["G"], self.nets["critic"]
        g = torch.Generator().manual_seed(self.seed * Z_SEED_STRIDE + batch_index)
        z = torch.randn(len(x), G.cfg.z_dim, generator=g).to(x.device).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.lr)
        with torch.no_grad():
            _, f_x = critic(x, return_features=True)
        for it in range(self.iterations + 1):
            x_z = G(z)
            _, f_z = critic(x_z, return_features=True)
            loss = (1 - LAMBDA) * (x - x_z).abs().flatten(1).sum(1) + LAMBDA * (f_x - f_z).abs().sum(1)   # [B]
            if it == self.iterations:
                break                         # the last evaluation is the score, not a step
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
        return loss.detach().cpu(), x_z.detach().cpu()

    def _run(self, images: np.ndarray):
        t0 = time.perf_counter()
        losses, recs = [], []
        for b, x in enumerate(self.batches(images)):
            loss, rec = self._optimise(x, b)
            losses.append(loss), recs.append(rec.mean(dim=1))
        self.seconds_per_image = (time.perf_counter() - t0) / len(images)
        return torch.cat(losses).numpy(), ((torch.cat(recs) + 1) / 2).numpy()

    def restore(self, images: np.ndarray) -> np.ndarray:
        return self._run(images)[1]

    def score(self, images: np.ndarray) -> dict:
        loss, rec = self._run(images)
        residual = np.abs(images - rec)
        self._last = (images, residual)
        return {"pred_score": loss, "image_residual": residual.reshape(len(images), -1).mean(axis=1)}

    def anomaly_map(self, images: np.ndarray) -> np.ndarray:
        residual = self._last[1] if self._last and self._last[0] is images else np.abs(images - self.restore(images))
        return smooth_maps(residual, MAP_SIGMA)

    def info(self) -> dict:
        return {**super().info(), "iterations": self.iterations, "lr": self.lr, "lambda": LAMBDA,
                "test_subset_per_type": self.test_subset, "seconds_per_image": self.seconds_per_image}

"""AnoGAN (Schlegl et al., IPMI 2017): find the latent whose generated image best explains x, per image.

For each image, z starts from N(0, I) and is optimised with Adam for `iterations` steps on

    loss(z) = (1 - lambda) * sum |x - G(z)|  +  lambda * sum |f(x) - f(G(z))|,      lambda = 0.1

(residual loss + discrimination loss, with f the critic's features); the anomaly score is the final loss
and the map is |x - G(z)|. G and f are f-AnoGAN's WGAN-GP generator and critic (the same GAN f-AnoGAN
uses, so the two differ only in how they find z). All images of a batch are optimised together: the loss
is a sum over images and Adam is element-wise, so this is exactly one optimisation per image, and each
image's starting z is drawn from a generator seeded by the image's own pixels, so its score does not
depend on which other images are scored with it.

Deviations, for a CPU: 100 iterations (the paper: 500) with Adam at lr 0.05 (the paper does not state
its rate; 0.05 brings the loss to a plateau within 100 steps on the phantom), and the harness scores a
stratified subset (`test_subset` images of each type, normals included; `test_subset=None` scores all).
"""
from __future__ import annotations

import time
import zlib

import numpy as np
import torch

from .learned import BATCH, LearnedBaseline

LAMBDA = 0.1              # AnoGAN's weight of the discrimination loss


def initial_latents(images: np.ndarray, z_dim: int, seed: int) -> torch.Tensor:
    """One z ~ N(0, I) per image, seeded by (seed, crc32 of the image's bytes). [N, z_dim]"""
    zs = [torch.randn(z_dim, generator=torch.Generator().manual_seed(
        seed * 2**32 + zlib.crc32(np.ascontiguousarray(im, dtype=np.float32).tobytes()))) for im in images]
    return torch.stack(zs)


class AnoGAN(LearnedBaseline):
    name = "anogan"
    recipe = "fanogan"            # its nets (the encoder is not used)
    residual = "abs"

    def __init__(self, run=None, steps: int | None = None, settings: dict | None = None, seed: int = 0,
                 device: str = "cpu", work=None, iterations: int = 100, lr: float = 0.05,
                 test_subset: int | None = 40):
        super().__init__(run=run, steps=steps, settings=settings, seed=seed, device=device, work=work)
        self.iterations, self.lr, self.test_subset = iterations, lr, test_subset
        self.seconds_per_image = None

    def _optimise(self, x: torch.Tensor, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(final loss per image [B], G(z) [B, C, R, R]) after `iterations` Adam steps on z from z0."""
        G, critic = self.nets["G"], self.nets["critic"]
        z = z0.clone().to(x.device).requires_grad_(True)
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

    def score(self, images: np.ndarray) -> dict:
        """As every learned baseline; `seconds_per_image` in info() is the time of this scoring."""
        t0 = time.perf_counter()
        out = super().score(images)
        self.seconds_per_image = (time.perf_counter() - t0) / len(images)
        return out

    def forward(self, images: np.ndarray) -> tuple[np.ndarray, dict]:
        z0 = initial_latents(images, self.nets["G"].cfg.z_dim, self.seed)          # [N, z_dim]
        losses, recs = [], []
        for i, x in zip(range(0, len(images), BATCH), self.batches(images)):
            loss, rec = self._optimise(x, z0[i:i + len(x)])
            losses.append(loss), recs.append(rec.mean(dim=1))
        restored = ((torch.cat(recs) + 1) / 2).numpy()
        residual = self._residual(images, restored).reshape(len(images), -1).mean(axis=1)
        return restored, {"pred_score": torch.cat(losses).numpy(), "image_residual": residual}

    def info(self) -> dict:
        return {**super().info(), "iterations": self.iterations, "lr": self.lr, "lambda": LAMBDA,
                "test_subset_per_type": self.test_subset, "seconds_per_image": self.seconds_per_image}

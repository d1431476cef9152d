"""CutPaste (Li et al., CVPR 2021) and AnatPaste (Sato et al. 2022): a ResNet-18 trained (here from
scratch, `train.self_supervised`) to tell normals from pasted copies; score = the squared Mahalanobis
distance of an image's pooled embedding to a Gaussian (Ledoit-Wolf) fitted on the training normals'
embeddings, both papers' density estimator. No map (CutPaste's patch-level GradCAM maps are not built)."""
from __future__ import annotations

import numpy as np
import torch

from ..gaussian import fit_gaussian, mahalanobis
from .learned import LearnedBaseline


class CutPaste(LearnedBaseline):
    name = "cutpaste"
    recipe = "cutpaste"
    restores = False

    def __init__(self, normalize: bool = True, run=None, steps: int | None = None, settings: dict | None = None,
                 seed: int = 0, device: str = "cpu", work=None):
        super().__init__(run=run, steps=steps, settings=settings, seed=seed, device=device, work=work)
        self.normalize = bool(normalize)     # unit-length embeddings before the density (the reference code's)

    @torch.no_grad()
    def embeddings(self, images: np.ndarray) -> np.ndarray:
        """Pooled ResNet features, unit length if `normalize`. [N, 8 * width]"""
        e = torch.cat([self.nets["net"].embed(x).cpu() for x in self.batches(images)])
        return (torch.nn.functional.normalize(e, dim=1) if self.normalize else e).numpy()

    def after_load(self, train: np.ndarray) -> None:
        self.density = fit_gaussian(self.embeddings(train))

    def forward(self, images: np.ndarray) -> tuple[None, dict]:
        return None, {"pred_score": mahalanobis(self.embeddings(images), self.density)}      # [N]

    def info(self) -> dict:
        return {**super().info(), "density": "Ledoit-Wolf Gaussian on pooled embeddings",
                "density_shrinkage": round(self.density.shrinkage, 4)}


class AnatPaste(CutPaste):
    name = "anatpaste"
    recipe = "anatpaste"

"""Deep SVDD (Ruff et al., ICML 2018) and Deep SAD (Ruff et al., ICLR 2020): score = ||phi(x) - c||^2.

phi is a bias-free CNN trained to pull the normals' outputs towards a fixed centre c (`train.one_class`);
an image whose output lands far from c is anomalous. Neither paper gives a map, and neither is drawn here.
Deep SAD additionally saw `n_labelled` abnormal images of the *validation* split while training (pushed
away from c); `labelled_indices(valid)` says which, so they can be left out when it is evaluated there.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..data.splits import labelled_anomalies, labelled_images
from .learned import LearnedBaseline, shipped_path


class DeepSVDD(LearnedBaseline):
    name = "deepsvdd"
    recipe = "deepsvdd"
    restores = False

    @torch.no_grad()
    def forward(self, images: np.ndarray) -> tuple[None, dict]:
        dist = torch.cat([self.nets["phi"].distance(x).cpu() for x in self.batches(images)])
        return None, {"pred_score": dist.numpy()}                                   # [N]


class DeepSAD(DeepSVDD):
    name = "deepsad"
    recipe = "deepsad"

    def __init__(self, n_labelled: int = 20, run=None, steps: int | None = None, settings: dict | None = None,
                 seed: int = 0, device: str = "cpu", work=None):
        super().__init__(run=run, steps=steps, settings=settings, seed=seed, device=device, work=work)
        self.n_labelled = int(n_labelled)

    def _config(self, resolution: int):
        return replace(super()._config(resolution), n_labelled=self.n_labelled)

    def shipped_folder(self):
        return shipped_path(self.recipe) / f"k{self.n_labelled}"

    @classmethod
    def training_extras(cls, valid, cfg) -> dict:
        if valid is None:
            raise ValueError("deepsad needs the labelled validation split (fit(train, valid)) for its "
                             f"{cfg.n_labelled} labelled anomalies")
        return {"labelled": labelled_images(valid, cfg.n_labelled, cfg.seed, cfg.resolution, cfg.channels)}

    def labelled_indices(self, valid) -> np.ndarray:
        """Indices into `valid` of the anomalies these weights were trained with."""
        cfg = self.meta["config"]
        return labelled_anomalies(valid, int(cfg["n_labelled"]), seed=int(cfg["seed"]))

    def info(self) -> dict:
        return {**super().info(), "n_labelled": int(self.meta.get("config", {}).get("n_labelled", self.n_labelled)),
                "labelled_from": "valid"}

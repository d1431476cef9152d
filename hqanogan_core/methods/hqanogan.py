"""HQ-AnoGAN behind the method interface: frozen StyleGAN2 + pSp encoder, scorer fitted on normals.

Networks are loaded (never trained here) from `run` (default: the shipped encoder64 and the generator its
manifest names, see `pipeline.load_pipeline`). `fit` fits the per-slot W+ Gaussians on 90 % of the
training normals and standardises every term on the other 10 %, so no abnormal label is used.
Option `score`: a `ScoreConfig` or its fields as a dict (default: `DEFAULT_SCORE`, chosen on the
validation split by `score_study`), e.g. `--set 'hqanogan.score={"terms": ["perceptual"]}'`.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..data.splits import resize_batch, to_model_input
from ..paths import cache_dir
from ..pipeline import fit_scorer, load_pipeline
from ..provenance import tensor_digest
from ..scores import HQAnoGANScorer
from ..terms import Evidence, ScoreConfig
from .base import Method, check_images, n_parameters

# latent repair as chosen on the validation split (chapter 6 re-runs the sweep and checks this is its best)
REPAIR_DEFAULT = {"mode": "shrink", "quantile": 0.99, "target_quantile": None}


# the default score, as chosen on the validation split (`score_study` re-runs the choice; a test checks
# that the shipped study chose this)
DEFAULT_SCORE = ScoreConfig(terms=("detection_map",), aggregation="max", map_sigma=2.0, refine_steps=60,
                            refine_loss="l1", map_terms=("image_residual", "residual_encoder", "perceptual_encoder"),
                            detect_terms=("residual_added", "perceptual_encoder"))


def score_config(score: ScoreConfig | dict | None) -> ScoreConfig:
    """A ScoreConfig from an option value: None = DEFAULT_SCORE, a dict = DEFAULT_SCORE with those fields."""
    if score is None or isinstance(score, ScoreConfig):
        return score or DEFAULT_SCORE
    if not isinstance(score, dict):
        raise TypeError("hqanogan option 'score' must be a ScoreConfig or a dict of its fields, "
                        f"got {type(score).__name__}")
    return ScoreConfig.from_dict({**DEFAULT_SCORE.to_dict(), **score})


class HQAnoGAN(Method):
    name = "hqanogan"
    weights_known_before_fit = True          # the shipped or given networks; fit only computes statistics

    @property
    def map_description(self) -> str:
        return self.config.describe_map()

    @property
    def map_scale(self) -> float | None:
        """The maps' fixed upper end when they have one: 2 for a single |x - x_hat| map in [-1, 1] units."""
        return 2.0 if tuple(self.config.map_terms) in (("image_residual",), ("residual_encoder",)) else None

    def __init__(self, run=None, encoder=None, seed: int = 0, device="cpu", score: ScoreConfig | dict | None = None):
        self.pipe = load_pipeline(run, encoder, device=device)
        self.seed = seed
        self.config = score_config(score)
        self.scorer: HQAnoGANScorer | None = None
        self.fit_seconds = 0.0
        self._last_images = None

    def info(self) -> dict:
        G, D, E = self.pipe.G, self.pipe.D, self.pipe.E
        shrinkage = None if self.scorer is None else self.scorer.gaussians.shrinkage
        return {"name": self.name, "parameters": n_parameters(G, D, E), "fit_seconds": self.fit_seconds,
                "train_seconds": self.pipe.info.get("train_seconds"), **self.pipe.info, "score": self.config.to_dict(),
                "terms": list(self.config.terms), "held_out_fraction": self.config.held_out_fraction,
                "n_slots": G.num_ws,
                "latent_shrinkage": None if shrinkage is None else [float(shrinkage.min()), float(shrinkage.max())]}

    def weights_digest(self) -> str:
        """sha256 over the generator's, discriminator's and encoder's tensors (stored results are keyed by it)."""
        return tensor_digest(torch.nn.ModuleList([m for m in (self.pipe.G, self.pipe.D, self.pipe.E) if m is not None]))

    def fit(self, train: np.ndarray, valid=None) -> "HQAnoGAN":
        t0 = time.perf_counter()
        x = to_model_input(check_images(train, "hqanogan.fit"), self.pipe.resolution)
        self.scorer = fit_scorer(self.pipe, x, self.config, self.seed, cache=cache_dir() / "scorers")
        self.fit_seconds = time.perf_counter() - t0
        return self

    def score(self, images: np.ndarray) -> dict:
        """pred_score (the configured combination of z-scores), every computed raw term and its z-score `z_<term>`."""
        if self.scorer is None:
            raise RuntimeError("call fit() before score()")
        out = self.scorer.score(to_model_input(check_images(images, "hqanogan.score"), self.pipe.resolution))
        self._last_images = images          # anomaly_map(images) reuses these restorations
        return {"pred_score": out.pop("hqanogan"), **out}

    def _networks(self) -> HQAnoGANScorer:
        """The fitted scorer, or (before fit) an unfitted one: restorations and maps need only G and E."""
        return self.scorer or HQAnoGANScorer(self.pipe.G, self.pipe.E, self.pipe.D, None,
                                             device=self.pipe.G.w_avg.device, config=self.config)

    def restore(self, images: np.ndarray) -> np.ndarray:
        """The restored normal G(E(x)) in [0, 1], at the model's resolution. [N, R, R]"""
        if self._last_images is images and self.scorer is not None:
            rec = self.scorer.last_restored                  # what score(images) computed
        else:
            _, rec = self._networks().restore(to_model_input(images, self.pipe.resolution))
        return ((rec.mean(dim=1) + 1) / 2).numpy()

    def restoration(self, images: np.ndarray) -> np.ndarray:
        return self.restore(images)

    def anomaly_map(self, images: np.ndarray) -> np.ndarray:
        """The scorer's anomaly map (`ScoreConfig.map_terms`), at the input's size. [N, H, W]"""
        same = self._last_images is images and self.scorer is not None
        maps = self._networks().anomaly_maps(to_model_input(images, self.pipe.resolution),
                                             self.scorer.last_evidence if same else None)      # [N, R, R]
        if maps.shape[1:] != images.shape[1:]:
            maps = np.stack([resize_batch(m[None], images.shape[1])[0] for m in maps])
        return maps


class HQAnoGANRepair(HQAnoGAN):
    """HQ-AnoGAN whose restoration is latent repair (`scores.HQAnoGANScorer.repair`): the W+ slots of E(x)
    unusual for normals pulled back, the other slots kept from the score's restoration (E(x), or its
    refinement). Same image score as `hqanogan`; the map is the same map with G(repaired) as the
    restoration (maps against G(E(x)) alone are unchanged).
    Options: `repair` = {mode, quantile, target_quantile, k} (default REPAIR_DEFAULT)."""

    name = "hqanogan_repair"

    @property
    def map_description(self) -> str:
        return f"{self.config.describe_map()}, with G(repaired code) as the restoration x_hat"

    def __init__(self, run=None, encoder=None, seed: int = 0, device="cpu", score: ScoreConfig | dict | None = None,
                 repair: dict | None = None):
        super().__init__(run, encoder, seed, device, score)
        self.repair = {**REPAIR_DEFAULT, **(repair or {})}
        self._repaired = None        # (images, repaired [N, 1, R, R] in [-1, 1]) of the last call

    def info(self) -> dict:
        return {**super().info(), "repair": self.repair}

    def repaired(self, images: np.ndarray) -> np.ndarray:
        """G(repaired code) in [-1, 1] at the model's resolution, [N, 1, R, R] (kept for the same images)."""
        if self.scorer is None:
            raise RuntimeError("call fit() before repairing (the thresholds come from held-out normals)")
        if self._repaired is None or self._repaired[0] is not images:
            out = self.scorer.repair(to_model_input(check_images(images, self.name), self.pipe.resolution),
                                     **self.repair)
            self._repaired = (images, out["repaired"])
        return self._repaired[1]

    def restore(self, images: np.ndarray) -> np.ndarray:
        return (self.repaired(images).mean(axis=1) + 1) / 2

    def anomaly_map(self, images: np.ndarray) -> np.ndarray:
        x = to_model_input(check_images(images, self.name), self.pipe.resolution)
        repaired = torch.from_numpy(self.repaired(images))
        scorer = self._networks()
        if self._last_images is images and scorer.last_evidence is not None:
            ev = scorer.last_evidence.with_restoration(repaired)       # keeps what depends on E(x) only
        else:
            ev = Evidence(scorer, x, scorer.encode(x)[0], repaired)    # no refinement: the repair replaces it
        maps = scorer.anomaly_maps(x, ev)
        return maps if maps.shape[1:] == images.shape[1:] else resize_batch(maps, images.shape[1])

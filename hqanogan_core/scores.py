"""The fitted HQ-AnoGAN scorer: standardise the terms on held-out normals, combine them, restore, repair.

The terms themselves, and the `ScoreConfig` that chooses among them, are data in `terms.py`. Here:

    fit(train, held_out)   W+ Gaussians on the codes of `train` normals; every
                           configured term computed on `held_out` normals for its mean and std
    score(images)          only the configured terms, their z-scores (`z_<term>`) and the combined
                           `hqanogan` score: the weighted sum (or max) of the z-scores
    anomaly_maps(images)   the anomaly map of `config.map_terms` (several: each in units of its held-out
                           normals' pixel std, `map_scales`, fitted with the rest)

No abnormal label is used anywhere: the z-scores are "how unusual for a normal image". Which terms, which
aggregation and which weights make the default is chosen on the validation split (`score_study`); the
paper's exact formula is not known to us.

The math is pure numpy functions; `HQAnoGANScorer` holds the fitted state. Scoring never
imports training code: it receives already-loaded networks.
"""
from __future__ import annotations

import numpy as np
import torch

from .recon import encode_images
from .repair import repair_codes, slot_thresholds
from .project import refine
from .terms import (DEFAULT_TERMS, Evidence, LatentGaussians, ScoreConfig, block_residuals,  # noqa: F401
                    compute_terms, discriminator_features, fit_latent_gaussians, fit_map_scales,
                    latent_mahalanobis, needs, residual_map, slot_of, smooth)


# ----------------------------------------------------------------------------- pure math


def fit_standardisation(terms: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """(mean, std) of each term on held-out normal images."""
    stats = {}
    for name, values in terms.items():
        values = np.asarray(values, dtype=np.float64)
        stats[name] = (float(values.mean()), float(values.std() + 1e-12))
    return stats


def standardise(terms: dict[str, np.ndarray], stats: dict[str, tuple[float, float]]) -> dict[str, np.ndarray]:
    """z-score of every term that has statistics."""
    return {name: (np.asarray(v, np.float64) - stats[name][0]) / stats[name][1]
            for name, v in terms.items() if name in stats}


def combine(z_terms: dict[str, np.ndarray], names=DEFAULT_TERMS, weights: dict[str, float] | None = None,
            how: str = "sum") -> np.ndarray:
    """Weighted sum (or max) of standardised terms (weights default to 1: no labels needed)."""
    missing = [n for n in names if n not in z_terms]
    if missing:
        raise ValueError(f"cannot combine: terms {missing} were not computed (have {sorted(z_terms)})")
    weights = weights or {}
    weighted = [weights.get(n, 1.0) * z_terms[n] for n in names]
    if how == "max":
        return np.max(weighted, axis=0)
    if how != "sum":
        raise ValueError(f"unknown combination {how!r}: use 'sum' or 'max'")
    return sum(weighted)


# ----------------------------------------------------------------------------- refined codes, stored by image


class RefinedCodes:
    """Refined W+ codes looked up by image content, so that an image is refined once.

    Refinement (`project.refine`) costs tens of generator steps per image; the book, the report and the tests
    restore the same images again and again. Codes are kept per namespace (`refine_namespace`: a digest of
    the networks, the refinement settings and, under a prior, the fitted Gaussians) in safetensors files
    `refined-<namespace>.safetensors` (one [M, L, D] tensor, the image keys in the metadata): read from every
    folder in `read_from` the first time a namespace is asked for, new codes written to `write_to`.
    A refined code is a pure function of (networks, settings, prior, image), so a stored one is the same as a
    recomputed one up to floating-point reduction order."""

    def __init__(self, read_from=(), write_to=None):
        from pathlib import Path

        self.read_from = [Path(f) for f in read_from]
        self.write_to = Path(write_to) if write_to is not None else None
        self.codes: dict[str, dict[str, torch.Tensor]] = {}      # namespace -> image key -> code [L, D]

    def codes_of(self, namespace: str) -> dict[str, torch.Tensor]:
        """The stored codes of one namespace (its files read on first use)."""
        from . import checkpoint as ckpt

        if namespace not in self.codes:
            self.codes[namespace] = {}
            for folder in self.read_from:
                file = folder / f"refined-{namespace}.safetensors"
                if file.is_file():
                    tensors, meta = ckpt.load_checkpoint(file)
                    self.codes[namespace].update(zip(meta["keys"], tensors["ws"]))
        return self.codes[namespace]

    @staticmethod
    def key(image: torch.Tensor) -> str:
        import hashlib

        return hashlib.sha256(image.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()[:32]

    def restore(self, images: torch.Tensor, namespace: str, compute) -> torch.Tensor:
        """Codes [N, L, D] for images [N, C, H, W]: stored ones looked up, the others from `compute(index)`."""
        from . import checkpoint as ckpt

        codes = self.codes_of(namespace)
        keys = [self.key(im) for im in images]
        missing = np.array([i for i, k in enumerate(keys) if k not in codes], dtype=np.int64)
        if len(missing):
            new = compute(missing)
            codes.update(zip((keys[i] for i in missing), new))
            if self.write_to is not None:
                self.write_to.mkdir(parents=True, exist_ok=True)
                names = list(codes)
                ckpt.save_checkpoint(self.write_to / f"refined-{namespace}.safetensors",
                                     {"ws": torch.stack([codes[k] for k in names])}, {"keys": names}, sidecar=False)
        return torch.stack([codes[k] for k in keys])


def refine_namespace(G, E, config: ScoreConfig, prior: LatentGaussians | None = None) -> str:
    """Digest of what a refined code depends on besides the image: G, E, the refinement settings and, when
    `config.refine_prior` > 0, the Gaussians of the prior (`prior`, required then)."""
    import hashlib
    import json

    from .provenance import tensor_digest

    settings = [config.refine_steps, config.refine_lr, config.refine_prior]
    if config.refine_loss != "mse":              # MSE namespaces predate the choice of loss: they stay as they were
        settings.append(config.refine_loss)
    text = tensor_digest(G) + tensor_digest(E) + json.dumps(settings)
    if config.refine_prior > 0:
        if prior is None:
            raise ValueError("refine_prior > 0: the namespace needs the Gaussians of the prior")
        h = hashlib.sha256()
        for a in (prior.means, prior.precisions, prior.shrinkage):
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        text += h.hexdigest()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- the scorer


class HQAnoGANScorer:
    """Fitted HQ-AnoGAN scoring state around frozen networks.

    G: generator with `.synthesis(ws)`; E: encoder images [N, C, H, W] in [-1, 1] -> ws [N, L, D];
    D (optional): discriminator with `D(x, return_features=True)`; percep (optional): a
    PerceptualDistance; config: the `ScoreConfig` (default: the default score). Configured terms that
    need a missing network are skipped.

    D's features are computed as if for one image at a time (see `terms.discriminator_features`): its
    minibatch-std layer would otherwise make an image's features depend on the rest of its batch.
    """

    def __init__(self, G, E, D=None, percep=None, batch: int = 32, device: str | torch.device = "cpu",
                 config: ScoreConfig | None = None):
        self.G, self.E, self.D, self.percep = G, E, D, percep
        self.batch, self.device = batch, torch.device(device)
        self.config = config or ScoreConfig()
        self.gaussians: LatentGaussians | None = None
        self.last_restored: torch.Tensor | None = None
        self.last_evidence: Evidence | None = None      # of the last score(images): anomaly_maps reuses it
        self.map_scales: dict[str, float] | None = None   # map term -> held-out normals' pixel std
        self.stats: dict[str, tuple[float, float]] | None = None
        self.held_out_slots: np.ndarray | None = None   # [N_held, L] per-slot distances of held-out normals
        self.code_bank: np.ndarray | None = None        # [M, L, D] training codes (latent repair "retrieve")
        self.held_out_raw: dict[str, np.ndarray] | None = None   # raw terms of the held-out normals
        self.refined: RefinedCodes | None = None     # stored refinements, every setting (pipeline.fit_scorer)

    @property
    def map_sigma(self) -> float:
        return self.config.map_sigma

    def usable(self, names) -> list[str]:
        """The terms of `names` whose networks are present (a scorer without D or percep skips theirs, a
        generator with fewer W+ slots the slots it lacks: `latent_l<k>` needs k < G.num_ws)."""
        present = {"percep": self.percep is not None, "D": self.D is not None, "gaussians": True,
                   "map_scales": self.map_scales is not None or len(self.config.scaled_maps) == 1}
        return [n for n in names if all(present[k] for k in needs([n])) and (slot_of(n) or 0) < self.G.num_ws]

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ws [N, L, D], restored images [N, C, H, W] clamped to [-1, 1]) for images [N, C, H, W] in [-1, 1]."""
        assert images.ndim == 4, f"expected [N, C, H, W], got {tuple(images.shape)}"
        ws, rec = encode_images(self.G, self.E, images, batch=self.batch)
        return ws, rec.clamp(-1, 1)

    def restore(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder codes ws [N, L, D], restored normal [N, C, H, W] in [-1, 1]): G(E(x)), or with
        `config.refine_steps` the encoder-initialised refinement G(w') (`project.refine`)."""
        if self.config.refine_steps == 0:
            return self.encode(images)
        ws, codes = self.restore_codes(images)
        return ws, self.synthesise(codes)

    def restore_codes(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder codes ws [N, L, D], the codes the restoration is drawn from [N, L, D]): ws itself, or
        the refined w' (read from `refined` when stored there)."""
        ws, _ = self.encode(images)
        c = self.config
        if c.refine_steps == 0:
            return ws, ws
        prior = self.gaussians if c.refine_prior > 0 else None
        if c.refine_prior > 0 and prior is None:
            raise RuntimeError("refine_prior needs the fitted Gaussians: fit the scorer first")

        def compute(index: np.ndarray) -> torch.Tensor:
            idx = torch.from_numpy(index)
            return refine(self.G, images[idx].to(self.device), ws[idx].to(self.device), steps=c.refine_steps,
                          lr=c.refine_lr, prior=prior, lambda_prior=c.refine_prior, batch=self.batch,
                          loss=c.refine_loss)[0]

        if self.refined is None:
            return ws, compute(np.arange(len(images)))
        return ws, self.refined.restore(images, refine_namespace(self.G, self.E, c, prior), compute)

    @torch.no_grad()
    def synthesise(self, ws: torch.Tensor) -> torch.Tensor:
        """G(ws) [N, C, H, W] on the CPU, clamped to [-1, 1] (constant noise) for codes ws [N, L, D]."""
        return torch.cat([self.G.synthesis(ws[i:i + self.batch].to(self.device), noise_mode="const").cpu()
                          for i in range(0, len(ws), self.batch)]).clamp(-1, 1)

    @torch.no_grad()
    def terms(self, images: torch.Tensor, names=None, config: ScoreConfig | None = None
              ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Raw score terms (each [N]) for `names` (default: the configured terms), the W+ codes [N, L, D] and
        the restorations [N, C, H, W]. Once the Gaussians are fitted and a latent term is asked for, every
        slot's distance `latent_l<k>` comes too (it costs nothing more)."""
        ev = Evidence(self, images)
        return self.terms_of(ev, names, config), ev.ws.numpy(), ev.rec.numpy()

    def terms_of(self, ev: Evidence, names=None, config: ScoreConfig | None = None) -> dict[str, np.ndarray]:
        """`terms` for already-built evidence (the score study computes many configurations from one)."""
        config = config or self.config
        names = self.usable(config.terms if names is None else names)
        if self.gaussians is not None and "gaussians" in needs(names):
            names = list(dict.fromkeys([*names, *(f"latent_l{k}" for k in range(ev.ws.shape[1]))]))
        return compute_terms(ev, names, config)

    def fit(self, train: torch.Tensor, held_out: torch.Tensor) -> "HQAnoGANScorer":
        """Fit the W+ Gaussians on `train` normals' codes and standardise every configured term on
        `held_out` normals."""
        ws, _ = self.encode(train)
        self.gaussians = fit_latent_gaussians(ws.numpy())
        self.code_bank = ws.numpy()
        ws_held, rec_held = self.restore(held_out)
        self.held_out_slots = latent_mahalanobis(ws_held.numpy(), self.gaussians)   # before any repair term
        ev = Evidence(self, held_out, ws_held, rec_held)
        self.map_scales = fit_map_scales(ev, self.config)          # before the terms: `anomaly_map` needs them
        raw = self.terms_of(ev)
        self.stats = fit_standardisation(raw)
        self.held_out_raw = raw
        return self

    def combined(self, z: dict[str, np.ndarray], config: ScoreConfig | None = None) -> np.ndarray:
        """The HQ-AnoGAN score from z-scored terms under `config` (default: the scorer's). [N]"""
        config = config or self.config
        return combine(z, self.usable(config.terms), config.weights, config.combine)

    def held_out_scores(self) -> np.ndarray:
        """The combined score of each held-out normal (what a new image's score is ranked against). [N_held]"""
        return self.combined(standardise(self.held_out_raw, self.stats))

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """What `fit` computed, as (tensors, JSON-able meta) for a safetensors file (`load_state` reverses it)."""
        if self.held_out_slots is None:
            raise RuntimeError("call fit(train, held_out) before state()")
        g = self.gaussians
        arrays = {"means": g.means, "precisions": g.precisions, "shrinkage": g.shrinkage,
                  "held_out_slots": self.held_out_slots, "code_bank": self.code_bank,
                  **{f"held_out.{k}": v for k, v in self.held_out_raw.items()}}
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        return tensors, {"stats": self.stats, "config": self.config.to_dict(), "map_scales": self.map_scales}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> "HQAnoGANScorer":
        t = {k: v.numpy() for k, v in tensors.items()}
        self.config = ScoreConfig.from_dict(meta["config"])
        self.gaussians = LatentGaussians(t["means"], t["precisions"], t["shrinkage"])
        self.held_out_slots, self.code_bank = t["held_out_slots"], t["code_bank"]
        self.held_out_raw = {k.removeprefix("held_out."): v for k, v in t.items() if k.startswith("held_out.")}
        self.stats = {k: (float(v[0]), float(v[1])) for k, v in meta["stats"].items()}
        self.map_scales = {k: float(v) for k, v in meta["map_scales"].items()}
        return self

    @torch.no_grad()
    def repair(self, images: torch.Tensor, mode: str = "shrink", quantile: float = 0.95,
               target_quantile: float | None = None, k: int = 8, flagged: np.ndarray | None = None,
               ws: torch.Tensor | None = None) -> dict[str, np.ndarray]:
        """Latent repair (see `repair`): unusual W+ slots pulled back to normal, then re-synthesised.

        images [N, C, H, W] in [-1, 1]; ws: their encoder codes if already encoded. Slots are unusual when
        the encoder's code is above the `quantile` of held-out normals' per-slot distance; "shrink" moves
        them to the `target_quantile` (default: the same quantile). The slots the repair moves replace those
        slots of the restoration's codes (E(x), or the refined w'): the others keep the restoration, so with
        nothing moved the repair is the restoration. -> {"repaired" [N, C, H, W] in [-1, 1], "flagged"
        [N, L] bool, "d2" [N, L] before, "d2_repaired" [N, L] after, "ws", "ws_repaired" [N, L, D]}"""
        if self.held_out_slots is None:
            raise RuntimeError("call fit(train, held_out) before repair()")
        if ws is None or self.config.refine_steps:
            ws_enc, codes = self.restore_codes(images)
            ws = ws_enc if ws is None else ws
        else:
            codes = ws
        ws_np = ws.cpu().numpy()
        d2 = latent_mahalanobis(ws_np, self.gaussians)
        thresholds = slot_thresholds(self.held_out_slots, quantile)
        target = None if target_quantile is None else slot_thresholds(self.held_out_slots, target_quantile)
        fixed, flagged = repair_codes(ws_np, d2, thresholds, self.gaussians.means.astype(ws_np.dtype), mode=mode,
                                      target=target, bank=self.code_bank, k=k, flagged=flagged)
        moved = flagged & (fixed != ws_np).any(axis=2)                          # [N, L]
        drawn = np.where(moved[..., None], fixed, codes.cpu().numpy())          # [N, L, D]
        repaired = self.synthesise(torch.from_numpy(drawn))
        return {"repaired": repaired.numpy(), "flagged": flagged, "d2": d2,
                "d2_repaired": latent_mahalanobis(fixed, self.gaussians), "ws": ws_np, "ws_repaired": drawn}

    def score(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        """The configured raw terms, their z-scores (`z_<term>`) and the combined `hqanogan` score, each [N].

        The evidence (restorations, maps) is kept in `last_evidence` (`last_restored` [N, C, H, W]) for
        `anomaly_maps`."""
        if self.stats is None:
            raise RuntimeError("call fit(train, held_out) before score()")
        ev = Evidence(self, images)
        raw = self.terms_of(ev)
        self.last_evidence, self.last_restored = ev, ev.rec
        z = standardise(raw, self.stats)
        out = dict(raw)
        out.update({f"z_{k}": v for k, v in z.items()})
        out["hqanogan"] = self.combined(z)
        return out

    def anomaly_maps(self, images: torch.Tensor, evidence: Evidence | None = None) -> np.ndarray:
        """The anomaly map of every image [N, H, W] (`config.map_terms`; one term: e.g. the smoothed
        |x - x_hat| averaged over channels, x_hat from `restore`).

        evidence: the images' `Evidence` if already built (`last_evidence` after `score(images)`, or
        `Evidence.with_restoration` for a repaired restoration)."""
        ev = evidence if evidence is not None else Evidence(self, images)
        assert ev.x.shape == images.shape, (ev.x.shape, images.shape)
        return ev.anomaly_map(self.config)

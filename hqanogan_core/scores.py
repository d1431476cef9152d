"""HQ-AnoGAN anomaly scores: reconstruction residuals and the likelihood of W+ codes.

Every term is "how badly the model of normal explains this image", higher = more anomalous:

    image_residual     mean |x - G(E(x))|                      (also a per-pixel map)
    perceptual         LPIPS-style distance(x, G(E(x)))        (also a spatial map)
    feature_residual   mean (f(x) - f(G(E(x))))^2, f = D's features before its last layer
                       (f-AnoGAN's izi_f term)
    latent             sum over W+ slots of the squared Mahalanobis distance of E(x)[l]
                       to a Gaussian fitted per slot on training normals (Ledoit-Wolf)
    latent_l<k>        the same, slot k alone: which scale carries the anomaly
    cycle              mean ||E(G(E(x))) - E(x)||^2 over slots

The combined score standardises each term on held-out *normal* images (no abnormal label
is used anywhere) and sums the z-scores of `DEFAULT_TERMS`. Which terms belong in the
default is a choice the book ablates; the paper's exact formula is not known to us.

The math is pure numpy functions; `HQAnoGANScorer` holds the fitted state. Scoring never
imports training code: it receives already-loaded networks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from .gaussian import fit_gaussian
from .recon import encode_images
from .repair import repair_codes, slot_thresholds

DEFAULT_TERMS = ("image_residual", "perceptual", "feature_residual", "latent")


# ----------------------------------------------------------------------------- pure math


@dataclass
class LatentGaussians:
    """One Gaussian per W+ slot: means [L, D], precisions [L, D, D], Ledoit-Wolf shrinkage [L]."""

    means: np.ndarray
    precisions: np.ndarray
    shrinkage: np.ndarray


def fit_latent_gaussians(ws: np.ndarray) -> LatentGaussians:
    """Fit a shrunk Gaussian to each W+ slot of normal codes ws [N, L, D]."""
    assert ws.ndim == 3, f"expected ws [N, L, D], got {ws.shape}"
    n, num_layers, dim = ws.shape
    if n < 2:
        raise ValueError(f"need at least 2 normal codes to fit a Gaussian, got {n}")
    fits = [fit_gaussian(ws[:, layer]) for layer in range(num_layers)]
    return LatentGaussians(np.stack([g.mean for g in fits]), np.stack([g.precision for g in fits]),
                           np.array([g.shrinkage for g in fits]))


def latent_mahalanobis(ws: np.ndarray, gaussians: LatentGaussians) -> np.ndarray:
    """Squared Mahalanobis distance of each slot of ws [N, L, D] to its Gaussian -> [N, L]."""
    assert ws.ndim == 3 and ws.shape[1:] == gaussians.means.shape, (
        f"ws {ws.shape} does not match the fitted Gaussians {gaussians.means.shape}"
    )
    diff = ws.astype(np.float64) - gaussians.means[None]  # [N, L, D]
    return np.einsum("nld,lde,nle->nl", diff, gaussians.precisions, diff)


def fit_standardisation(terms: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """(mean, std) of each term on held-out normal images."""
    stats = {}
    for name, values in terms.items():
        values = np.asarray(values, dtype=np.float64)
        stats[name] = (float(values.mean()), float(values.std() + 1e-12))
    return stats


def standardise(terms: dict[str, np.ndarray], stats: dict[str, tuple[float, float]]) -> dict[str, np.ndarray]:
    """z-score of every term that has statistics."""
    return {name: (np.asarray(v, np.float64) - stats[name][0]) / stats[name][1] for name, v in terms.items() if name in stats}


def combine(z_terms: dict[str, np.ndarray], names=DEFAULT_TERMS, weights: dict[str, float] | None = None) -> np.ndarray:
    """Weighted sum of standardised terms (weights default to 1: no labels needed)."""
    missing = [n for n in names if n not in z_terms]
    if missing:
        raise ValueError(f"cannot combine: terms {missing} were not computed (have {sorted(z_terms)})")
    weights = weights or {}
    return sum(weights.get(n, 1.0) * z_terms[n] for n in names)


def residual_map(x: np.ndarray, x_rec: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Smoothed absolute residual |x - x_rec| per pixel: [N, H, W] -> [N, H, W]."""
    assert x.shape == x_rec.shape and x.ndim == 3, f"expected two [N, H, W] arrays, got {x.shape}, {x_rec.shape}"
    diff = np.abs(x - x_rec)
    if sigma <= 0:
        return diff
    return ndimage.gaussian_filter(diff, sigma=(0, sigma, sigma))


# ----------------------------------------------------------------------------- the scorer


@torch.no_grad()
def discriminator_features(D, images: torch.Tensor, batch: int = 64, device="cpu") -> torch.Tensor:
    """D's penultimate features of each image on its own. [N, C, H, W] -> [N, F] on the CPU.

    With the minibatch-std group set to 1 every image is its own group, which is exactly what a
    batch of one computes (std 0 plus the layer's epsilon), so batching changes nothing but speed.
    """
    saved = D.mbstd_group
    D.mbstd_group = 1
    try:
        return torch.cat([D(images[i:i + batch].to(device), return_features=True)[1].cpu()
                          for i in range(0, len(images), batch)])
    finally:
        D.mbstd_group = saved


class HQAnoGANScorer:
    """Fitted HQ-AnoGAN scoring state around frozen networks.

    G: generator with `.synthesis(ws)`; E: encoder images [N, C, H, W] in [-1, 1] -> ws [N, L, D];
    D (optional): discriminator with `D(x, return_features=True)`; percep (optional): a
    PerceptualDistance. Terms needing a missing network are skipped.

    D's features are computed as if for one image at a time (see `discriminator_features`): its
    minibatch-std layer would otherwise make an image's features depend on the rest of its batch.
    """

    def __init__(self, G, E, D=None, percep=None, batch: int = 32, device: str | torch.device = "cpu",
                 map_sigma: float = 1.0):
        self.G, self.E, self.D, self.percep = G, E, D, percep
        self.batch, self.device, self.map_sigma = batch, torch.device(device), map_sigma
        self.gaussians: LatentGaussians | None = None
        self.last_restored: torch.Tensor | None = None
        self.stats: dict[str, tuple[float, float]] | None = None
        self.held_out_slots: np.ndarray | None = None   # [N_held, L] per-slot distances of held-out normals
        self.code_bank: np.ndarray | None = None        # [M, L, D] training codes (latent repair "retrieve")
        self.held_out_raw: dict[str, np.ndarray] | None = None   # raw terms of the held-out normals

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ws [N, L, D], restored images [N, C, H, W] clamped to [-1, 1]) for images [N, C, H, W] in [-1, 1]."""
        assert images.ndim == 4, f"expected [N, C, H, W], got {tuple(images.shape)}"
        ws, rec = encode_images(self.G, self.E, images, batch=self.batch)
        return ws, rec.clamp(-1, 1)

    @torch.no_grad()
    def terms(self, images: torch.Tensor) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Raw score terms (each [N]), the W+ codes [N, L, D] and the restorations [N, C, H, W]."""
        ws, rec = self.encode(images)
        x = images.cpu()
        out = {"image_residual": (x - rec).abs().mean(dim=(1, 2, 3)).numpy()}
        if self.percep is not None:
            dists = [self.percep(x[i : i + self.batch].to(self.device), rec[i : i + self.batch].to(self.device)).cpu()
                     for i in range(0, len(x), self.batch)]
            out["perceptual"] = torch.cat(dists).numpy()
        if self.D is not None:
            f_real = discriminator_features(self.D, x, self.batch, self.device)      # [N, F]
            f_rec = discriminator_features(self.D, rec, self.batch, self.device)
            out["feature_residual"] = ((f_real - f_rec) ** 2).mean(dim=1).numpy()
        ws_np = ws.numpy()
        if self.gaussians is not None:
            per_layer = latent_mahalanobis(ws_np, self.gaussians)  # [N, L]
            out["latent"] = per_layer.sum(axis=1)
            for layer in range(per_layer.shape[1]):
                out[f"latent_l{layer}"] = per_layer[:, layer]
        ws_cycle, _ = self.encode(rec)
        out["cycle"] = ((ws_cycle - ws) ** 2).mean(dim=(1, 2)).numpy()
        return out, ws_np, rec.numpy()

    def fit(self, train: torch.Tensor, held_out: torch.Tensor) -> "HQAnoGANScorer":
        """Fit the W+ Gaussians on `train` normals and standardise every term on `held_out` normals."""
        ws, _ = self.encode(train)
        self.gaussians = fit_latent_gaussians(ws.numpy())
        self.code_bank = ws.numpy()
        raw, _, _ = self.terms(held_out)
        self.stats = fit_standardisation(raw)
        self.held_out_slots = np.stack([raw[f"latent_l{k}"] for k in range(ws.shape[1])], axis=1)
        self.held_out_raw = raw
        return self

    def held_out_scores(self, names=DEFAULT_TERMS) -> np.ndarray:
        """The combined score of each held-out normal (what a new image's score is ranked against). [N_held]"""
        z = standardise(self.held_out_raw, self.stats)
        return combine(z, [n for n in names if n in z])

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """What `fit` computed, as (tensors, JSON-able meta) for a safetensors file (`load_state` reverses it)."""
        if self.held_out_slots is None:
            raise RuntimeError("call fit(train, held_out) before state()")
        g = self.gaussians
        arrays = {"means": g.means, "precisions": g.precisions, "shrinkage": g.shrinkage,
                  "held_out_slots": self.held_out_slots, "code_bank": self.code_bank,
                  **{f"held_out.{k}": v for k, v in self.held_out_raw.items()}}
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, {"stats": self.stats}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> "HQAnoGANScorer":
        t = {k: v.numpy() for k, v in tensors.items()}
        self.gaussians = LatentGaussians(t["means"], t["precisions"], t["shrinkage"])
        self.held_out_slots, self.code_bank = t["held_out_slots"], t["code_bank"]
        self.held_out_raw = {k.removeprefix("held_out."): v for k, v in t.items() if k.startswith("held_out.")}
        self.stats = {k: (float(v[0]), float(v[1])) for k, v in meta["stats"].items()}
        return self

    @torch.no_grad()
    def repair(self, images: torch.Tensor, mode: str = "shrink", quantile: float = 0.95,
               target_quantile: float | None = None, k: int = 8, flagged: np.ndarray | None = None,
               ws: torch.Tensor | None = None) -> dict[str, np.ndarray]:
        """Latent repair (see `repair`): unusual W+ slots pulled back to normal, then re-synthesised.

        images [N, C, H, W] in [-1, 1]; ws: their codes if already encoded. Slots are unusual above the
        `quantile` of held-out normals' per-slot distance; "shrink" moves them to the `target_quantile`
        (default: the same quantile). -> {"repaired" [N, C, H, W] in [-1, 1], "flagged" [N, L] bool,
        "d2" [N, L] before, "d2_repaired" [N, L] after, "ws", "ws_repaired" [N, L, D]}"""
        if self.held_out_slots is None:
            raise RuntimeError("call fit(train, held_out) before repair()")
        ws = self.encode(images)[0] if ws is None else ws
        ws_np = ws.cpu().numpy()
        d2 = latent_mahalanobis(ws_np, self.gaussians)
        thresholds = slot_thresholds(self.held_out_slots, quantile)
        target = None if target_quantile is None else slot_thresholds(self.held_out_slots, target_quantile)
        fixed, flagged = repair_codes(ws_np, d2, thresholds, self.gaussians.means.astype(ws_np.dtype), mode=mode,
                                      target=target, bank=self.code_bank, k=k, flagged=flagged)
        fixed_t = torch.from_numpy(fixed)
        repaired = torch.cat([self.G.synthesis(fixed_t[i:i + self.batch].to(self.device), noise_mode="const").cpu()
                              for i in range(0, len(fixed_t), self.batch)]).clamp(-1, 1)
        return {"repaired": repaired.numpy(), "flagged": flagged, "d2": d2,
                "d2_repaired": latent_mahalanobis(fixed, self.gaussians), "ws": ws_np, "ws_repaired": fixed}

    def score(self, images: torch.Tensor, names=DEFAULT_TERMS) -> dict[str, np.ndarray]:
        """Raw terms, their z-scores (`z_<term>`) and the combined `hqanogan` score, each [N].

        The restorations are kept in `last_restored` [N, C, H, W] for `anomaly_maps`."""
        if self.stats is None:
            raise RuntimeError("call fit(train, held_out) before score()")
        raw, _, rec = self.terms(images)
        self.last_restored = torch.from_numpy(rec)
        z = standardise(raw, self.stats)
        usable = [n for n in names if n in z]
        out = dict(raw)
        out.update({f"z_{k}": v for k, v in z.items()})
        out["hqanogan"] = combine(z, usable)
        return out

    def anomaly_maps(self, images: torch.Tensor, restored: torch.Tensor | None = None) -> np.ndarray:
        """Smoothed |x - G(E(x))| per pixel, averaged over channels: [N, H, W].

        restored: G(E(images)) if already computed (e.g. `last_restored` after `score(images)`)."""
        rec = restored if restored is not None else self.encode(images)[1]
        assert rec.shape == images.shape, (rec.shape, images.shape)
        x = images.cpu().numpy().mean(axis=1)
        return residual_map(x, rec.numpy().mean(axis=1), sigma=self.map_sigma)

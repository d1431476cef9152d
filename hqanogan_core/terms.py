"""HQ-AnoGAN's score terms as data: a registry of terms and the one `ScoreConfig` that picks among them.

Every term is "how badly the model of normal explains this image", higher = more anomalous, one number
per image. For an image x with code w = E(x) and restoration x_hat = G(w):

    image_residual      |x - x_hat| per pixel, aggregated over the image           map term
    residual_added      max(x - x_hat, 0): only where the image is brighter (denser) than its restoration, the
                        side every finding that adds opacity lies on (nodule, consolidation, effusion, a
                        larger heart); blind to a lucency such as a pneumothorax by design   map term
    residual_encoder    |x - G(E(x))|, the encoder's one-pass restoration even when x_hat is refined  map term
    perceptual          LPIPS-style distance(x, x_hat); its spatial map when aggregated   map term
    feature_residual    mean (f(x) - f(x_hat))^2, f = D's features before its last layer (f-AnoGAN's izi_f)
    discriminator_blocks  the same at the output of every D block, each divided by its mean energy
                        mean f_b(x)^2 and averaged over blocks: residuals seen at several depths
    latent              sum over W+ slots of the squared Mahalanobis distance of w[l] to a Gaussian fitted
                        per slot on training normals (Ledoit-Wolf)
    latent_coarse / latent_middle / latent_fine   the same, over one group of slots (`style_split`)
    latent_l<k>         one slot (diagnostics; always reported with the latent terms: they cost nothing)
    cycle               mean ||E(x_hat) - w||^2 over slots
    repair_residual     |x - G(repaired code)| aggregated: the residual left once the unusual slots of w are
                        pulled back to normal (`repair`, shrink at the 0.99 quantile; the other slots are the
                        restoration's) - a map term
    anomaly_map         the anomaly map itself (below), aggregated - a map term
    detection_map       the same sum over `ScoreConfig.detect_terms` (default: the anomaly map's terms),
                        aggregated - a map term: the sum that best tells abnormal images from normal ones
                        need not be the one that best outlines the finding

A *map term* is a per-pixel map made one number by `ScoreConfig.aggregation`: the mean over the image
(the global residual), the mean of its highest `top_percent` % pixels, or its maximum, each after the
Gaussian smoothing `map_sigma`. With "mean" the unsmoothed mean is used (smoothing barely changes a mean)
and `perceptual` is the LPIPS distance itself.

The **anomaly map** (what localises the finding) is built from the map terms `ScoreConfig.map_terms`: one
term gives its smoothed map as it is; several are each divided by their `map_scales` (the pixel std of the
held-out normals' smoothed map of that term, fitted by the scorer) and summed, so every map counts in the
same unit, "standard deviations of a normal image's pixel". The *detection map* is the same construction
over `ScoreConfig.detect_terms`, at the same smoothing and in the same units; only its aggregate enters a
score (the `detection_map` term), it is never shown.

`Evidence` holds one batch of images and computes each intermediate (codes, restorations, maps, D
features, slot distances) at most once, only when a requested term needs it; `compute_terms` asks it for
the requested terms only. Pure numpy math at the top; nothing here imports training code.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy import ndimage

from .gaussian import fit_gaussian
from .nets.psp import style_split
from .project import PIXEL_LOSSES

AGGREGATIONS = ("mean", "topk", "max")
COMBINERS = ("sum", "max")


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


def residual_map(x: np.ndarray, x_rec: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Smoothed absolute residual |x - x_rec| per pixel: [N, H, W] -> [N, H, W]."""
    assert x.shape == x_rec.shape and x.ndim == 3, f"expected two [N, H, W] arrays, got {x.shape}, {x_rec.shape}"
    return smooth(np.abs(x - x_rec), sigma)


def smooth(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of each map [N, H, W] (sigma in pixels; 0 = unchanged)."""
    assert maps.ndim == 3, f"expected maps [N, H, W], got {maps.shape}"
    return maps if sigma <= 0 else ndimage.gaussian_filter(maps, sigma=(0, sigma, sigma))


def aggregate(maps: np.ndarray, how: str = "mean", top_percent: float = 1.0) -> np.ndarray:
    """One number per map [N, H, W] -> [N]: the mean, the mean of the highest `top_percent` % pixels, or the max."""
    assert maps.ndim == 3, f"expected maps [N, H, W], got {maps.shape}"
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    if how == "mean":
        return flat.mean(axis=1)
    if how == "max":
        return flat.max(axis=1)
    if how == "topk":
        k = max(1, int(round(flat.shape[1] * top_percent / 100)))
        return np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:].mean(axis=1)
    raise ValueError(f"unknown aggregation {how!r}: use one of {AGGREGATIONS}")


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


@torch.no_grad()
def block_residuals(D, x: torch.Tensor, x_rec: torch.Tensor, batch: int = 64, device="cpu") -> np.ndarray:
    """Per D block b: mean (f_b(x) - f_b(x_rec))^2 / mean f_b(x)^2, for images [N, C, H, W] -> [N, B].

    The blocks come before the minibatch-std layer, so an image's value never depends on its batch."""
    out = []
    for i in range(0, len(x), batch):
        a, b = x[i:i + batch].to(device), x_rec[i:i + batch].to(device)
        rows = []
        for block in D.blocks:
            a, b = block(a), block(b)
            rows.append(((a - b).square().mean(dim=(1, 2, 3)) / a.square().mean(dim=(1, 2, 3)).clamp_min(1e-12)).cpu())
        out.append(torch.stack(rows, dim=1))
    return torch.cat(out).numpy()


# ----------------------------------------------------------------------------- the configuration

DEFAULT_TERMS = ("image_residual", "perceptual", "feature_residual", "latent")


@dataclass
class ScoreConfig:
    """Which terms make the HQ-AnoGAN score and how. The defaults work on a CPU.

    terms               the terms whose z-scores are combined (only these, and what they need, are computed)
    weights             term -> weight of its z-score (a missing term weighs 1): no labels needed for 1s
    combine             "sum" of the weighted z-scores, or their "max" (an image is as unusual as its most
                        unusual term)
    aggregation         map terms: "mean", "topk" (mean of the top `top_percent` % pixels) or "max"
    map_terms           the map terms the anomaly map is made of (one: its map; several: each divided by
                        its held-out normals' pixel std, summed)
    detect_terms        the map terms the detection map (the `detection_map` term) is made of, the same way;
                        empty: the anomaly map's `map_terms`
    top_percent         for "topk"
    map_sigma           Gaussian smoothing (px) of the anomaly map and of every aggregated map
    held_out_fraction   training normals held out to standardise the terms (the rest fit the Gaussians)
    refine_steps        0: the restoration is G(E(x)). > 0: G(w') with w' from that many steps of pixel-loss
                        optimisation in W+ started at E(x) (`project.refine`); the latent terms still measure
                        E(x), the code the encoder chose before any fitting
    refine_loss         its pixel loss: "mse", or "l1", robust to the large residuals of a finding
                        (`project.pixel_loss`)
    refine_lr           its learning rate
    refine_prior        weight of the normal-latent prior (per-slot Mahalanobis) in that optimisation
    """

    terms: tuple[str, ...] = DEFAULT_TERMS
    weights: dict[str, float] = field(default_factory=dict)
    combine: str = "sum"
    aggregation: str = "mean"
    top_percent: float = 1.0
    map_sigma: float = 1.0
    held_out_fraction: float = 0.1
    refine_steps: int = 0
    refine_lr: float = 0.01
    refine_prior: float = 0.0
    refine_loss: str = "mse"
    map_terms: tuple[str, ...] = ("image_residual",)
    detect_terms: tuple[str, ...] = ()

    def __post_init__(self):
        self.terms = tuple(self.terms)
        self.map_terms = tuple(self.map_terms)
        self.detect_terms = tuple(self.detect_terms)
        for name, maps in (("map_terms", self.map_terms), ("detect_terms", self.detection_terms)):
            if not maps or any(t not in MAP_TERMS for t in maps) or len(set(maps)) < len(maps):
                raise ValueError(f"{name} must be distinct map terms from {list(MAP_TERMS)}, got {list(maps)}")
        unknown = [t for t in self.terms if not is_term(t)]
        if unknown or not self.terms:
            raise ValueError(f"unknown score terms {unknown}: known are {sorted(TERMS)} and latent_l<k>"
                             if unknown else "ScoreConfig needs at least one term")
        stray = sorted(set(self.weights) - set(self.terms))
        if stray:
            raise ValueError(f"weights given for terms {stray} that are not in terms {list(self.terms)}")
        if self.combine not in COMBINERS:
            raise ValueError(f"unknown combine {self.combine!r}: use one of {COMBINERS}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregation!r}: use one of {AGGREGATIONS}")
        if not 0 < self.top_percent <= 100:
            raise ValueError(f"top_percent must be in (0, 100], got {self.top_percent}")
        if self.map_sigma < 0:
            raise ValueError(f"map_sigma must be >= 0, got {self.map_sigma}")
        if not 0 < self.held_out_fraction < 1:
            raise ValueError(f"held_out_fraction must be in (0, 1), got {self.held_out_fraction}")
        if self.refine_loss not in PIXEL_LOSSES:
            raise ValueError(f"unknown refine_loss {self.refine_loss!r}: use one of {PIXEL_LOSSES}")
        if self.refine_steps < 0 or self.refine_lr <= 0 or self.refine_prior < 0:
            raise ValueError(f"refine_steps must be >= 0, refine_lr > 0 and refine_prior >= 0, got "
                             f"{self.refine_steps}, {self.refine_lr}, {self.refine_prior}")

    @property
    def restoration(self) -> str:
        """The restoration as a short label: "0" for G(E(x)), "<steps>" for an MSE refinement, "l1-<steps>"
        for an L1 one (`restoration_settings` reverses it; the score study keys its restorations by it)."""
        if self.refine_steps == 0 or self.refine_loss == "mse":
            return str(self.refine_steps)
        return f"{self.refine_loss}-{self.refine_steps}"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["terms"] = list(self.terms)
        d["map_terms"] = list(self.map_terms)
        d["detect_terms"] = list(self.detect_terms)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ScoreConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise ValueError(f"unknown ScoreConfig fields {extra}: known are {sorted(known)}")
        return cls(**d)

    def replace(self, **changes) -> "ScoreConfig":
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """One sentence: how the score is made (for reports and the book)."""
        parts = [f"{self.weights[t]:g} x z({t})" if t in self.weights else f"z({t})" for t in self.terms]
        rule = ("the sum of " if self.combine == "sum" else "the largest of ") + ", ".join(parts)
        if any(TERMS[t].is_map for t in self.terms if t in TERMS):
            if self.aggregation == "mean":
                rule += "; maps averaged over the image"
            else:
                how = "maximum" if self.aggregation == "max" else f"mean of the top {self.top_percent:g} % pixels"
                rule += f"; maps smoothed (sigma {self.map_sigma:g} px) and made one number by their {how}"
        if "detection_map" in self.terms:
            rule += f"; the detection map is {self.describe_map(detection=True)}"
        if self.refine_steps:
            loss = "pixel-MSE" if self.refine_loss == "mse" else f"pixel-{self.refine_loss.upper()}"
            rule += (f"; restorations refined by {self.refine_steps} steps of {loss} optimisation in W+ from E(x)"
                     + (f" under the normal-latent prior (weight {self.refine_prior:g})" if self.refine_prior else ""))
        return rule

    @property
    def detection_terms(self) -> tuple[str, ...]:
        """The map terms the detection map sums: `detect_terms`, or the anomaly map's when that is empty."""
        return self.detect_terms or self.map_terms

    @property
    def scaled_maps(self) -> tuple[str, ...]:
        """The map terms whose held-out pixel std the scorer fits (`fit_map_scales`): the anomaly map's, and
        the detection map's when the score uses it."""
        detection = self.detection_terms if "detection_map" in self.terms else ()
        return tuple(dict.fromkeys([*self.map_terms, *detection]))

    def describe_map(self, detection: bool = False) -> str:
        """One phrase: what the anomaly map (with `detection`: the detection map) is."""
        maps = [TERMS[t].phrase for t in (self.detection_terms if detection else self.map_terms)]
        if len(maps) == 1:
            return f"{maps[0]} smoothed by sigma {self.map_sigma:g} px"
        return (f"the sum of {', '.join(maps[:-1])} and {maps[-1]}, each smoothed by sigma {self.map_sigma:g} px "
                "and divided by its pixel std on held-out normals")


def restoration_settings(label: str) -> dict:
    """The ScoreConfig fields of a restoration label (`ScoreConfig.restoration`): "20" -> 20 steps of MSE,
    "l1-40" -> 40 steps of L1."""
    loss, _, steps = str(label).rpartition("-")
    if not steps.isdigit() or loss not in ("", *PIXEL_LOSSES):
        raise ValueError(f"bad restoration label {label!r}: use '<steps>' or '<loss>-<steps>', loss in {PIXEL_LOSSES}")
    return {"refine_steps": int(steps), "refine_loss": loss or "mse"}


# ----------------------------------------------------------------------------- what terms are computed from


class Evidence:
    """One batch of images [N, C, H, W] in [-1, 1] and everything the terms are computed from, each piece
    computed at most once and only when asked for.

    `nets` is the scorer: it provides restore(images) -> (encoder codes, restorations), encode, G, E, D,
    percep, batch, device, repair and the fitted `gaussians` (None before fitting)."""

    def __init__(self, nets, images: torch.Tensor, ws: torch.Tensor | None = None, rec: torch.Tensor | None = None):
        assert images.ndim == 4, f"expected images [N, C, H, W], got {tuple(images.shape)}"
        self.nets, self.x = nets, images.cpu()
        if ws is None or rec is None:
            ws, rec = nets.restore(images)
        self.ws, self.rec = ws.cpu(), rec.cpu()        # [N, L, D], [N, C, H, W]
        self.refined = nets.config.refine_steps > 0     # then rec is G(w'), not G(E(x))
        self._cache: dict = {}              # what depends on the restoration rec
        self._code_cache: dict = {}         # what depends only on x and the encoder's codes ws (kept by a repair)

    def _once(self, key, compute: Callable, of_code: bool = False):
        cache = self._code_cache if of_code else self._cache
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    def residual(self) -> np.ndarray:
        """|x - x_hat| averaged over channels, unsmoothed. [N, H, W]"""
        return self._once("residual", lambda: (self.x - self.rec).abs().mean(dim=1).numpy())

    def added(self) -> np.ndarray:
        """max(x - x_hat, 0) of the channel mean, unsmoothed [N, H, W]: where x is brighter than x_hat."""
        return self._once("added", lambda: (self.x - self.rec).mean(dim=1).clamp_min(0).numpy())

    def encoder_residual(self) -> np.ndarray:
        """|x - G(E(x))| averaged over channels, unsmoothed [N, H, W] (`residual` when nothing is refined)."""
        if not self.refined:
            return self.residual()
        return self._once("encoder_residual", lambda: (self.x - self.encoder_rec()).abs().mean(dim=1).numpy(), True)

    def map(self, name: str, sigma: float) -> np.ndarray:
        """The smoothed per-pixel map of map term `name` [N, H, W]."""
        return self._once(("map", name, sigma), lambda: smooth(TERMS[name].map(self), sigma),
                          self.refined and name in ENCODER_MAPS)

    def with_restoration(self, rec: torch.Tensor) -> "Evidence":
        """The same images and codes with another restoration [N, C, H, W] (a repair): what depends only on x
        and E(x) (slot distances; with a refined restoration also G(E(x)) and the maps against it) is kept."""
        other = Evidence(self.nets, self.x, self.ws, rec)
        other._code_cache = self._code_cache
        return other

    def encoder_rec(self) -> torch.Tensor:
        """G(E(x)) [N, C, H, W], the encoder's one-pass restoration, also when `rec` is a refined one."""
        if not self.refined:
            return self.rec
        return self._once("encoder_rec", lambda: self.nets.synthesise(self.ws), True)

    def perceptual(self, spatial: bool, encoder: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """(distance [N], map [N, H, W] or None) between x and `rec` (or, with `encoder`, G(E(x))): the map
        is computed only when asked for."""
        which = "encoder" if encoder and self.refined else "rec"
        of_code = which == "encoder"
        if ("perceptual", which, True) in (self._code_cache if of_code else self._cache) or spatial:
            return self._once(("perceptual", which, True), lambda: self._perceptual(True, which), of_code)
        return self._once(("perceptual", which, False), lambda: self._perceptual(False, which), of_code)

    def _perceptual(self, spatial: bool, which: str):
        percep, b, dev = self.nets.percep, self.nets.batch, self.nets.device
        rec = self.encoder_rec() if which == "encoder" else self.rec
        dists, maps = [], []
        for i in range(0, len(self.x), b):
            out = percep(self.x[i:i + b].to(dev), rec[i:i + b].to(dev), spatial=spatial)
            dist, dmap = out if spatial else (out, None)
            dists.append(dist.cpu())
            if spatial:
                maps.append(dmap.cpu()[:, 0])
        return torch.cat(dists).numpy(), (torch.cat(maps).numpy() if spatial else None)

    def slot_distances(self) -> np.ndarray:
        """Squared Mahalanobis distance of every W+ slot to its normal Gaussian. [N, L]"""
        return self._once("slots", lambda: latent_mahalanobis(self.ws.numpy(), self.nets.gaussians), True)

    def features(self) -> tuple[torch.Tensor, torch.Tensor]:
        D, b, dev = self.nets.D, self.nets.batch, self.nets.device
        return self._once("features", lambda: (discriminator_features(D, self.x, b, dev),
                                               discriminator_features(D, self.rec, b, dev)))

    def blocks(self) -> np.ndarray:
        return self._once("blocks", lambda: block_residuals(self.nets.D, self.x, self.rec, self.nets.batch,
                                                            self.nets.device))

    def cycle_codes(self) -> torch.Tensor:
        return self._once("cycle", lambda: self.nets.encode(self.rec)[0].cpu())

    def repaired(self) -> np.ndarray:
        """G(repair(w)) averaged over channels, [N, H, W] (shrink at the 0.99 quantile)."""
        return self._once("repaired",
                          lambda: self.nets.repair(self.x, quantile=0.99, ws=self.ws)["repaired"].mean(axis=1))

    def anomaly_map(self, cfg: ScoreConfig, detection: bool = False) -> np.ndarray:
        """The anomaly map under `cfg` [N, H, W]: `cfg.map_terms`' smoothed maps, several ones each divided by
        the scorer's fitted `map_scales` and summed (see the module docstring). With `detection`: the
        detection map, the same over `cfg.detection_terms`."""
        names = cfg.detection_terms if detection else cfg.map_terms
        if len(names) == 1:
            return self.map(names[0], cfg.map_sigma)
        scales = self.nets.map_scales
        missing = [n for n in names if scales is None or n not in scales]
        if missing:
            which = "detection" if detection else "anomaly"
            raise RuntimeError(f"the {which} map of {list(names)} needs the map scales of {missing}: fit the scorer "
                               "(held-out normals) first")
        return sum(self.map(n, cfg.map_sigma) / scales[n] for n in names)


def fit_map_scales(ev: Evidence, cfg: ScoreConfig) -> dict[str, float]:
    """{map term: pixel std of its smoothed map} over held-out normal images `ev`, for the terms of the
    anomaly map and of the detection map (`cfg.scaled_maps`)."""
    return {n: float(ev.map(n, cfg.map_sigma).std() + 1e-12) for n in cfg.scaled_maps}


# ----------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Term:
    compute: Callable[[Evidence, ScoreConfig], np.ndarray]     # -> [N]
    needs: tuple[str, ...]                                      # fitted state / networks: gaussians, percep, D
    is_map: bool                                                # aggregated by ScoreConfig.aggregation
    doc: str
    map: Callable[[Evidence], np.ndarray] | None = None         # its unsmoothed per-pixel map [N, H, W]
    phrase: str = ""                                            # what the map is, for describe_map


def _aggregated(name: str, mean: Callable[[Evidence], np.ndarray] | None = None
                ) -> Callable[[Evidence, ScoreConfig], np.ndarray]:
    """A map term's value: its smoothed map aggregated, or with "mean" `mean(ev)` (default: the mean of
    the unsmoothed map)."""
    def compute(ev: Evidence, cfg: ScoreConfig) -> np.ndarray:
        if cfg.aggregation == "mean":
            value = mean(ev) if mean is not None else TERMS[name].map(ev).mean(axis=(1, 2))
            return np.asarray(value, dtype=np.float64)
        return aggregate(ev.map(name, cfg.map_sigma), cfg.aggregation, cfg.top_percent)
    return compute


def _feature_residual(ev: Evidence, cfg: ScoreConfig) -> np.ndarray:
    f_real, f_rec = ev.features()
    return ((f_real - f_rec) ** 2).mean(dim=1).double().numpy()


def _slot_group(group: int) -> Callable[[Evidence, ScoreConfig], np.ndarray]:
    def compute(ev: Evidence, cfg: ScoreConfig) -> np.ndarray:
        d2 = ev.slot_distances()
        sizes = style_split(d2.shape[1])
        start = sum(sizes[:group])
        return d2[:, start:start + sizes[group]].sum(axis=1)        # 0 for a group a small generator lacks
    return compute


def _cycle(ev: Evidence, cfg: ScoreConfig) -> np.ndarray:
    return ((ev.cycle_codes() - ev.ws) ** 2).mean(dim=(1, 2)).double().numpy()


def _anomaly_map(ev: Evidence, cfg: ScoreConfig) -> np.ndarray:
    return aggregate(ev.anomaly_map(cfg), cfg.aggregation, cfg.top_percent)


def _detection_map(ev: Evidence, cfg: ScoreConfig) -> np.ndarray:
    return aggregate(ev.anomaly_map(cfg, detection=True), cfg.aggregation, cfg.top_percent)


TERMS: dict[str, Term] = {
    "image_residual": Term(_aggregated("image_residual"), (), True, "|x - x_hat| aggregated over the image",
                           map=lambda ev: ev.residual(), phrase="|x - x_hat|"),
    "residual_added": Term(_aggregated("residual_added"), (), True, "x - x_hat where positive (the image denser "
                           "than its restoration: added opacity), aggregated over the image",
                           map=lambda ev: ev.added(), phrase="max(x - x_hat, 0)"),
    "residual_encoder": Term(_aggregated("residual_encoder"), (), True, "image_residual against the encoder's "
                             "one-pass G(E(x)) even when the restoration is refined",
                             map=lambda ev: ev.encoder_residual(), phrase="|x - G(E(x))|"),
    "perceptual": Term(_aggregated("perceptual", lambda ev: ev.perceptual(spatial=False)[0]), ("percep",), True,
                       "LPIPS-style distance between x and its restoration (or its map, aggregated)",
                       map=lambda ev: ev.perceptual(spatial=True)[1], phrase="the perceptual map of x against x_hat"),
    "perceptual_encoder": Term(_aggregated("perceptual_encoder", lambda ev: ev.perceptual(False, encoder=True)[0]),
                               ("percep",), True, "perceptual, against the encoder's one-pass G(E(x)) even when "
                               "the restoration is refined (refinement also fits some findings' texture)",
                               map=lambda ev: ev.perceptual(spatial=True, encoder=True)[1],
                               phrase="the perceptual map of x against G(E(x))"),
    "feature_residual": Term(_feature_residual, ("D",), False, "D's penultimate-feature residual (f-AnoGAN izi_f)"),
    "discriminator_blocks": Term(lambda ev, cfg: ev.blocks().mean(axis=1).astype(np.float64), ("D",), False,
                                 "D's feature residual after every block, each relative to its energy, averaged"),
    "latent": Term(lambda ev, cfg: ev.slot_distances().sum(axis=1), ("gaussians",), False,
                   "sum over W+ slots of the Mahalanobis distance^2 to the normal Gaussian"),
    "latent_coarse": Term(_slot_group(0), ("gaussians",), False, "latent, coarse slots only"),
    "latent_middle": Term(_slot_group(1), ("gaussians",), False, "latent, middle slots only"),
    "latent_fine": Term(_slot_group(2), ("gaussians",), False, "latent, fine slots only"),
    "cycle": Term(_cycle, (), False, "mean ||E(G(E(x))) - E(x)||^2"),
    "repair_residual": Term(_aggregated("repair_residual"), ("gaussians",), True,
                            "|x - G(repaired code)| aggregated (unusual slots of E(x) pulled back first)",
                            map=lambda ev: np.abs(ev.x.numpy().mean(axis=1) - ev.repaired()),
                            phrase="|x - G(repaired code)|"),
    "anomaly_map": Term(_anomaly_map, ("map_scales",), True,
                        "the anomaly map (`map_terms`, each in held-out normals' pixel std, summed) aggregated"),
    "detection_map": Term(_detection_map, ("map_scales",), True,
                          "the detection map (`detect_terms`, summed like the anomaly map's) aggregated"),
}
MAP_TERMS = tuple(n for n, t in TERMS.items() if t.map is not None)     # terms an anomaly map can be made of
ENCODER_MAPS = ("residual_encoder", "perceptual_encoder")               # maps against G(E(x)) alone


def is_term(name: str) -> bool:
    """A registered term, or latent_l<k> (one W+ slot)."""
    return name in TERMS or slot_of(name) is not None


def slot_of(name: str) -> int | None:
    """k for the one-slot term latent_l<k>, else None."""
    digits = name[len("latent_l"):]
    return int(digits) if name.startswith("latent_l") and digits.isdigit() else None


def term(name: str) -> Term:
    """The registry entry of `name`; latent_l<k> is the Mahalanobis distance^2 of slot k alone."""
    if name in TERMS:
        return TERMS[name]
    if is_term(name):
        k = slot_of(name)
        return Term(lambda ev, cfg: ev.slot_distances()[:, k], ("gaussians",), False, f"latent, slot {k} only")
    raise KeyError(f"unknown score term {name!r}: known are {sorted(TERMS)} and latent_l<k>")


def needs(names) -> set[str]:
    """The fitted state and networks the terms `names` need."""
    return {n for name in names for n in term(name).needs}


def compute_terms(ev: Evidence, names, cfg: ScoreConfig) -> dict[str, np.ndarray]:
    """{name: [N]} for exactly the terms `names` (float64), computed from `ev` under `cfg`'s settings."""
    out = {}
    for name in names:
        value = np.asarray(term(name).compute(ev, cfg), dtype=np.float64)
        assert value.shape == (len(ev.x),), f"term {name} gave {value.shape} for {len(ev.x)} images"
        out[name] = value
    return out

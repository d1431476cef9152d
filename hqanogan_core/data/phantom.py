"""A procedural PA chest-radiograph phantom with pixel-exact anomaly masks.

No real radiograph can be downloaded where the book is built, so the book and the
benchmark run on this phantom. It is drawn the way a radiograph forms: every
structure adds (bone, soft tissue, fluid) or removes (air) *attenuation* along the
beam, and a detector curve (window, gamma), blur and quantum noise turn the
attenuation map into an image. Overlaps then behave like a film: a rib over the
lung shows, a rib over the heart barely does.

Coordinates. All anatomy lives in *patient* coordinates (u, v): u runs from the
image's left edge (-1, the patient's right side) to its right edge (+1), v from the
top (-1) to the bottom (+1). A per-patient similarity transform (rotation, shift,
zoom) maps them onto the image grid, so anatomy and lesions move together.

    patient rng  = default_rng([seed, stream, index])         -> the normal anatomy
    lesion rng   = default_rng([seed, stream, index, 1 + k])  -> anomaly k's placement

so render_case(s, i, None) and render_case(s, i, "nodule") show the same patient,
and severity only scales the lesion (severity 0 = exactly the normal image).

Rendering happens at `supersample` times the output size and is block-averaged
down (anti-aliasing); masks are the output pixels at least MASK_COVERAGE (30 %)
covered by the lesion's support (thin dense films change a pixel well before they
cover half of it).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage

ANOMALY_TYPES: tuple[str, ...] = ("nodule", "consolidation", "effusion", "cardiomegaly", "pneumothorax")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
_STREAM = {None: 0, "train": 1, "valid": 2, "test": 3}  # independent seed stream per split
PHANTOM_VERSION = "1"
MASK_COVERAGE = 0.3  # an output pixel is abnormal when the lesion covers >= 30 % of it


@dataclass(frozen=True)
class PhantomConfig:
    """Resolution, default lesion strength and the ranges of normal variation.

    Ranges are (low, high) of a uniform draw; `variation` scales every range about
    its midpoint (0 = average geometry and exposure, 1 = the benchmark default).
    """

    size: int = 64                                # output resolution (>= 16)
    severity: float = 1.0                         # default anomaly strength
    supersample: int = 2                          # internal render factor (anti-aliasing)
    variation: float = 1.0                        # scales all normal-variation ranges
    rotation_deg: tuple[float, float] = (-5.0, 5.0)
    shift: tuple[float, float] = (-0.07, 0.07)    # in half-widths of the image
    zoom: tuple[float, float] = (0.86, 1.04)      # patient size in the field of view
    habitus: tuple[float, float] = (0.84, 1.12)   # body / thorax width
    inspiration: tuple[float, float] = (-1.0, 1.0)  # +1 deep breath (low domes, tall lungs), -1 shallow
    ctr: tuple[float, float] = (0.38, 0.50)       # cardiothoracic ratio of normal hearts
    window_low: tuple[float, float] = (-0.25, 0.10)  # attenuation shown as black
    window_high: tuple[float, float] = (1.15, 1.75)  # attenuation shown as white
    gamma: tuple[float, float] = (0.65, 1.45)
    noise: tuple[float, float] = (0.004, 0.035)   # quantum-noise std (log-uniform), output scale
    blur: tuple[float, float] = (0.25, 1.1)       # detector blur sigma in output pixels

    def __post_init__(self):
        if int(self.size) < 16:
            raise ValueError(f"PhantomConfig.size must be >= 16, got {self.size}")
        if int(self.supersample) < 1:
            raise ValueError("PhantomConfig.supersample must be >= 1")


# --------------------------------------------------------------------------- shapes
# Every shape takes arrays u, v of any (matching or broadcastable) shape, so the same
# function draws on the image grid and tests single points (lesion placement).


def smoothstep(t):
    """0 for t <= 0, 1 for t >= 1, cubic in between."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def soft(d, width):
    """Soft inside-indicator of a signed distance d (> 0 inside), edge `width` wide."""
    return smoothstep(d / width + 0.5)


def ellipse_distance(u, v, cu, cv, au, av, p: float = 2.0):
    """Approximate signed distance to the super-ellipse |du/au|^p + |dv/av|^2 = 1 (> 0 inside).

    First-order estimate (1 - f) / |grad f|: exact on the boundary, monotone inside,
    good enough for soft edges and for "distance from the chest wall".
    """
    du, dv = (u - cu) / au, (v - cv) / av
    adu = np.abs(du) + 1e-6
    f = adu**p + dv * dv
    gu = p * adu ** (p - 1.0) / au
    gv = 2.0 * dv / av
    return np.minimum((1.0 - f) / (np.sqrt(gu * gu + gv * gv) + 1e-3), 1.0)


def rotated_ellipse_distance(u, v, cu, cv, a, b, angle):
    """Signed distance to an ellipse with semi-axes a (along `angle`) and b."""
    c, s = np.cos(angle), np.sin(angle)
    du, dv = u - cu, v - cv
    return ellipse_distance(c * du + s * dv, -s * du + c * dv, 0.0, 0.0, a, b)


def segment_distance(u, v, p0, p1):
    """Euclidean distance to the segment p0-p1."""
    (u0, v0), (u1, v1) = p0, p1
    du, dv = u1 - u0, v1 - v0
    t = np.clip(((u - u0) * du + (v - v0) * dv) / (du * du + dv * dv), 0.0, 1.0)
    return np.hypot(u - u0 - t * du, v - v0 - t * dv)


def ellipse_half_extents(a, b, angle):
    """Half-width and half-height of the bounding box of a rotated ellipse."""
    c, s = np.cos(angle), np.sin(angle)
    return float(np.hypot(a * c, b * s)), float(np.hypot(a * s, b * c))


# --------------------------------------------------------------------------- patient


class Patient(NamedTuple):
    """All random numbers of one normal patient (no arrays of the output size)."""

    theta: float          # in-plane rotation (radians)
    shift: tuple          # (x, y) image offset
    zoom: float
    habitus: float        # width factor
    dome: tuple           # (right top v, left top v, curvature, lateral plunge) of the diaphragm
    lungs: tuple          # ((cu, cv, au, av) right, (...) left) outer lung super-ellipses
    heart: tuple          # (cu, cv, a, b, angle)
    thorax_width: float   # inner rib-cage width at its widest
    soft_tissue: float    # body thickness factor
    air: float            # lung air depth
    ribs: tuple           # (first-rib v, span, curvature, width fraction, left-right offset)
    clavicle: tuple       # (medial v, slope, right offset, left offset)
    spine: tuple          # (vertebra period, phase)
    breast: float         # breast-shadow density (0 = none)
    bubble: float         # gastric-bubble size (0 = none)
    fat_pad: tuple        # (u, radius) of a pericardial fat pad at the left cardiophrenic angle
    vessels: np.ndarray   # [S, 6] segments (u0, v0, u1, v1, weight, generation)
    texture: np.ndarray   # [24, 24] white noise -> smooth lung texture
    window: tuple         # (low, high) attenuation window
    gamma: float
    noise: float
    blur: float           # output pixels
    noise_seed: int


def _uniform(rng, bounds, variation):
    """Uniform draw in `bounds`, range scaled by `variation` about its midpoint."""
    lo, hi = bounds
    mid = 0.5 * (lo + hi)
    return float(mid + (rng.random() - 0.5) * (hi - lo) * variation)


def vessel_tree(rng, hilum, side, habitus, generations: int = 5) -> np.ndarray:
    """Pulmonary vessels: primary branches fanning out of the hilum, bifurcating.

    Returns [S, 6] segments (u0, v0, u1, v1, weight, generation); weight falls with
    each generation, so markings fade toward the periphery.
    #        \\  |  /
    #   hilum o--+--      (side = -1 right lung: branches point to the image left)
    #        /  |  \\
    """
    angles = np.radians([-95, -72, -48, -20, 8, 35, 62, 88]) + rng.normal(0.0, 0.1, 8)
    lengths = rng.uniform(0.15, 0.21, 8)
    # primaries leave along a short hilar arc (upper branches higher), not one point
    starts = np.asarray(hilum, float) + np.stack([side * 0.03 * np.cos(angles), 0.07 * np.sin(angles)], axis=1)
    weights = np.ones(8)
    segments = []
    for g in range(generations):
        direction = np.stack([side * np.cos(angles) * habitus, np.sin(angles)], axis=1)
        ends = starts + lengths[:, None] * direction
        segments.append(np.column_stack([starts, ends, weights, np.full(len(starts), g)]))
        spread = rng.uniform(0.22, 0.45, len(starts))
        angles = np.concatenate([angles - spread, angles + spread * rng.uniform(0.6, 1.0, len(starts))])
        angles = angles + rng.normal(0.0, 0.08, len(angles))
        starts = np.concatenate([ends, ends])
        lengths = np.concatenate([lengths, lengths]) * rng.uniform(0.68, 0.88, len(angles))
        weights = np.concatenate([weights, weights]) * 0.7
    return np.concatenate(segments).astype(np.float32)


def sample_patient(rng: np.random.Generator, config: PhantomConfig) -> Patient:
    """Draw one normal patient. The number and order of draws never depend on size."""
    var = config.variation
    uni = lambda bounds: _uniform(rng, bounds, var)  # noqa: E731
    theta = np.radians(uni(config.rotation_deg))
    shift = (uni(config.shift), uni((config.shift[0] - 0.01, config.shift[1] + 0.03)))
    zoom = uni(config.zoom)
    h = uni(config.habitus)
    insp = uni(config.inspiration)

    # diaphragm: right dome higher (liver), both move with inspiration
    dome_r = 0.36 + 0.11 * insp
    dome_l = dome_r + uni((-0.02, 0.10))
    dome_shape = (uni((0.09, 0.18)), uni((0.10, 0.24)))  # dome curvature, lateral plunge
    # lungs: outer super-ellipse (lateral wall and apex); the bottom is cut by the dome
    lung_r = (-0.43 * h, 0.20 + 0.04 * insp, 0.37 * h * uni((0.95, 1.04)), 0.98 + 0.04 * insp)
    lung_l = (0.43 * h, 0.22 + 0.04 * insp, 0.355 * h * uni((0.95, 1.04)), 1.0 + 0.04 * insp)
    thorax_width = (lung_r[2] - lung_r[0]) + (lung_l[0] + lung_l[2])

    # heart: rotated ellipse, 1/3 right of the midline, sitting on the left dome
    ctr = uni(config.ctr)
    angle = np.radians(uni((24.0, 48.0)))
    aspect = uni((1.1, 1.5))
    hx1, hy1 = ellipse_half_extents(aspect, 1.0, angle)
    b = 0.5 * ctr * thorax_width / hx1
    a = aspect * b
    hx, hy = hx1 * b, hy1 * b
    cu = hx / 3.0 + uni((-0.05, 0.05))
    cv = 0.5 * (dome_r + dome_l) + 0.03 - 0.55 * hy  # lower part hidden below the domes
    heart = (cu, cv, a, b, angle)

    ribs = (uni((-0.86, -0.78)), uni((1.30, 1.45)) + 0.05 * insp, uni((0.85, 1.15)), uni((0.36, 0.46)), uni((-0.03, 0.03)))
    clavicle = (uni((-0.62, -0.54)), uni((0.22, 0.32)), uni((-0.03, 0.03)), uni((-0.03, 0.03)))
    spine = (uni((0.085, 0.10)), rng.random())
    breast = uni((0.04, 0.14)) if rng.random() < 0.45 else 0.0
    bubble = uni((0.5, 1.2)) if rng.random() < 0.7 else 0.0
    fat_pad = (cu + 0.8 * hx, uni((0.05, 0.11))) if rng.random() < 0.5 else (0.0, 0.0)
    hila = ((-0.17 * h, -0.02 + 0.03 * insp), (0.17 * h, -0.08 + 0.03 * insp))
    vessels = np.concatenate([vessel_tree(rng, hila[0], -1, h), vessel_tree(rng, hila[1], 1, h)])
    texture = rng.standard_normal((24, 24)).astype(np.float32)
    window = (uni(config.window_low), uni(config.window_high))
    gamma = uni(config.gamma)
    lo, hi = np.log(config.noise[0]), np.log(config.noise[1])
    noise = float(np.exp(_uniform(rng, (lo, hi), var)))
    blur = uni(config.blur)
    return Patient(
        theta=float(theta), shift=shift, zoom=zoom, habitus=h, dome=(dome_r, dome_l) + dome_shape,
        lungs=(lung_r, lung_l), heart=heart, thorax_width=thorax_width,
        soft_tissue=uni((0.9, 1.12)), air=uni((0.62, 0.82)), ribs=ribs, clavicle=clavicle,
        spine=spine, breast=breast, bubble=bubble, fat_pad=fat_pad, vessels=vessels, texture=texture,
        window=window, gamma=gamma, noise=noise, blur=blur,
        noise_seed=int(rng.integers(0, 2**31 - 1)),
    )


# --------------------------------------------------------------------------- anatomy


def patient_grid(n: int, p: Patient):
    """Patient coordinates (u, v) of the pixel centres of an n x n image."""
    c = ((np.arange(n, dtype=np.float32) + 0.5) * (2.0 / n) - 1.0)
    x, y = c[None, :] - p.shift[0], c[:, None] - p.shift[1]
    cos, sin = np.cos(p.theta), np.sin(p.theta)
    u = (cos * x + sin * y) / p.zoom
    v = (-sin * x + cos * y) / p.zoom
    return u.astype(np.float32), v.astype(np.float32)


def to_pixels(u, v, n: int, p: Patient):
    """Inverse of patient_grid: continuous pixel coordinates (col, row) of patient points."""
    cos, sin = np.cos(p.theta), np.sin(p.theta)
    x = p.zoom * (cos * u - sin * v) + p.shift[0]
    y = p.zoom * (sin * u + cos * v) + p.shift[1]
    return (x + 1.0) * (n / 2.0) - 0.5, (y + 1.0) * (n / 2.0) - 0.5


def dome_level(u, p: Patient, side: int):
    """v of the diaphragm under lung `side` (-1 right, +1 left): a dome that drops
    gently medially and steeply into the lateral costophrenic recess.
    #      ___
    #    /     \\_        <- lateral end plunges: sharp costophrenic angle
    """
    h = p.habitus
    q = (side * u - 0.36 * h) / (0.42 * h)
    top = p.dome[0] if side < 0 else p.dome[1]
    return top + p.dome[2] * q * q + p.dome[3] * np.maximum(q, 0.0) ** 4


def lung_distances(u, v, p: Patient, side: int):
    """(distance from the chest wall / apex, distance from the diaphragm) of one lung."""
    cu, cv, au, av = p.lungs[0] if side < 0 else p.lungs[1]
    wall = ellipse_distance(u, v, cu, cv, au, av, p=2.6)
    return wall, dome_level(u, p, side) - v


def heart_distance(u, v, heart):
    cu, cv, a, b, angle = heart
    return rotated_ellipse_distance(u, v, cu, cv, a, b, angle)


def mediastinum(u, v, p: Patient, heart, px):
    """Soft indicator of mediastinum + heart (no lung air there).
    #      ||        upper mediastinum band, aortic knob bulging to the image right,
    #     |  )o      heart below, 2/3 of it right of the midline in the image
    #   (  heart  )
    """
    h = p.habitus
    grow = smoothstep((v + 0.5) / 0.8)
    right = (0.085 + 0.035 * grow) * h
    left = (0.075 + 0.05 * grow) * h
    band = soft(np.minimum(u + right, left - u), 0.02) * soft(p.dome[1] + 0.1 - v, 0.05)
    knob = soft(0.062 * h - np.hypot(u - 0.10 * h, v + 0.36), max(0.012, px))
    trunk = soft(0.05 * h - np.hypot(u - 0.115 * h, v + 0.2), 0.02)
    hrt = soft(heart_distance(u, v, heart), max(0.01, px))
    return np.maximum(np.maximum(band, hrt), np.maximum(knob, trunk))


def body_outline(u, v, p: Patient):
    """Soft-tissue thickness: neck, sloping shoulders, chest wall, slight waist."""
    h = p.habitus
    half = 0.2 + (0.98 * h - 0.2) * smoothstep((v + 1.05) / 0.33)
    half = half * (1.0 - 0.07 * smoothstep((v - 0.3) / 0.7))
    inside = soft(half - np.abs(u), 0.03)
    depth = np.sqrt(np.clip(1.0 - (u / half) ** 2, 0.0, 1.0))
    shoulders = 0.25 * smoothstep((-0.45 - v) / 0.4)  # shoulder girdle and neck muscles
    return inside * (0.45 + 0.55 * depth + shoulders) * p.soft_tissue


def posterior_ribs(u, v, p: Patient, cage, px):
    """Posterior ribs: ~10 bright arcs per side from the spine to the chest wall,
    spacing widening downward, bright cortical margins.
    #   spine |  ___              rib: rises from the spine, arcs,
    #         |_/   \\___          falls steeply at the lateral wall
    """
    first, span, curv, width, offset = p.ribs
    x = np.abs(u) / p.habitus
    arc = curv * (-0.55 * x + 0.85 * x * x) + 1.2 * np.maximum(x - 0.6, 0.0) ** 2
    w = v - arc - first + offset * np.sign(u)
    t = 10.0 * (np.maximum(w, 0.0) / span) ** 0.9           # rib index, fractional
    frac = t - np.floor(t)
    spacing = span / 10.0
    edge = np.minimum(frac, width - frac) * spacing         # distance to the rib margins
    band = soft(edge, max(px, 0.008))
    margin = (2.0 * np.abs(frac / width - 0.5)) ** 2        # cortex brighter than marrow
    extent = cage * soft(x - 0.07, 0.03) * soft(w, 0.02) * soft(11.2 - t, 0.6)
    return band * (0.55 + 0.45 * margin) * extent


def anterior_ribs(u, v, p: Patient, cage, px):
    """Anterior ribs: fainter bands sloping down toward the midline, ending at the
    costal cartilages (invisible) about a third of the way in."""
    first, span, curv, width, offset = p.ribs
    x = np.abs(u) / p.habitus
    w = v + 0.42 * (x - 0.85) - first - 0.12
    t = 6.5 * np.maximum(w, 0.0) / span
    frac = t - np.floor(t)
    band = soft(np.minimum(frac, 0.45 - frac) * span / 6.5, max(px, 0.01))
    return band * cage * soft(x - 0.32, 0.12) * soft(w, 0.02) * soft(6.0 - t, 0.5)


def clavicles(u, v, p: Patient, px):
    """Clavicles: gently S-shaped bars from the sternal notch up to the shoulders."""
    medial, slope, off_r, off_l = p.clavicle
    x = np.abs(u) / p.habitus
    centre = medial - slope * (x - 0.07) + 0.06 * np.sin(np.pi * np.clip(x / 0.62, 0, 1)) * 0.5
    centre = centre + np.where(u < 0, off_r, off_l)
    half = 0.038 + 0.012 * smoothstep((0.25 - x) / 0.2)
    bar = soft(half - np.abs(v - centre), max(px, 0.008))
    return bar * soft(x - 0.06, 0.015) * soft(0.64 - x, 0.04)


def humeral_heads(u, v, p: Patient):
    """Humeral heads and the glenoid at the upper corners."""
    h = p.habitus
    r = np.minimum(np.hypot(u + 0.93 * h, v + 0.70), np.hypot(u - 0.93 * h, v + 0.70))
    return soft(0.14 - r, 0.02) * (0.7 + 0.3 * smoothstep((r - 0.08) / 0.06))


def spine(u, v, p: Patient, px):
    """Vertebral column: a vertical band, darker disc spaces, pedicle ovals."""
    period, phase = p.spine
    half = 0.062 + 0.02 * smoothstep((v + 0.2) / 1.0)
    band = soft(half - np.abs(u), max(px, 0.012))
    cyc = 2.0 * np.pi * (v / period + phase)
    disc = (0.5 + 0.5 * np.cos(cyc)) ** 8
    pedicle = np.exp(-(((np.abs(u) - 0.7 * half) / 0.014) ** 2)) * (0.5 + 0.5 * np.cos(cyc - 0.5 * np.pi)) ** 4
    return band * (1.0 - 0.3 * disc) + 0.4 * pedicle * band


def splat_lines(segments, n: int, p: Patient, sigma_units: float):
    """Draw line segments (u0, v0, u1, v1, weight) as blurred lines (peak ~ weight)."""
    if len(segments) == 0:
        return np.zeros((n, n), np.float32)
    px = 2.0 / n
    step = 0.5 * px / p.zoom
    lengths = np.hypot(segments[:, 2] - segments[:, 0], segments[:, 3] - segments[:, 1])
    k = np.maximum(np.ceil(lengths / step).astype(int), 1)
    seg = np.repeat(np.arange(len(segments)), k)
    t = (np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k) + 0.5) / np.repeat(k, k)
    s = segments[seg]
    u = s[:, 0] + t * (s[:, 2] - s[:, 0])
    v = s[:, 1] + t * (s[:, 3] - s[:, 1])
    w = s[:, 4] * (1.0 - 0.3 * t) * np.repeat(lengths / k, k) * (p.zoom / px)  # per-pixel-length
    col, row = to_pixels(u, v, n, p)
    c0, r0 = np.floor(col).astype(int), np.floor(row).astype(int)
    fc, fr = col - c0, row - r0
    out = np.zeros(n * n, np.float64)
    for dc, dr, wt in ((0, 0, (1 - fc) * (1 - fr)), (1, 0, fc * (1 - fr)), (0, 1, (1 - fc) * fr), (1, 1, fc * fr)):
        cc, rr = c0 + dc, r0 + dr
        ok = (cc >= 0) & (cc < n) & (rr >= 0) & (rr < n)
        out += np.bincount(rr[ok] * n + cc[ok], weights=(w * wt)[ok], minlength=n * n)
    sigma = max(sigma_units * p.zoom / px, 0.5)
    img = ndimage.gaussian_filter(out.reshape(n, n), sigma, mode="constant")
    return (img * np.sqrt(2.0 * np.pi) * sigma).astype(np.float32)


@lru_cache(maxsize=32)
def _gaussian_upsampler(m: int, n: int) -> np.ndarray:
    """[n, m] weights spreading m noise nodes over n pixels with Gaussian bumps,
    rows scaled so unit white noise stays unit variance."""
    x = (np.arange(n) + 0.5) * (m / n) - 0.5
    w = np.exp(-0.5 * ((x[:, None] - np.arange(m)[None, :]) / 0.7) ** 2)
    return (w / np.sqrt((w * w).sum(axis=1, keepdims=True))).astype(np.float32)


def smooth_noise(white: np.ndarray, n: int) -> np.ndarray:
    """A low-resolution [m, m] white-noise array upsampled smoothly to [n, n] (unit std)."""
    w = _gaussian_upsampler(white.shape[0], n)
    return w @ white.astype(np.float32) @ w.T


# --------------------------------------------------------------------------- lesions


class Lesion(NamedTuple):
    """What an anomaly does to the attenuation map (all [n, n] float32, or heart)."""

    add: np.ndarray | float = 0.0         # extra attenuation (dense things)
    air_keep: np.ndarray | float = 1.0    # factor on lung air (fluid / collapse < 1)
    vessel_keep: np.ndarray | float = 1.0  # factor on vessel markings
    heart: tuple | None = None            # replacement heart (cardiomegaly)
    support: np.ndarray | None = None     # soft [0, 1] extent -> the mask


def _lung_point(rng, p: Patient, side: int, margin: float, tries: int = 200):
    """A random point inside lung `side`, at least `margin` from its walls and off the heart."""
    cu, cv, au, av = p.lungs[0] if side < 0 else p.lungs[1]
    for _ in range(tries):
        u = cu + au * rng.uniform(-0.9, 0.9)
        v = cv - av + (p.dome[0] + 0.1 - cv + av) * rng.uniform(0.05, 1.0)
        wall, dia = lung_distances(u, v, p, side)
        med = mediastinum(np.float32(u), np.float32(v), p, p.heart, 0.01)
        if wall > margin and dia > margin and med < 0.01 and side * u - margin > 0.12 * p.habitus:
            return float(u), float(v)
    return float(cu), float(cv)  # fallback: lung centre


def nodule(rng, p, u, v, fields, severity, px):
    """Round dense spot(s): sphere-projected density, slightly lobulated; a mass when severe.
    #     .-.
    #    (   )   density ~ sqrt(1 - (r/R)^2)
    #     `-'
    """
    count = int(rng.choice([1, 1, 1, 2, 2, 3]))
    count = 1 if severity > 1.5 else count  # a mass comes alone
    add = np.zeros_like(u)
    support = np.zeros_like(u)
    for _ in range(count):
        side = int(rng.choice([-1, 1]))
        radius = (0.035 + 0.045 * severity) * rng.uniform(0.8, 1.25)
        density = (0.30 + 0.10 * min(severity, 1.5)) * rng.uniform(0.85, 1.15)
        cu, cv = _lung_point(rng, p, side, radius + 0.03)
        lob, phase = rng.uniform(0.0, 0.12), rng.uniform(0, 2 * np.pi)
        du, dv = u - cu, v - cv
        r = np.hypot(du, dv) / (radius * (1.0 + lob * np.cos(3.0 * np.arctan2(dv, du) + phase)))
        add += density * np.sqrt(np.clip(1.0 - r * r, 0.0, 1.0)) * soft(1.0 - r, 0.1)
        support = np.maximum(support, soft((1.0 - r) * radius, px))
    return Lesion(add=add, support=support)


def consolidation(rng, p, u, v, fields, severity, px):
    """Patchy, ill-defined airspace opacity in one lung zone, with air bronchograms:
    alveolar air replaced by fluid (lung air x (1 - opacity)), vessels silhouetted."""
    side = int(rng.choice([-1, 1]))
    radius = (0.08 + 0.09 * severity) * rng.uniform(0.85, 1.2)
    cu, cv = _lung_point(rng, p, side, 0.06)
    white = rng.standard_normal((12, 12)).astype(np.float32)
    patch = smooth_noise(white, u.shape[0])
    r = np.hypot((u - cu) / (radius * rng.uniform(0.8, 1.2)), (v - cv) / radius)
    level = 1.0 - r + 0.3 * np.clip(patch, -1.0, 1.0)  # ragged edge, solid core
    opacity = smoothstep((level - 0.05) / 0.45) * fields["lung"][side]
    strength = min(1.0, 0.55 + 0.3 * severity)
    bronchi = splat_lines(_bronchi(p, side, cu, cv, radius), u.shape[0], p, 0.004)
    add = 0.05 * opacity - 0.35 * p.air * np.clip(bronchi, 0, 1) * smoothstep((opacity - 0.5) / 0.3)
    return Lesion(add=add, air_keep=1.0 - 0.9 * strength * opacity, vessel_keep=1.0 - 0.8 * opacity,
                  support=smoothstep((opacity - 0.15) / 0.1))


def _bronchi(p: Patient, side: int, cu, cv, radius):
    """Airways alongside the vessels near (cu, cv): vessel segments of generation >= 1
    shifted sideways by a vessel width; drawn only where the lung is consolidated."""
    seg = p.vessels[(p.vessels[:, 5] >= 1) & (np.sign(p.vessels[:, 0] + p.vessels[:, 2]) == side)].copy()
    d = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]) + 1e-6
    nu, nv = -(seg[:, 3] - seg[:, 1]) / d, (seg[:, 2] - seg[:, 0]) / d
    seg[:, [0, 2]] += 0.014 * nu[:, None]
    seg[:, [1, 3]] += 0.014 * nv[:, None]
    mid_u, mid_v = 0.5 * (seg[:, 0] + seg[:, 2]), 0.5 * (seg[:, 1] + seg[:, 3])
    near = np.hypot(mid_u - cu, mid_v - cv) < 1.5 * radius
    seg[:, 4] = 1.0
    return seg[near]


def effusion(rng, p, u, v, fields, severity, px):
    """Pleural effusion: fluid filling one lung base, its surface a meniscus climbing
    the lateral chest wall; the costophrenic angle and hemidiaphragm are lost.
    #   |   lung    |
    #   |\\_        |      <- meniscus, higher laterally
    #   |###\\______|
    #   |##fluid####|
    """
    side = -1 if rng.random() < 0.55 else 1
    height = (0.06 + 0.11 * severity) * rng.uniform(0.8, 1.2)
    cu, cv, au, av = p.lungs[0] if side < 0 else p.lungs[1]
    lateral = np.clip((side * u - 0.12 * p.habitus) / (side * cu + au - 0.12 * p.habitus), 0.0, 1.0)
    top = p.dome[0] if side < 0 else p.dome[1]
    surface = top + 0.12 - height - 0.6 * height * lateral**3  # level, rising at the wall
    q = np.maximum((side * u - 0.36 * p.habitus) / (0.42 * p.habitus), 0.0)
    thick = top + p.dome[2] * q * q + p.dome[3] * q**4 - surface  # layer depth, growing laterally:
    # cutting it below 0.07 leaves one lateral fluid pocket, no sub-pixel films or islands
    fluid = soft(v - surface, 0.025 + 0.02 * severity) * soft(thick - 0.07, 0.03) * fields["lung_outer"][side]
    return Lesion(add=0.04 * fluid * fields["lung"][side], air_keep=1.0 - fluid, vessel_keep=1.0 - fluid,
                  support=fluid * fields["lung"][side])


def cardiomegaly(rng, p, u, v, fields, severity, px):
    """Enlarged heart (CTR > 0.55 at severity 1): the silhouette grows mostly to the
    patient's left (image right) and down; the mask is the new heart beyond the old one."""
    cu, cv, a, b, angle = p.heart
    hx, hy = ellipse_half_extents(a, b, angle)
    ctr0 = 2.0 * hx / p.thorax_width
    target = ctr0 + severity * (rng.uniform(0.57, 0.63) - ctr0)
    f = target / ctr0
    grow_x, grow_y = (f - 1.0) * hx, (f - 1.0) * hy
    heart = (cu + 0.6 * grow_x, cv - 0.6 * grow_y, a * f, b * f, angle)
    return Lesion(heart=heart)


def pneumothorax(rng, p, u, v, fields, severity, px):
    """Pneumothorax: the lung edge pulled off the apical / lateral chest wall. Between
    the thin visceral pleural line and the wall: pure air, no vessels (the mask).
    #   |  ______
    #   | /  lung     <- pleural line
    #   |/ air rim   (darker, vessel-free)
    """
    side = int(rng.choice([-1, 1]))
    wall = fields["wall"][side]
    cu, cv, au, av = p.lungs[0] if side < 0 else p.lungs[1]
    apex, base = cv - av, p.dome[0 if side < 0 else 1]
    reach = rng.uniform(0.55, 0.9)  # how far down the rim extends
    width = (0.05 + 0.09 * severity) * rng.uniform(0.8, 1.2)
    profile = width * np.clip((apex + reach * (base - apex) - v) / (reach * (base - apex)), 0.0, 1.0) ** 0.6
    lung = fields["lung"][side]
    rim = soft(profile - wall, max(px, 0.006)) * lung * (profile > 0.004)
    line = np.exp(-(((wall - profile) / max(0.7 * px, 0.008)) ** 2)) * lung * (profile > 0.01)
    return Lesion(add=0.25 * line - 0.35 * rim * p.air, air_keep=1.0, vessel_keep=1.0 - rim,
                  support=rim)


_LESIONS = {
    "nodule": nodule,
    "consolidation": consolidation,
    "effusion": effusion,
    "cardiomegaly": cardiomegaly,
    "pneumothorax": pneumothorax,
}


# --------------------------------------------------------------------------- rendering


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    n = a.shape[0] // k
    return a.reshape(n, k, n, k).mean(axis=(1, 3))


def render_patient(p: Patient, config: PhantomConfig, anomaly: str | None = None,
                   lesion_rng: np.random.Generator | None = None, severity: float = 0.0):
    """Render one patient (optionally with a lesion): (image [S, S] float32, mask [S, S] bool, info)."""
    size, ss = int(config.size), int(config.supersample)
    n = size * ss
    px = 2.0 / n / p.zoom                                      # one internal pixel in patient units
    u, v = patient_grid(n, p)

    wall_r, dia_r = lung_distances(u, v, p, -1)
    wall_l, dia_l = lung_distances(u, v, p, 1)
    edge = max(px, 0.012)
    outer = {-1: soft(np.minimum(wall_r, dia_r), edge), 1: soft(np.minimum(wall_l, dia_l), edge)}
    med0 = mediastinum(u, v, p, p.heart, px)
    lung0 = {s: outer[s] * (1.0 - med0) for s in (-1, 1)}
    fields = {"wall": {-1: wall_r, 1: wall_l}, "lung_outer": outer, "lung": lung0}

    lesion = Lesion()
    if anomaly is not None and severity > 0:
        lesion = _LESIONS[anomaly](lesion_rng, p, u, v, fields, float(severity), px)
    med = med0 if lesion.heart is None else mediastinum(u, v, p, lesion.heart, px)
    lung = (outer[-1] + outer[1]) * (1.0 - med)

    # lung air: deepest in the middle of each lung, thinner at the walls, textured
    inner = np.maximum(np.minimum(np.minimum(wall_r, dia_r), 0.25), np.minimum(np.minimum(wall_l, dia_l), 0.25))
    texture = smooth_noise(p.texture, n)
    depth = (0.62 + 1.5 * np.clip(inner, 0.0, 0.25)) * (1.0 + 0.07 * texture)
    if p.fat_pad[1] > 0:  # normal variant: soft-tissue triangle blunting the cardiophrenic angle
        fu = p.fat_pad[0]
        depth = depth * (1.0 - 0.8 * soft(p.fat_pad[1] - np.hypot(u - fu, v - dome_level(fu, p, 1)), 0.04))
    air = p.air * lung * depth * lesion.air_keep

    cage = np.maximum(soft(wall_r + 0.06, 0.03), soft(wall_l + 0.06, 0.03))
    vessels = 0.2 * splat_lines(p.vessels[p.vessels[:, 5] < 2], n, p, 0.007)
    vessels += 0.14 * splat_lines(p.vessels[p.vessels[:, 5] >= 2], n, p, 0.0035)
    hilum_d = np.minimum(np.hypot((u + 0.17 * p.habitus) / 1.2, v + 0.0), np.hypot((u - 0.17 * p.habitus) / 1.2, v + 0.06))
    hila = 0.12 * np.exp(-((hilum_d / 0.07) ** 2))
    vessel_visible = lung * lesion.vessel_keep

    trachea = soft(0.032 - np.abs(u + 0.01), max(px, 0.008)) * soft(-0.28 - v, 0.03)
    trachea = np.maximum(trachea, soft(0.024 - segment_distance(u, v, (-0.01, -0.29), (-0.13 * p.habitus, -0.12)), 0.01))
    trachea = np.maximum(trachea, soft(0.022 - segment_distance(u, v, (-0.01, -0.29), (0.15 * p.habitus, -0.16)), 0.01))

    atten = body_outline(u, v, p) * (1.0 + 0.05 * smooth_noise(p.texture[::4, ::4], n))  # uneven soft tissue
    atten = atten - air - 0.22 * trachea * med0
    atten = atten + (vessels + hila) * vessel_visible
    bone_seen = 0.2 + 0.8 * np.minimum(lung * lesion.air_keep, 1.0)  # film shoulder: bone over dense tissue fades
    atten = atten + (0.17 * posterior_ribs(u, v, p, cage, px) + 0.07 * anterior_ribs(u, v, p, cage, px)) * bone_seen
    atten = atten + 0.24 * clavicles(u, v, p, px) + 0.25 * humeral_heads(u, v, p)
    atten = atten + 0.15 * spine(u, v, p, px)
    if p.breast > 0:
        for s in (-1, 1):
            # breast shadow: fades in from above, curved lower margin, denser laterally
            d = ellipse_distance(u, v, s * 0.5 * p.habitus, 0.36, 0.42 * p.habitus, 0.34)
            lateral = 0.5 + 0.5 * smoothstep((s * u / p.habitus - 0.2) / 0.5)
            atten = atten + p.breast * soft(d, 0.07) * smoothstep((v - 0.05) / 0.45) * lateral
    if p.bubble > 0:
        bubble_d = ellipse_distance(u, v, 0.40 * p.habitus, p.dome[1] + 0.12, 0.08 * p.bubble, 0.055 * p.bubble)
        atten = atten - 0.3 * soft(bubble_d, 0.015)
    atten = atten + lesion.add

    # detector: window, gamma, blur, downsample, quantum noise
    low, high = p.window
    img = np.clip((atten - low) / (high - low), 0.0, 1.0) ** p.gamma
    img = ndimage.gaussian_filter(img, p.blur * ss, mode="nearest")
    img = _block_mean(img, ss)
    noise = np.random.default_rng(p.noise_seed).standard_normal((size, size)).astype(np.float32)
    img = np.clip(img + p.noise * np.sqrt(img + 0.05) * noise, 0.0, 1.0).astype(np.float32)

    if lesion.heart is not None:  # the new heart beyond the old one, where it hides lung
        support = np.clip(med - med0, 0.0, 1.0) * (outer[-1] + outer[1])
    elif lesion.support is not None:
        support = lesion.support
    else:
        support = np.zeros((n, n), np.float32)
    mask = _block_mean(np.asarray(support, np.float32), ss) >= MASK_COVERAGE
    heart = p.heart if lesion.heart is None else lesion.heart
    info = {"ctr": 2.0 * ellipse_half_extents(*heart[2:])[0] / p.thorax_width}
    return img, mask, info


def _check_anomaly(anomaly):
    if anomaly is not None and anomaly not in ANOMALY_TYPES:
        raise ValueError(f"unknown anomaly {anomaly!r}; valid types: {', '.join(ANOMALY_TYPES)} (or None)")


def _render(seed, index, anomaly, config, severity, split):
    _check_anomaly(anomaly)
    if split not in _STREAM:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)} or None")
    stream = _STREAM[split]
    patient = sample_patient(np.random.default_rng([int(seed), stream, int(index)]), config)
    sev = config.severity if severity is None else float(severity)
    lesion_rng = None
    if anomaly is not None:
        lesion_rng = np.random.default_rng([int(seed), stream, int(index), 1 + ANOMALY_TYPES.index(anomaly)])
    return render_patient(patient, config, anomaly, lesion_rng, sev)


def render_case(seed: int, index: int, anomaly: str | None = None, config: PhantomConfig = PhantomConfig(),
                severity: float | None = None, *, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render one phantom radiograph: (image float32 [H, W] in [0, 1], mask bool [H, W]).

    Deterministic per (seed, index, anomaly, severity, config, split). The normal anatomy
    depends only on (seed, split, index) and config; the lesion has its own random stream.
    `severity` defaults to config.severity; severity 0 gives the normal image and an
    empty mask. `split` ("train"/"valid"/"test") selects the seed stream that
    write_phantom_dataset used for that split (None: a stream of its own).
    """
    img, mask, _ = _render(seed, index, anomaly, config, severity, split)
    return img, mask


def describe_case(seed: int, index: int, anomaly: str | None = None, config: PhantomConfig = PhantomConfig(),
                  severity: float | None = None, *, split: str | None = None) -> dict:
    """Measurements of a rendered case: {'ctr': cardiothoracic ratio, 'mask_fraction': ...}."""
    img, mask, info = _render(seed, index, anomaly, config, severity, split)
    return {**info, "mask_fraction": float(mask.mean()), "mean_intensity": float(img.mean())}


# --------------------------------------------------------------------------- dataset


def split_plan(split: str, n: int, abnormal_fraction: float) -> list[str | None]:
    """Anomaly per image of a split: the first round(n * (1 - abnormal_fraction)) are
    None (good), the rest cycle through ANOMALY_TYPES."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if not 0.0 <= abnormal_fraction <= 1.0:
        raise ValueError("abnormal_fraction must be in [0, 1]")
    if split == "train" and abnormal_fraction > 0:
        raise ValueError("the train split holds normal images only (abnormal_fraction=0)")
    n_good = int(round(n * (1.0 - abnormal_fraction)))
    return [None] * n_good + [ANOMALY_TYPES[i % len(ANOMALY_TYPES)] for i in range(n - n_good)]


def _mask_dir(split: str) -> str:
    return "ground_truth" if split == "test" else f"{split}_ground_truth"


def _write_one(job) -> tuple[str, str]:
    """Render and save one image (and its mask); runs in a worker process."""
    from PIL import Image

    out, split, index, anomaly, seed, config = job
    img, mask = render_case(seed, index, anomaly, config, split=split)
    kind = anomaly or "good"
    stem = f"{index:05d}"
    path = Path(out) / split / kind / f"{stem}.png"
    Image.fromarray(np.round(img * 255.0).astype(np.uint8), mode="L").save(path)
    if anomaly is not None:
        mpath = Path(out) / _mask_dir(split) / kind / f"{stem}_mask.png"
        Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(mpath)
    return split, kind


def write_phantom_dataset(out: str | Path, n_train: int = 4000, n_test: int = 1000, n_valid: int = 200,
                          seed: int = 0, config: PhantomConfig = PhantomConfig(), abnormal_fraction: float = 0.5,
                          workers: int | None = None, progress: bool = True) -> dict:
    """Write the phantom in the MVTec AD layout (8-bit grayscale PNG):

        out/train/good/00000.png ...                       normals only
        out/valid/{good,<type>}/NNNNN.png                  half abnormal
        out/test/{good,<type>}/NNNNN.png                   abnormal_fraction abnormal
        out/ground_truth/<type>/NNNNN_mask.png             test masks (0/255)
        out/valid_ground_truth/<type>/NNNNN_mask.png       valid masks (0/255)
        out/phantom.json                                   config, seed, counts, seconds

    Stems are the image's index within its split (unique across types); each split
    has its own seed stream. Returns the summary written to phantom.json.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    out = Path(out)
    plans = {"train": split_plan("train", n_train, 0.0), "valid": split_plan("valid", n_valid, 0.5),
             "test": split_plan("test", n_test, abnormal_fraction)}
    jobs = []
    for split, plan in plans.items():
        for kind in {a or "good" for a in plan}:
            (out / split / kind).mkdir(parents=True, exist_ok=True)
            if kind != "good":
                (out / _mask_dir(split) / kind).mkdir(parents=True, exist_ok=True)
        jobs += [(str(out), split, i, a, int(seed), config) for i, a in enumerate(plan)]

    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    counts: dict[str, dict[str, int]] = {s: {} for s in plans}
    bar = tqdm(total=len(jobs), desc=f"phantom {config.size}px", disable=not progress)
    if workers <= 1:
        results = map(_write_one, jobs)
        pool = None
    else:
        import multiprocessing as mp

        pool = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn").Pool(workers)
        results = pool.imap_unordered(_write_one, jobs, chunksize=32)
    try:
        for split, kind in results:
            counts[split][kind] = counts[split].get(kind, 0) + 1
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()

    summary = {
        "generator": "hqanogan_core.data.phantom",
        "version": PHANTOM_VERSION,
        "seed": int(seed),
        "config": asdict(config),
        "anomaly_types": list(ANOMALY_TYPES),
        "abnormal_fraction": {"train": 0.0, "valid": 0.5, "test": float(abnormal_fraction)},
        "counts": {"train": n_train, "valid": n_valid, "test": n_test},
        "n_train": n_train, "n_valid": n_valid, "n_test": n_test,
        "files": {s: dict(sorted(c.items())) for s, c in counts.items()},
        "mask_dirs": {"test": "ground_truth", "valid": "valid_ground_truth"},
        "workers": workers,
        "seconds": round(time.perf_counter() - start, 3),
    }
    (out / "phantom.json").write_text(json.dumps(summary, indent=2))
    return summary

"""Adaptive discriminator augmentation (ADA, Karras et al. 2020), grayscale-aware.

`AugmentPipe(p)` applies the 'bgc' set (blit, geometric, colour) to a batch; every op fires per
sample with probability p, and the whole pipeline is differentiable so it can sit between G and D.
Geometric ops are composed into ONE 3x3 matrix per sample and applied with a single `grid_sample`
(reflection padding, bilinear) — one resampling regardless of how many ops fired. Colour ops are
one 4x4 matrix per sample. `AdaController` moves p with the r_t overfitting heuristic.

Differences to the official pipe, chosen for simplicity (documented, not hidden):
- No 2x supersampling with a wavelet filter around grid_sample: bilinear at the output resolution
  (a little more blur/aliasing for rotated/scaled samples; the integer ops stay exact).
- grid_sample's 'reflection' mode mirrors about the pixel edge (symmetric padding) rather than
  about the edge pixel centre.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AugmentConfig:
    # per-op multipliers of p (0 disables an op); strengths as in the official 'bgc' pipe
    xflip: float = 1.0
    rotate90: float = 1.0
    xint: float = 1.0
    scale: float = 1.0
    rotate: float = 1.0
    aniso: float = 1.0
    xfrac: float = 1.0
    brightness: float = 1.0
    contrast: float = 1.0
    # Luma flip is intensity inversion on a grayscale image. An inverted radiograph is a different kind of
    # image (bone dark, air bright), not a plausible variant of a normal film, and since ADA augmentations
    # "leak" into G when p gets large, G may start producing inverted films. Off by default.
    lumaflip: float = 0.0
    hue: float = 1.0            # colour only: ignored for 1-channel images
    saturation: float = 1.0     # colour only: ignored for 1-channel images
    xint_max: float = 0.125     # fraction of image size
    scale_std: float = 0.2      # log2 units
    rotate_max: float = 1.0     # fraction of a half turn (pi)
    aniso_std: float = 0.2
    xfrac_std: float = 0.125
    brightness_std: float = 0.2
    contrast_std: float = 0.5
    hue_max: float = 1.0
    saturation_std: float = 1.0


# ----------------------------------------------------------------------------- 3x3 / 4x4 matrix helpers [N, k, k]


def _eye(n, k, device):
    return torch.eye(k, device=device).expand(n, k, k).clone()


def translate2d(tx, ty):
    m = _eye(tx.shape[0], 3, tx.device)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def scale2d(sx, sy):
    m = _eye(sx.shape[0], 3, sx.device)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def rotate2d(theta):
    m = _eye(theta.shape[0], 3, theta.device)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def _where(mask, value, default):
    """Per-sample choice: value where mask, else default (both [N])."""
    return torch.where(mask, value, torch.full_like(value, default))


# ----------------------------------------------------------------------------- the pipe


class AugmentPipe(nn.Module):
    """x [N, C, H, W] in [-1, 1] -> augmented x, same shape. `p` is a buffer (saved with checkpoints)."""

    def __init__(self, p: float = 0.0, cfg: AugmentConfig | None = None, **overrides):
        super().__init__()
        self.cfg = cfg or AugmentConfig(**overrides)
        self.register_buffer("p", torch.tensor(float(p)))

    def _fire(self, n, device, prob):
        return torch.rand(n, device=device) < prob

    def geometric_matrix(self, n, h, w, device):
        """Inverse transform (output coords -> input coords) in grid_sample's normalised [-1, 1] space. [N, 3, 3]"""
        c, p = self.cfg, self.p.to(device)
        G = _eye(n, 3, device)
        zeros = torch.zeros(n, device=device)
        if c.xflip > 0:
            i = torch.randint(0, 2, [n], device=device).float()
            i = torch.where(self._fire(n, device, p * c.xflip), i, zeros)
            G = G @ scale2d(1 - 2 * i, torch.ones_like(i))
        if c.rotate90 > 0:
            i = torch.randint(0, 4, [n], device=device).float()
            i = torch.where(self._fire(n, device, p * c.rotate90), i, zeros)
            G = G @ rotate2d(-math.pi / 2 * i)
        if c.xint > 0:
            t = (torch.rand(n, 2, device=device) * 2 - 1) * c.xint_max
            t = torch.where(self._fire(n, device, p * c.xint)[:, None], t, torch.zeros_like(t))
            # whole pixels: a shift of k pixels is 2k/size in normalised coordinates
            tx = torch.round(t[:, 0] * w) * 2 / w
            ty = torch.round(t[:, 1] * h) * 2 / h
            G = G @ translate2d(tx, ty)
        if c.scale > 0:
            s = torch.exp2(torch.randn(n, device=device) * c.scale_std)
            s = _where(self._fire(n, device, p * c.scale), s, 1.0)
            G = G @ scale2d(1 / s, 1 / s)
        # the two rotations share the probability so that "any rotation" fires with probability p
        p_rot = 1 - torch.sqrt((1 - p * c.rotate).clamp(0, 1))
        if c.rotate > 0:
            theta = (torch.rand(n, device=device) * 2 - 1) * math.pi * c.rotate_max
            theta = torch.where(self._fire(n, device, p_rot), theta, zeros)
            G = G @ rotate2d(-theta)
        if c.aniso > 0:
            s = torch.exp2(torch.randn(n, device=device) * c.aniso_std)
            s = _where(self._fire(n, device, p * c.aniso), s, 1.0)
            G = G @ scale2d(1 / s, s)
        if c.rotate > 0:
            theta = (torch.rand(n, device=device) * 2 - 1) * math.pi * c.rotate_max
            theta = torch.where(self._fire(n, device, p_rot), theta, zeros)
            G = G @ rotate2d(-theta)
        if c.xfrac > 0:
            t = torch.randn(n, 2, device=device) * c.xfrac_std * 2  # std as a fraction of the size
            t = torch.where(self._fire(n, device, p * c.xfrac)[:, None], t, torch.zeros_like(t))
            G = G @ translate2d(t[:, 0], t[:, 1])
        return G

    def color_matrix(self, n, num_channels, device):
        """Affine colour transform in homogeneous RGB. [N, 4, 4]"""
        c, p = self.cfg, self.p.to(device)
        C = _eye(n, 4, device)
        luma = torch.tensor([1.0, 1.0, 1.0, 0.0], device=device) / math.sqrt(3)
        vvT = torch.outer(luma, luma)
        if c.brightness > 0:
            b = torch.randn(n, device=device) * c.brightness_std
            b = _where(self._fire(n, device, p * c.brightness), b, 0.0)
            T = _eye(n, 4, device)
            T[:, :3, 3] = b[:, None]
            C = T @ C
        if c.contrast > 0:
            s = torch.exp2(torch.randn(n, device=device) * c.contrast_std)
            s = _where(self._fire(n, device, p * c.contrast), s, 1.0)
            S = _eye(n, 4, device)
            S[:, 0, 0] = S[:, 1, 1] = S[:, 2, 2] = s
            C = S @ C
        if c.lumaflip > 0:  # reflect along the luma axis; on grayscale this is x -> -x
            i = torch.randint(0, 2, [n], device=device).float()
            i = _where(self._fire(n, device, p * c.lumaflip), i, 0.0)
            C = (_eye(n, 4, device) - 2 * vvT * i[:, None, None]) @ C
        if num_channels == 3 and c.hue > 0:  # rotate around the luma axis (Rodrigues)
            theta = (torch.rand(n, device=device) * 2 - 1) * math.pi * c.hue_max
            theta = _where(self._fire(n, device, p * c.hue), theta, 0.0)
            v = luma[:3]
            K = torch.tensor([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], device=device)
            R = _eye(n, 4, device)
            st, ct = torch.sin(theta)[:, None, None], torch.cos(theta)[:, None, None]
            R[:, :3, :3] = torch.eye(3, device=device) + st * K + (1 - ct) * (K @ K)
            C = R @ C
        if num_channels == 3 and c.saturation > 0:
            s = torch.exp2(torch.randn(n, device=device) * c.saturation_std)
            s = _where(self._fire(n, device, p * c.saturation), s, 1.0)
            C = (vvT + (_eye(n, 4, device) - vvT) * s[:, None, None]) @ C
        return C

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, ch, h, w = x.shape
        if float(self.p) <= 0:
            return x
        device = x.device
        G = self.geometric_matrix(n, h, w, device)
        if not torch.equal(G, _eye(n, 3, device)):
            grid = F.affine_grid(G[:, :2, :].to(x.dtype), [n, ch, h, w], align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        C = self.color_matrix(n, ch, device).to(x.dtype)
        flat = x.reshape(n, ch, h * w)
        if ch == 3:
            flat = C[:, :3, :3] @ flat + C[:, :3, 3:]
        elif ch == 1:  # gray: average the RGB rows (gray = equal RGB), i.e. x * sum(row) + offset
            Cg = C[:, :3, :].mean(dim=1, keepdim=True)                     # [N, 1, 4]
            flat = flat * Cg[:, :, :3].sum(dim=2, keepdim=True) + Cg[:, :, 3:]
        else:
            raise ValueError(f"AugmentPipe supports 1 or 3 channels, got {ch}")
        out = flat.reshape(n, ch, h, w)
        assert out.shape == x.shape
        return out


# ----------------------------------------------------------------------------- ADA heuristic


class AdaController:
    """Tunes `pipe.p` from the sign of D's real logits (the r_t heuristic).

    Call `accumulate(real_logits)` every D step and `step(batch)` every minibatch; every `interval`
    minibatches: r_t = mean(sign(D(real))) over them, p += sign(r_t - target) * batch*interval/(ada_kimg*1000),
    clamped to [0, 1]. Under torch.distributed the sign statistics are summed over ranks.
    """

    def __init__(self, pipe: AugmentPipe, target=0.6, interval=4, ada_kimg=500.0):
        self.pipe, self.target, self.interval, self.ada_kimg = pipe, target, interval, ada_kimg
        self.acc = torch.zeros(2, dtype=torch.float64)  # [sum of signs, count]
        self.batches = 0
        self.last_rt = float("nan")

    def accumulate(self, real_logits: torch.Tensor) -> None:
        s = torch.sign(real_logits.detach().float()).cpu().double()
        self.acc += torch.stack([s.sum(), torch.tensor(float(s.numel()), dtype=torch.float64)])

    def step(self, batch: int) -> None:
        self.batches += 1
        if self.batches % self.interval:
            return
        acc = self.acc.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            acc = acc.to(self.pipe.p.device)  # NCCL reduces CUDA tensors only
            torch.distributed.all_reduce(acc)
            acc = acc.cpu()
        self.acc.zero_()
        if acc[1] == 0:
            return
        rt = float(acc[0] / acc[1])
        self.last_rt = rt
        adjust = math.copysign(1.0, rt - self.target) if rt != self.target else 0.0
        adjust *= batch * self.interval / (self.ada_kimg * 1000)
        with torch.no_grad():
            self.pipe.p.copy_((self.pipe.p + adjust).clamp(0.0, 1.0))

    def state_dict(self) -> dict:
        return {"acc": self.acc.clone(), "batches": self.batches, "last_rt": self.last_rt}

    def load_state_dict(self, state: dict) -> None:
        self.acc = state["acc"].clone().to(torch.float64)
        self.batches = int(state["batches"])
        self.last_rt = float(state["last_rt"])

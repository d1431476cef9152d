"""pSp encoder (Richardson et al. 2021, "Encoding in Style"): image -> W+ of a frozen StyleGAN2 generator.

GradualStyleEncoder, written from the paper's description and the facts of its public code:

  stem     3x3 conv -> BN -> PReLU                                   [N, w, R, R]
  stage 1  IR-SE blocks, first one stride 2                          [N, c1s, R/2]
  stage 2                                          -> c1             [N, ., R/4]
  stage 3                                          -> c2             [N, ., R/8]
  stage 4                                          -> c3             [N, ., R/16]
  FPN      p3 = lat3(c3), p2 = up(p3) + lat2(c2), p1 = up(p2) + lat1(c1)   (fpn_channels each; pSp uses
           c3 itself, 512 channels, as p3 — we add a 1x1 projection so the FPN can be narrower)
  heads    one map-to-style head per W+ slot: stride-2 3x3 convs + LeakyReLU down to 1x1, then an
           equalised linear layer; coarse slots read c3, middle p2, fine p1 (`style_split`)
  output   ws = w_avg + offsets                                      [N, num_ws, w_dim]

IR-SE block (ArcFace's "improved residual" with squeeze-excitation):
  res = BN -> conv3x3 -> PReLU -> conv3x3 (stride s) -> BN -> SE;  shortcut = identity / maxpool(1, s)
  when the width is unchanged, else conv1x1 (stride s) -> BN.

Width: pSp uses IR-SE-50 (64/128/256/512 channels, 3/4/14/3 blocks) at 256 px. `default_width`
scales the stem width with the input size (16 at <= 64 px, 32 at 128 px, 64 from 256 px) and the block
counts default to 1/1/2/1, FPN/head channels to 4 x width: the 64-px encoder has ~1.6 M parameters
(most in the heads) and trains on a CPU. `EncoderConfig(width=64, blocks=(3, 4, 14, 3),
fpn_channels=512)` is pSp's size.

SingleWEncoder: the same trunk, global average pooling of c3 and one equalised linear layer -> one w
broadcast to all slots (pSp's "BackboneEncoderUsingLastLayerIntoW"); the W-vs-W+ ablation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .stylegan2 import EqualLinear


@dataclass
class EncoderConfig:
    resolution: int = 64                 # input size (power of two >= 16)
    img_channels: int = 1
    num_ws: int = 10                     # generator's W+ slots (2 log2 R - 2)
    w_dim: int = 64
    width: int | None = None             # stem width; None -> default_width(resolution)
    blocks: tuple[int, ...] = (1, 1, 2, 1)  # IR-SE blocks per stage (pSp IR-SE-50: 3, 4, 14, 3)
    fpn_channels: int | None = None      # FPN / head channels; None -> 4 * width (pSp: 512 = 8 * 64)
    se_reduction: int = 8                # squeeze-excitation reduction (pSp: 16)
    zero_init_heads: bool = False        # True: final head layers start at 0, so E(x) = w_avg at step 0

    def __post_init__(self):
        if self.resolution < 16 or 2 ** int(round(math.log2(self.resolution))) != self.resolution:
            raise ValueError(f"encoder resolution must be a power of two >= 16, got {self.resolution}")
        if self.width is None:
            self.width = default_width(self.resolution)
        if self.fpn_channels is None:
            self.fpn_channels = 4 * self.width
        self.blocks = tuple(self.blocks)
        assert len(self.blocks) == 4, "four stages (1/2, 1/4, 1/8, 1/16 of the input)"


def default_width(resolution: int) -> int:
    """Stem width: 16 up to 64 px, 32 at 128 px, 64 (pSp) from 256 px."""
    return 16 if resolution <= 64 else 32 if resolution <= 128 else 64


def stage_channels(width: int) -> list[int]:
    """Output channels of the four stages (pSp with width 64: 64, 128, 256, 512)."""
    return [width, 2 * width, 4 * width, 8 * width]


def style_split(num_ws: int) -> tuple[int, int, int]:
    """(n_coarse, n_middle, n_fine) W+ slots: coarse = slots 0-2, middle = 3-6, fine = 7 and up.

    pSp's split of 18 slots (3/4/11) is StyleGAN's coarse (4-8 px), middle (16-32 px) and fine (64 px
    and up) styles: slot 0 drives 4 px and slots 2k-1, 2k drive 2^(k+2) px for every generator size, so
    the same slot indices keep the same meaning at any num_ws. pSp itself keeps them for its 256-px
    generators (14 slots -> 3/4/7). Hence 8 -> 3/4/1, 10 -> 3/4/3, 14 -> 3/4/7, 18 -> 3/4/11; generators
    below 32 px have no fine group (6 slots at 16 px -> 3/3/0). (The last slot is the final toRGB, at the
    output resolution; at 32 px that slot is "fine" by index though 32 px — like pSp, we go by index.)
    """
    if num_ws < 1:
        raise ValueError(f"num_ws must be positive, got {num_ws}")
    n_coarse = min(3, num_ws)
    n_middle = min(4, num_ws - n_coarse)
    return n_coarse, n_middle, num_ws - n_coarse - n_middle


# ----------------------------------------------------------------------------- building blocks


class SEModule(nn.Module):
    """Squeeze-excitation: x * sigmoid(fc2(relu(fc1(avgpool(x)))))."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        mid = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, mid, 1, bias=False)
        self.fc2 = nn.Conv2d(mid, channels, 1, bias=False)

    def forward(self, x):  # [N, C, H, W] -> same
        s = x.mean(dim=[2, 3], keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class IRSEBlock(nn.Module):
    """BN-conv-PReLU-conv(stride)-BN-SE residual + shortcut. [N, I, H, W] -> [N, O, H/s, W/s]"""

    def __init__(self, in_ch: int, out_ch: int, stride: int, se_reduction: int):
        super().__init__()
        if in_ch == out_ch:
            self.shortcut = nn.MaxPool2d(1, stride)
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        self.res = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False),
            nn.PReLU(out_ch),
            nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            SEModule(out_ch, se_reduction),
        )

    def forward(self, x):
        return self.shortcut(x) + self.res(x)


class MapToStyle(nn.Module):
    """Head: log2(size) stride-2 3x3 convs (+ LeakyReLU 0.01) down to 1x1, then EqualLinear -> w_dim.
    [N, C, size, size] -> [N, w_dim]"""

    def __init__(self, in_ch: int, w_dim: int, size: int):
        super().__init__()
        n = int(math.log2(size))
        assert 2 ** n == size, size
        layers = []
        for _ in range(n):
            layers += [nn.Conv2d(in_ch, in_ch, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(in_ch, w_dim)

    def forward(self, x):
        x = self.convs(x)
        assert x.shape[2:] == (1, 1), x.shape
        return self.linear(x.flatten(1))


class Trunk(nn.Module):
    """Stem + four IR-SE stages. image [N, C, R, R] -> (c1 [N, ., R/4], c2 [N, ., R/8], c3 [N, ., R/16])"""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        w = cfg.width
        self.stem = nn.Sequential(nn.Conv2d(cfg.img_channels, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.PReLU(w))
        chans = stage_channels(w)
        self.stages = nn.ModuleList()
        in_ch = w
        for out_ch, n in zip(chans, cfg.blocks):
            blocks = [IRSEBlock(in_ch, out_ch, 2, cfg.se_reduction)]
            blocks += [IRSEBlock(out_ch, out_ch, 1, cfg.se_reduction) for _ in range(n - 1)]
            self.stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.channels = chans

    def forward(self, x):
        x = self.stem(x)
        taps = []
        for stage in self.stages:
            x = stage(x)
            taps.append(x)
        return taps[1], taps[2], taps[3]


def _check_input(cfg: EncoderConfig, x: torch.Tensor) -> None:
    assert x.ndim == 4 and x.shape[1:] == (cfg.img_channels, cfg.resolution, cfg.resolution), \
        f"expected [N, {cfg.img_channels}, {cfg.resolution}, {cfg.resolution}], got {tuple(x.shape)}"


# ----------------------------------------------------------------------------- encoders


class GradualStyleEncoder(nn.Module):
    """pSp encoder: image [N, C, R, R] -> ws [N, num_ws, w_dim] = w_avg + per-slot offsets."""

    def __init__(self, cfg: EncoderConfig | None = None, **overrides):
        super().__init__()
        cfg = cfg or EncoderConfig(**overrides)
        self.cfg = cfg
        self.num_ws, self.w_dim = cfg.num_ws, cfg.w_dim
        self.trunk = Trunk(cfg)
        c1_ch, c2_ch, c3_ch = self.trunk.channels[1:]
        f = cfg.fpn_channels
        self.lat3 = nn.Conv2d(c3_ch, f, 1)   # pSp uses c3 directly (its width is already 512); we project
        self.lat2 = nn.Conv2d(c2_ch, f, 1)
        self.lat1 = nn.Conv2d(c1_ch, f, 1)
        self.split = style_split(cfg.num_ws)
        r = cfg.resolution
        sizes = [r // 16] * self.split[0] + [r // 8] * self.split[1] + [r // 4] * self.split[2]
        self.heads = nn.ModuleList(MapToStyle(f, cfg.w_dim, s) for s in sizes)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        if cfg.zero_init_heads:
            zero_final_layers(self)

    def pyramid(self, x) -> dict[str, torch.Tensor]:
        """The feature pyramid the heads read: {'p3': [N, f, R/16], 'p2': [N, f, R/8], 'p1': [N, f, R/4]}."""
        _check_input(self.cfg, x)
        c1, c2, c3 = self.trunk(x)
        p3 = self.lat3(c3)                                                             # [N, f, R/16]
        p2 = F.interpolate(p3, size=c2.shape[2:], mode="bilinear", align_corners=False) + self.lat2(c2)  # R/8
        p1 = F.interpolate(p2, size=c1.shape[2:], mode="bilinear", align_corners=False) + self.lat1(c1)  # R/4
        return {"p3": p3, "p2": p2, "p1": p1}

    def forward(self, x):
        levels = self.pyramid(x)
        p3, p2, p1 = levels["p3"], levels["p2"], levels["p1"]
        n_c, n_m, _ = self.split
        feats = [p3] * n_c + [p2] * n_m + [p1] * (self.num_ws - n_c - n_m)
        offsets = torch.stack([head(fm) for head, fm in zip(self.heads, feats)], dim=1)  # [N, num_ws, w_dim]
        ws = offsets + self.w_avg.to(offsets.dtype)
        assert ws.shape == (x.shape[0], self.num_ws, self.w_dim), ws.shape
        return ws


class SingleWEncoder(nn.Module):
    """Ablation: one w per image, broadcast to every slot. [N, C, R, R] -> [N, num_ws, w_dim]"""

    def __init__(self, cfg: EncoderConfig | None = None, **overrides):
        super().__init__()
        cfg = cfg or EncoderConfig(**overrides)
        self.cfg = cfg
        self.num_ws, self.w_dim = cfg.num_ws, cfg.w_dim
        self.trunk = Trunk(cfg)
        self.linear = EqualLinear(self.trunk.channels[3], cfg.w_dim)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        if cfg.zero_init_heads:
            zero_final_layers(self)

    def forward(self, x):
        _check_input(self.cfg, x)
        c3 = self.trunk(x)[2]
        w = self.linear(c3.mean(dim=[2, 3])) + self.w_avg.to(c3.dtype)               # [N, w_dim]
        return w[:, None, :].expand(-1, self.num_ws, -1)


def build_encoder(kind: str, cfg: EncoderConfig, w_avg: torch.Tensor | None = None) -> nn.Module:
    """'gradual' (pSp, W+) or 'single' (one w); copies the generator's w_avg if given."""
    if kind == "gradual":
        enc = GradualStyleEncoder(cfg)
    elif kind == "single":
        enc = SingleWEncoder(cfg)
    else:
        raise ValueError(f"encoder kind must be 'gradual' or 'single', got {kind!r}")
    if w_avg is not None:
        enc.w_avg.copy_(w_avg.detach().to(enc.w_avg))
    return enc


def zero_final_layers(encoder: nn.Module) -> None:
    """Zero every final equalised linear layer, so the encoder outputs exactly w_avg."""
    with torch.no_grad():
        for m in encoder.modules():
            if isinstance(m, EqualLinear):
                m.weight.zero_()
                if m.bias is not None:
                    m.bias.zero_()


def encoder_config_for(G, **overrides) -> EncoderConfig:
    """An EncoderConfig that matches a generator's resolution, channels, num_ws and w_dim."""
    return EncoderConfig(resolution=G.resolution, img_channels=G.img_channels, num_ws=G.num_ws, w_dim=G.w_dim,
                         **overrides)


@torch.no_grad()
def encode_images(G, E, images: torch.Tensor, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(ws [N, L, D], G(E(x)) [N, C, H, W]) on the device of G, results on the CPU: the package's one
    "encode, then synthesise" (noise_mode const, no clamping; the scorer clamps its restorations)."""
    device = G.w_avg.device
    ws_all, rec_all = [], []
    for i in range(0, len(images), batch):
        ws = E(images[i:i + batch].to(device))
        ws_all.append(ws.cpu())
        rec_all.append(G.synthesis(ws, noise_mode="const").cpu())
    return torch.cat(ws_all), torch.cat(rec_all)

"""f-AnoGAN's networks (Schlegl et al., Medical Image Analysis 2019): a WGAN-GP residual generator and
critic (Gulrajani et al. 2017, 64 px ResNet) and the izi_f image encoder.

    Generator  z [N, z_dim] ~ N(0, I) -> linear -> [N, 8w, 4, 4] -> residual up-blocks (x2 each)
               -> BN -> ReLU -> conv3x3 -> tanh                                       [N, C, R, R]
    Critic     conv3x3 -> residual down-blocks -> features f(x) [N, 8w*16] -> linear  [N] (no sigmoid)
    Encoder    the critic's trunk -> linear -> tanh                                   [N, z_dim]

Channels (64 px and up): 8w at 4 px, halving per doubling down to w at R/2 (8w, 4w, 2w, w at 64 px, the
64 px WGAN-GP ResNet with w = 64; larger images keep 8w for the extra coarse levels). Below 64 px the
list is the last levels of the 64 px one (4w, 2w, w at 32 px). No batch norm in the critic (it would break
the per-sample gradient penalty).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
import torch.nn.functional as F


@dataclass
class WganConfig:
    resolution: int = 64
    channels: int = 1
    width: int = 16            # the paper's 64; 16 keeps CPU training to minutes
    z_dim: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


def level_widths(cfg: WganConfig) -> list[int]:
    """Channels at 4, 8, ..., R/2 px (the input of each up-block / output of each down-block); see above."""
    n = int(math.log2(cfg.resolution)) - 2
    assert 2 ** (n + 2) == cfg.resolution and n >= 1, f"resolution must be a power of two >= 8, got {cfg.resolution}"
    return [cfg.width * max(8 // 2 ** max(i - (n - 4), 0), 1) for i in range(n)]


class UpBlock(nn.Module):
    """BN-ReLU-up-conv-BN-ReLU-conv with a nearest-upsampled 1x1 shortcut. [N, a, H, W] -> [N, b, 2H, 2W]"""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x):
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """ReLU-conv-ReLU-conv-avgpool with an avgpooled 1x1 shortcut. [N, a, H, W] -> [N, b, H/2, W/2]"""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_in, 3, padding=1), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x):
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(F.relu(x)))), 2)
        return h + self.skip(F.avg_pool2d(x, 2))


class Generator(nn.Module):
    def __init__(self, cfg: WganConfig):
        super().__init__()
        self.cfg = cfg
        widths = level_widths(cfg)                              # [8w (4 px), ..., (R/2 px)]
        self.fc = nn.Linear(cfg.z_dim, widths[0] * 16)
        outs = widths[1:] + [widths[-1]]
        self.blocks = nn.Sequential(*[UpBlock(a, b) for a, b in zip(widths, outs)])
        self.out = nn.Sequential(nn.BatchNorm2d(outs[-1]), nn.ReLU(), nn.Conv2d(outs[-1], cfg.channels, 3, padding=1),
                                 nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        assert z.ndim == 2 and z.shape[1] == self.cfg.z_dim, f"expected z [N, {self.cfg.z_dim}], got {tuple(z.shape)}"
        h = self.fc(z).view(len(z), -1, 4, 4)
        return self.out(self.blocks(h))                         # [N, C, R, R]


class CriticTrunk(nn.Module):
    """[N, C, R, R] -> features [N, 8w * 16] (the f-AnoGAN feature space f)."""

    def __init__(self, cfg: WganConfig):
        super().__init__()
        widths = level_widths(cfg)[::-1]                        # (R/2 px) ... 8w (4 px)
        self.cfg = cfg
        self.inp = nn.Conv2d(cfg.channels, widths[0], 3, padding=1)
        ins = [widths[0]] + widths[:-1]
        self.blocks = nn.Sequential(*[DownBlock(a, b) for a, b in zip(ins, widths)])
        self.dim = widths[-1] * 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.cfg.resolution
        assert x.shape[1:] == (self.cfg.channels, r, r), (f"expected [N, {self.cfg.channels}, {r}, {r}], "
                                                          f"got {tuple(x.shape)}")
        return F.relu(self.blocks(self.inp(x))).flatten(1)


class Critic(nn.Module):
    def __init__(self, cfg: WganConfig):
        super().__init__()
        self.trunk = CriticTrunk(cfg)
        self.fc = nn.Linear(self.trunk.dim, 1)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        f = self.trunk(x)                                       # [N, F]
        score = self.fc(f)[:, 0]                                # [N]
        return (score, f) if return_features else score


class Encoder(nn.Module):
    """izi_f's encoder: image -> z in (-1, 1)^z_dim (tanh, as in f-AnoGAN)."""

    def __init__(self, cfg: WganConfig):
        super().__init__()
        self.trunk = CriticTrunk(cfg)
        self.fc = nn.Linear(self.trunk.dim, cfg.z_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(self.trunk(x)))               # [N, z_dim]


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, generator=None) -> torch.Tensor:
    """WGAN-GP: mean over a batch of (||grad_x critic(x_hat)|| - 1)^2 at random points between real and fake."""
    eps = torch.rand(len(real), 1, 1, 1, generator=generator).to(real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

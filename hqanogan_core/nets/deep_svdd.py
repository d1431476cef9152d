"""Deep SVDD's network (Ruff et al., ICML 2018): a LeNet-style CNN with no bias terms anywhere.

Why no biases: the one-class loss pulls every output phi(x) towards a fixed centre c. A network with a
bias in its last layer (or any affine BN) can map *every* input to c by zeroing its weights and setting
the bias to c, a perfect and useless solution. Without biases and with a fixed c != 0 that collapse is
not available (Ruff et al., Prop. 2). The same holds for Deep SAD (Ruff et al., ICLR 2020).

    encoder  [conv5x5 (no bias) -> BN (affine=False) -> LeakyReLU(0.1) -> maxpool2] x stages   [N, c, 4, 4]
             flatten -> linear (no bias)                                                           [N, rep_dim]
    decoder  (pretraining only) the mirror: linear -> [N, c, 4, 4] -> [upsample2 -> conv5x5 -> BN -> LReLU]
             -> upsample2 -> conv5x5 -> tanh                                                       [N, C, R, R]

Ruff et al. use 3 stages of 32/64/128 filters for CIFAR-10 (32 px), so a 4x4 map enters the linear
layer; at 64 px we add a fourth stage to keep that 4x4 map; `width` sets the first stage's filters.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-4          # the reference implementation's
LEAK = 0.1


@dataclass
class DeepSVDDNetConfig:
    resolution: int = 64
    channels: int = 1
    width: int = 32            # filters of the first stage, doubled per stage
    stages: int = 4
    rep_dim: int = 128

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def widths(self) -> list[int]:
        return [self.width * 2 ** i for i in range(self.stages)]

    @property
    def bottom(self) -> int:
        side = self.resolution // 2 ** self.stages
        assert side * 2 ** self.stages == self.resolution and side >= 1, \
            f"resolution {self.resolution} is not divisible by 2^{self.stages}"
        return side


class DeepSVDDEncoder(nn.Module):
    """phi: [N, C, R, R] in [-1, 1] -> [N, rep_dim]; bias-free throughout."""

    def __init__(self, cfg: DeepSVDDNetConfig):
        super().__init__()
        self.cfg = cfg
        layers, c_in = [], cfg.channels
        for c in cfg.widths:
            layers += [nn.Conv2d(c_in, c, 5, padding=2, bias=False), nn.BatchNorm2d(c, eps=BN_EPS, affine=False),
                       nn.LeakyReLU(LEAK), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in * cfg.bottom ** 2, cfg.rep_dim, bias=False)
        self.register_buffer("centre", torch.zeros(cfg.rep_dim))     # c, set once after pretraining

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """||phi(x) - c||^2, the anomaly score. [N]"""
        return ((self(x) - self.centre) ** 2).sum(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, c = self.cfg.resolution, self.cfg.channels
        assert x.shape[1:] == (c, r, r), f"expected [N, {c}, {r}, {r}], got {tuple(x.shape)}"
        return self.fc(self.features(x).flatten(1))             # [N, rep_dim]


class DeepSVDDDecoder(nn.Module):
    """The encoder's mirror, used only to pretrain phi as an autoencoder. [N, rep_dim] -> [N, C, R, R]."""

    def __init__(self, cfg: DeepSVDDNetConfig):
        super().__init__()
        self.cfg = cfg
        widths = cfg.widths[::-1]
        self.fc = nn.Linear(cfg.rep_dim, widths[0] * cfg.bottom ** 2, bias=False)
        layers = []
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.Upsample(scale_factor=2), nn.Conv2d(c_in, c_out, 5, padding=2, bias=False),
                       nn.BatchNorm2d(c_out, eps=BN_EPS, affine=False), nn.LeakyReLU(LEAK)]
        layers += [nn.Upsample(scale_factor=2), nn.Conv2d(widths[-1], cfg.channels, 5, padding=2, bias=False)]
        self.net = nn.Sequential(*layers, nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        side = self.cfg.bottom
        return self.net(F.leaky_relu(self.fc(z), LEAK).view(len(z), -1, side, side))


def svdd_centre(features: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """c = mean of the initial outputs [N, D] -> [D], with entries closer than eps to 0 moved to +-eps
    (a zero coordinate could be matched trivially by zero weights)."""
    assert features.ndim == 2, features.shape
    c = features.mean(dim=0)
    small = c.abs() < eps
    return torch.where(small & (c < 0), torch.full_like(c, -eps), torch.where(small, torch.full_like(c, eps), c))


def deep_sad_loss(dist_unlabelled: torch.Tensor, dist_labelled: torch.Tensor | None = None,
                  labels: torch.Tensor | None = None, eta: float = 1.0, eps: float = 1e-6) -> torch.Tensor:
    """Deep SAD's loss from squared distances to c: mean over unlabelled d + eta * mean over labelled
    (d + eps)^y, with y = +1 for labelled normals and -1 for labelled anomalies (an anomaly lowers the loss
    by moving away from c). Without labelled images it is Deep SVDD's one-class loss, mean d."""
    assert dist_unlabelled.ndim == 1, dist_unlabelled.shape
    loss = dist_unlabelled.mean()
    if dist_labelled is not None and len(dist_labelled):
        assert labels is not None and labels.shape == dist_labelled.shape, (dist_labelled.shape, labels)
        loss = loss + eta * ((dist_labelled + eps) ** labels.to(dist_labelled.dtype)).mean()
    return loss

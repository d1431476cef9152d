"""GANomaly (Akcay et al., ACCV 2018): an encoder-decoder-encoder generator and a DCGAN discriminator.

    G_E   x [N, C, R, R] -> z [N, nz]              DCGAN encoder: conv4x4/2 (+BN from the 2nd) -> LeakyReLU
                                                   down to 4 px, then conv4x4 valid -> [N, nz, 1, 1]
    G_D   z -> x_hat [N, C, R, R] in [-1, 1]        DCGAN decoder: convT4x4 -> BN -> ReLU ... -> tanh
    E     x_hat -> z_hat [N, nz]                    a second encoder, same shape as G_E
    D     x -> (logit [N], features [N, c, 4, 4])  the DCGAN encoder with nz = 1 (the features feed w_adv)

Anomaly score: mean over nz of (z - z_hat)^2, as the official code computes it (the paper writes the
L1 norm; the ranking of images, hence the AUROC, can differ slightly between the two).
Weights start from the DCGAN initialisation the official code applies (`dcgan_init`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class GanomalyConfig:
    resolution: int = 64
    channels: int = 1
    width: int = 32            # the paper's ngf = ndf = 64; 32 on a CPU
    nz: int = 100

    def to_dict(self) -> dict:
        return asdict(self)


def _n_stages(resolution: int) -> int:
    n = int(math.log2(resolution)) - 2
    assert 2 ** (n + 2) == resolution and n >= 1, f"resolution must be a power of two >= 8, got {resolution}"
    return n


class DcganEncoder(nn.Module):
    """[N, C, R, R] -> ([N, out], features [N, c_last, 4, 4])."""

    def __init__(self, cfg: GanomalyConfig, out: int):
        super().__init__()
        layers, c_in, c = [], cfg.channels, cfg.width
        for i in range(_n_stages(cfg.resolution)):
            layers += [nn.Conv2d(c_in, c, 4, 2, 1, bias=False)]
            layers += [nn.BatchNorm2d(c)] if i > 0 else []
            layers += [nn.LeakyReLU(0.2)]
            c_in, c = c, c * 2
        self.features = nn.Sequential(*layers)
        self.last = nn.Conv2d(c_in, out, 4, 1, 0, bias=False)
        self.cfg = cfg

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.cfg.resolution
        assert x.shape[1:] == (self.cfg.channels, r, r), (f"expected [N, {self.cfg.channels}, {r}, {r}], "
                                                          f"got {tuple(x.shape)}")
        f = self.features(x)
        return self.last(f).flatten(1), f


class DcganDecoder(nn.Module):
    """[N, nz] -> [N, C, R, R] in [-1, 1]."""

    def __init__(self, cfg: GanomalyConfig):
        super().__init__()
        n = _n_stages(cfg.resolution)
        c = cfg.width * 2 ** (n - 1)
        layers = [nn.ConvTranspose2d(cfg.nz, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        layers += [nn.ConvTranspose2d(c, cfg.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class GanomalyGenerator(nn.Module):
    def __init__(self, cfg: GanomalyConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder1, self.decoder, self.encoder2 = (DcganEncoder(cfg, cfg.nz), DcganDecoder(cfg),
                                                      DcganEncoder(cfg, cfg.nz))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_hat [N, C, R, R], z [N, nz], z_hat [N, nz])."""
        z = self.encoder1(x)[0]
        x_hat = self.decoder(z)
        return x_hat, z, self.encoder2(x_hat)[0]


class GanomalyDiscriminator(nn.Module):
    def __init__(self, cfg: GanomalyConfig):
        super().__init__()
        self.net = DcganEncoder(cfg, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logit [N], features [N, c, 4, 4])."""
        logit, f = self.net(x)
        return logit[:, 0], f


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation (Radford et al. 2016; GANomaly's `weights_init`): conv weights ~ N(0, 0.02),
    batch-norm scales ~ N(1, 0.02), batch-norm shifts 0. Use as `net.apply(dcgan_init)`."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


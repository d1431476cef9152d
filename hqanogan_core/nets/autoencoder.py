"""Convolutional autoencoder and VAE: the plainest models of normal (baselines).

Both squeeze a [N, C, R, R] image in [-1, 1] through a DCGAN-style strided-conv encoder to a vector and
decode it with transposed convs; one stage per halving down to 4x4 (4 stages at 64 px). The VAE
(Kingma & Welling 2014) encodes a mean and a log-variance instead of a point.

    encoder  conv4x4/2 -> BN -> LeakyReLU(0.2), channels width * 2^i (capped)      [N, c_last, 4, 4]
             flatten -> linear                                                       [N, latent (x2 for VAE)]
    decoder  linear -> [N, c_last, 4, 4] -> convT4x4/2 -> BN -> ReLU ... -> convT -> tanh   [N, C, R, R]
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


LOGVAR_RANGE = (-30.0, 20.0)   # keeps exp(logvar) finite in float32 early in training


@dataclass
class AutoencoderConfig:
    resolution: int = 64
    channels: int = 1
    width: int = 32            # channels of the first stage; doubled per stage
    max_width: int = 256
    latent: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


def stage_widths(cfg: AutoencoderConfig) -> list[int]:
    """Channels after each stride-2 stage, from R down to 4 px."""
    n = int(math.log2(cfg.resolution)) - 2
    assert 2 ** (n + 2) == cfg.resolution and n >= 1, f"resolution must be a power of two >= 8, got {cfg.resolution}"
    return [min(cfg.width * 2 ** i, cfg.max_width) for i in range(n)]


class ConvEncoder(nn.Module):
    """[N, C, R, R] -> [N, out_dim]."""

    def __init__(self, cfg: AutoencoderConfig, out_dim: int):
        super().__init__()
        widths, layers, c_in = stage_widths(cfg), [], cfg.channels
        for i, c in enumerate(widths):
            layers += [nn.Conv2d(c_in, c, 4, 2, 1, bias=i == 0)]
            layers += [nn.BatchNorm2d(c)] if i > 0 else []
            layers += [nn.LeakyReLU(0.2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in * 16, out_dim)
        self.cfg = cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.cfg.resolution
        assert x.shape[1:] == (self.cfg.channels, r, r), (f"expected [N, {self.cfg.channels}, {r}, {r}], "
                                                          f"got {tuple(x.shape)}")
        return self.fc(self.features(x).flatten(1))


class ConvDecoder(nn.Module):
    """[N, latent] -> [N, C, R, R] in [-1, 1]."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        widths = stage_widths(cfg)[::-1]                     # deepest first
        self.fc = nn.Linear(cfg.latent, widths[0] * 16)
        layers = []
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(widths[-1], cfg.channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(nn.BatchNorm2d(widths[0]), nn.ReLU(), *layers)
        self.c0 = widths[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(len(z), self.c0, 4, 4))


class ConvAutoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = ConvEncoder(cfg, cfg.latent)
        self.decoder = ConvDecoder(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))                 # [N, C, R, R]


class ConvVAE(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = ConvEncoder(cfg, 2 * cfg.latent)
        self.decoder = ConvDecoder(cfg)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)         # [N, latent] each
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def forward(self, x: torch.Tensor, sample: bool = True):
        """(x_hat [N, C, R, R], mu, logvar); `sample=False` decodes the mean."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return self.decoder(z), mu, logvar


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over latent dims. [N, D] -> [N]"""
    return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(dim=1)


def gaussian_nll(x: torch.Tensor, x_hat: torch.Tensor, sigma: float) -> torch.Tensor:
    """-log N(x; x_hat, sigma^2 I) per sample, summed over pixels, without the constant. -> [N]"""
    return ((x - x_hat) ** 2).flatten(1).sum(dim=1) / (2 * sigma ** 2)

"""The tiny generator, encoder-sized images and perceptual distance the unit tests share (a few ms each)."""
import numpy as np
import torch
from torch import nn

from hqanogan_core.nets.perceptual import LpipsNet, PerceptualConfig, PerceptualDistance
from hqanogan_core.nets.stylegan2 import Discriminator, Generator


R = 16  # smallest size the encoder takes (c3 is 1x1): keeps CPU tests fast


def tiny_gan(seed=0):
    torch.manual_seed(seed)
    G = Generator(resolution=R, z_dim=16, w_dim=16, channel_base=128, channel_max=16)
    D = Discriminator(resolution=R, channel_base=128, channel_max=16)
    with torch.no_grad():  # a w_avg as if tracked during training
        G.mapping.w_avg.copy_(G.mapping(torch.randn(256, 16), update_w_avg=False)[:, 0].mean(0))
    return G.eval(), D.eval()


def phantom_like(n=12, seed=0):
    """Bright thorax, two dark lung ellipses with jitter, a little noise. [n, 1, R, R] in [-1, 1]"""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:R, 0:R] / (R - 1) * 2 - 1
    out = []
    for _ in range(n):
        img = 0.6 - 0.3 * (u ** 2 + v ** 2)
        for side in (-1, 1):
            cu, cv = side * rng.uniform(0.35, 0.45), rng.uniform(-0.1, 0.1)
            au, av = rng.uniform(0.2, 0.3), rng.uniform(0.45, 0.6)
            img = np.where(((u - cu) / au) ** 2 + ((v - cv) / av) ** 2 < 1, -0.5, img)
        out.append(img + 0.05 * rng.standard_normal((R, R)))
    return torch.tensor(np.stack(out)[:, None], dtype=torch.float32).clamp(-1, 1)


class TinyBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(8, 8, 3, 2, 1)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        return [a, torch.relu(self.c2(a))]


def tiny_percep():
    return PerceptualDistance(PerceptualConfig(min_size=16, verbose=False), model=LpipsNet(TinyBackbone(), [8, 8]),
                              backend_name="lpips-tiny")

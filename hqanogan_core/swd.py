"""Multi-scale sliced Wasserstein distance (SWD, Karras et al. 2018 "Progressive Growing of GANs").

An image-quality metric that needs no pretrained network: compare the distributions of local 7x7
patches of two image sets at every level of a Laplacian pyramid. Per level, descriptors are
normalised per channel (each set separately, as in ProGAN), projected on random unit directions, and
the 1-D Wasserstein distance between the sorted projections is averaged. Reported x1e3, like ProGAN.
Deterministic for a given seed; lower = closer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur5(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """5x5 binomial filter, reflect padding. [N, C, H, W]"""
    c = x.shape[1]
    k = (_BINOMIAL[:, None] * _BINOMIAL[None, :] * gain).to(x)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(F.pad(x, [2, 2, 2, 2], mode="reflect"), k, groups=c)


def pyr_down(x):  # [N,C,H,W] -> [N,C,H/2,W/2]
    return _blur5(x)[:, :, ::2, ::2]


def pyr_up(x):  # [N,C,H,W] -> [N,C,2H,2W]
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _blur5(up, gain=4.0)


def laplacian_pyramid(x: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """[finest band-pass, ..., coarsest low-pass]; level i has size H / 2**i."""
    levels, cur = [], x
    for _ in range(num_levels - 1):
        down = pyr_down(cur)
        levels.append(cur - pyr_up(down))
        cur = down
    levels.append(cur)
    return levels


def patch_locations(n: int, h: int, w: int, per_image: int, size: int, gen: torch.Generator):
    """Random top-left corners: (image index, y, x), each [n * per_image]."""
    ys = torch.randint(0, h - size + 1, (n, per_image), generator=gen)
    xs = torch.randint(0, w - size + 1, (n, per_image), generator=gen)
    idx = torch.arange(n)[:, None].expand(n, per_image)
    return idx.reshape(-1), ys.reshape(-1), xs.reshape(-1)


def sample_descriptors(x: torch.Tensor, locations, size: int) -> torch.Tensor:
    """size x size patches at `locations`. [N,C,H,W] -> [M, C, size, size]"""
    patches = x.unfold(2, size, 1).unfold(3, size, 1)                  # [N, C, H-s+1, W-s+1, s, s] (a view)
    idx, ys, xs = locations
    return patches[idx, :, ys, xs]


def normalize_descriptors(d: torch.Tensor) -> torch.Tensor:
    """Zero mean / unit std per channel over all descriptors and positions; flatten. [M,C,s,s] -> [M, C*s*s]"""
    d = d - d.mean(dim=(0, 2, 3), keepdim=True)
    d = d / (d.std(dim=(0, 2, 3), keepdim=True) + 1e-8)
    return d.reshape(d.shape[0], -1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, gen: torch.Generator, dir_repeats=4, dirs_per_repeat=128):
    """Mean 1-D Wasserstein distance over random projections. a, b [M, D] (same M)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    results = []
    for _ in range(dir_repeats):
        dirs = torch.randn(a.shape[1], dirs_per_repeat, generator=gen, dtype=a.dtype)
        dirs = dirs / dirs.square().sum(dim=0, keepdim=True).sqrt()
        # sorted along rows of the transposed projections: the same values, twice as fast on a CPU
        pa = torch.sort((a @ dirs).T.contiguous(), dim=1).values
        pb = torch.sort((b @ dirs).T.contiguous(), dim=1).values
        results.append((pa - pb).abs().mean())
    return torch.stack(results).mean().item()


@torch.no_grad()
def swd(
    real: torch.Tensor, fake: torch.Tensor, seed: int = 0, descriptors_per_image: int = 128,
    patch: int = 7, min_resolution: int = 16, dir_repeats: int = 4, dirs_per_repeat: int = 128,
) -> dict:
    """SWD between two image sets [N, C, H, W] (same C/H/W; N may differ, the larger is subsampled).

    Returns {'levels': {resolution: swd x1e3}, 'avg': mean over levels}.
    """
    assert real.ndim == 4 and real.shape[1:] == fake.shape[1:], (real.shape, fake.shape)
    n = min(len(real), len(fake))
    real, fake = real[:n].detach().float().cpu(), fake[:n].detach().float().cpu()
    res = real.shape[-1]
    num_levels = 1
    while res // 2**num_levels >= min_resolution:
        num_levels += 1
    gen = torch.Generator().manual_seed(seed)
    pyr_r, pyr_f = laplacian_pyramid(real, num_levels), laplacian_pyramid(fake, num_levels)
    levels = {}
    for lr, lf in zip(pyr_r, pyr_f):
        # the same random locations in both sets (common random numbers: less variance, and exactly 0
        # for identical sets; ProGAN drew them independently)
        loc = patch_locations(n, lr.shape[2], lr.shape[3], descriptors_per_image, patch, gen)
        dr = normalize_descriptors(sample_descriptors(lr, loc, patch))
        df = normalize_descriptors(sample_descriptors(lf, loc, patch))
        levels[lr.shape[-1]] = sliced_wasserstein(dr, df, gen, dir_repeats, dirs_per_repeat) * 1e3
    return {"levels": levels, "avg": sum(levels.values()) / len(levels)}

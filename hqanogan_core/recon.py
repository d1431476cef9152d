"""How well does an inversion reproduce an image? L1, PSNR, SSIM and perceptual distance, plus wall time.

All images are [N, C, H, W] in [-1, 1]. Every metric is per image ([N]), so the book can show
distributions and bootstrap them; `summarise` turns them into mean and standard error.

    l1          mean |x - x_hat|                          (in [-1, 1] units: 2 = black vs white)
    psnr        10 log10(peak^2 / MSE), peak-to-peak 2     (project.psnr)
    ssim        Wang et al. 2004, Gaussian window (11 px, sigma 1.5), K1 0.01, K2 0.03, data range 2,
                'valid' windows only, averaged over channels and positions
    perceptual  the PerceptualDistance used in training (LPIPS family; backend recorded by the caller)

`compare_inversions` times the encoder (one forward pass of E and G) against the optimisation-based
projector on the same images, on the same device, with the same batch.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from .nets.psp import encode_images  # the one encode-then-synthesise (re-exported here)
from .project import project, psnr

__all__ = ["ssim", "reconstruction_metrics", "summarise", "encode_images", "compare_inversions"]


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(ax ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]                          # [1, 1, size, size]


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity per image. a, b [N, C, H, W] -> [N] (1 = identical)."""
    assert a.shape == b.shape and a.ndim == 4, f"expected two [N, C, H, W] tensors, got {a.shape}, {b.shape}"
    if min(a.shape[2:]) < window:
        raise ValueError(f"images of {tuple(a.shape[2:])} px are smaller than the {window} px SSIM window")
    n, c = a.shape[:2]
    x = a.double().reshape(n * c, 1, *a.shape[2:])
    y = b.double().reshape(n * c, 1, *b.shape[2:])
    w = _gaussian_window(window, sigma).to(x.device)
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    var_x = F.conv2d(x * x, w) - mu_x ** 2
    var_y = F.conv2d(y * y, w) - mu_y ** 2
    cov = F.conv2d(x * y, w) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.reshape(n, c, -1).mean(dim=(1, 2)).float()


@torch.no_grad()
def reconstruction_metrics(x: torch.Tensor, x_hat: torch.Tensor, percep=None, batch: int = 64) -> dict[str, np.ndarray]:
    """Per-image {'l1', 'psnr', 'ssim', ('perceptual')} for images x and reconstructions x_hat."""
    assert x.shape == x_hat.shape and x.ndim == 4, f"expected two [N, C, H, W] tensors, got {x.shape}, {x_hat.shape}"
    x, x_hat = x.float().cpu(), x_hat.float().cpu().clamp(-1, 1)
    out = {
        "l1": (x - x_hat).abs().mean(dim=(1, 2, 3)).numpy(),
        "psnr": psnr(x_hat, x).numpy(),
        "ssim": ssim(x, x_hat).numpy(),
    }
    if percep is not None:
        dev = next(percep.parameters()).device
        out["perceptual"] = torch.cat([percep(x[i:i + batch].to(dev), x_hat[i:i + batch].to(dev)).cpu()
                                       for i in range(0, len(x), batch)]).numpy()
    return out


def summarise(per_image: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """{metric: (mean, standard error of the mean)}."""
    return {k: (float(np.mean(v)), float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0)
            for k, v in per_image.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare_inversions(G, E, images: torch.Tensor, percep, projector_steps: int = 300, spaces=("w+",),
                       encoder_repeats: int = 5, seed: int = 0) -> dict:
    """Encoder vs projector on the same images: per-image metrics and seconds per image for each.

    The encoder is timed as the median of `encoder_repeats` passes over all images (one batch); the
    projector optimises all images together for `projector_steps` steps (each image has its own code
    and Adam state, so batching changes nothing but speed), once per latent space in `spaces`.
    Returns {method: {"metrics": per-image dict, "seconds_per_image": float, ...}}.
    """
    device = G.w_avg.device
    n = len(images)
    times = []
    for _ in range(encoder_repeats):
        _sync(device)
        t0 = time.perf_counter()
        _, rec = encode_images(G, E, images, batch=n)
        _sync(device)
        times.append(time.perf_counter() - t0)
    results = {"encoder": {"metrics": reconstruction_metrics(images, rec, percep), "reconstructions": rec,
                           "seconds_per_image": float(np.median(times)) / n}}
    for space in spaces:
        _sync(device)
        t0 = time.perf_counter()
        ws, history = project(G, images, space=space, steps=projector_steps, percep=percep, seed=seed)
        _sync(device)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            rec = torch.cat([G.synthesis(ws[i:i + 64], noise_mode="const").cpu() for i in range(0, n, 64)])
        results[f"projector_{space}"] = {"metrics": reconstruction_metrics(images, rec, percep), "reconstructions": rec,
                                         "seconds_per_image": seconds / n, "history": history,
                                         "steps": projector_steps}
    return results

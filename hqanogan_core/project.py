"""Optimisation-based GAN inversion ("projector"): find ws such that G.synthesis(ws) matches the images.

The StyleGAN2 projector recipe (Karras et al. 2020, Appendix D / the official projector), with the
encoder's losses instead of VGG-LPIPS only:

  start   w = w_avg (the generator's tracked mean), in W ([N, 1, w_dim], broadcast) or W+ ([N, num_ws, w_dim])
  loss    lambda_l2 * mean (x - G(w))^2 + lambda_perceptual * LPIPS(x, G(w))     per image, summed
  lr      cosine ramp-down over the last 25 % of steps, linear ramp-up over the first 5 %
  noise   Gaussian noise on w, std = w_std * 0.05 * max(0, 1 - t / 0.75)^2 (t = step / steps), where
          w_std^2 = E ||w - w_avg||^2 over mapped z samples; helps escape the start point
  Adam    betas (0.9, 0.999); the synthesis noise is the fixed buffer (noise_mode 'const'), not optimised

Each image is optimised independently (the per-image losses are summed and Adam is per-element).
Minutes per image at 1024 px on a GPU (pSp paper) vs one forward pass for the encoder: the book uses it
as the "best possible inversion" reference.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["project", "lr_schedule", "estimate_w_std"]


def lr_schedule(t: float, lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """Official projector lr at progress t in [0, 1]: linear warm-up, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / rampup)
    return lr * ramp


@torch.no_grad()
def estimate_w_std(G, n: int = 10000, seed: int = 123, chunk: int = 1000) -> float:
    """sqrt(E ||w - w_avg||^2) over n mapped z (the scale of the latent noise)."""
    g = torch.Generator().manual_seed(seed)
    device = G.w_avg.device
    total = 0.0
    for i in range(0, n, chunk):
        z = torch.randn(min(chunk, n - i), G.z_dim, generator=g).to(device)
        w = G.mapping(z, update_w_avg=False)[:, 0]                         # [n, w_dim]
        total += (w - G.w_avg).square().sum().item()
    return math.sqrt(total / n)


def project(G, images: torch.Tensor, space: str = "w+", steps: int = 300, lr: float = 0.1,
            lambda_l2: float = 1.0, lambda_perceptual: float = 0.8, percep=None,
            initial_noise_factor: float = 0.05, noise_ramp_length: float = 0.75,
            lr_rampdown_length: float = 0.25, lr_rampup_length: float = 0.05,
            w_std_samples: int = 10000, seed: int = 0, progress: bool = False):
    """Invert `images` [N, C, R, R] (in [-1, 1]) through the frozen G.

    percep: a PerceptualDistance (built with backend 'auto' if None and lambda_perceptual > 0).
    Returns (ws [N, num_ws, w_dim] detached, history: one dict per step with the batch-mean
    loss / l2 / perceptual and the lr).
    """
    from tqdm.auto import tqdm

    if space not in ("w", "w+"):
        raise ValueError(f"space must be 'w' or 'w+', got {space!r}")
    n = images.shape[0]
    assert images.ndim == 4 and images.shape[1:] == (G.img_channels, G.resolution, G.resolution), images.shape
    if lambda_perceptual > 0 and percep is None:
        from .nets.perceptual import PerceptualDistance

        percep = PerceptualDistance()
    was_training = G.training
    G.eval()
    req = [p.requires_grad for p in G.parameters()]
    G.requires_grad_(False)
    device = G.w_avg.device
    x = images.to(device)

    w_std = estimate_w_std(G, w_std_samples) if initial_noise_factor > 0 else 0.0
    slots = G.num_ws if space == "w+" else 1
    w_opt = G.w_avg.detach().clone()[None, None].repeat(n, slots, 1).requires_grad_(True)  # [N, S, w_dim]
    opt = torch.optim.Adam([w_opt], lr=lr, betas=(0.9, 0.999))
    g = torch.Generator().manual_seed(seed)
    history = []
    for step in tqdm(range(steps), disable=not progress, desc=f"project ({space})"):
        t = step / steps
        cur_lr = lr_schedule(t, lr, lr_rampdown_length, lr_rampup_length)
        for group in opt.param_groups:
            group["lr"] = cur_lr
        noise_scale = w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
        w_noise = torch.randn(w_opt.shape, generator=g).to(device) * noise_scale
        ws = (w_opt + w_noise).expand(n, G.num_ws, -1)                     # [N, num_ws, w_dim]
        x_hat = G.synthesis(ws, noise_mode="const")                         # [N, C, R, R]
        l2 = (x_hat - x).square().mean(dim=[1, 2, 3])                       # [N]
        perc = percep(x_hat, x) if lambda_perceptual > 0 else torch.zeros_like(l2)
        loss = (lambda_l2 * l2 + lambda_perceptual * perc).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append({"step": step, "loss": loss.item() / n, "l2": l2.mean().item(),
                        "perceptual": perc.mean().item(), "lr": cur_lr})

    for p, r in zip(G.parameters(), req):
        p.requires_grad_(r)
    G.train(was_training)
    ws = w_opt.detach().expand(n, G.num_ws, -1).clone()
    assert ws.shape == (n, G.num_ws, G.w_dim), ws.shape
    return ws, history


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [-1, 1] (peak-to-peak 2). [N, C, H, W] x2 -> [N]"""
    mse = F.mse_loss(a, b, reduction="none").flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))

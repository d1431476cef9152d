"""Optimisation-based GAN inversion ("projector"): find ws such that G.synthesis(ws) matches the images.

The StyleGAN2 projector recipe (Karras et al. 2020, Appendix D / the official projector), with the
encoder's losses instead of VGG-LPIPS only:

  start   w = w_avg (the generator's tracked mean), in W ([N, 1, w_dim], broadcast) or W+ ([N, num_ws, w_dim])
  loss    lambda_l2 * pixel_loss(x - G(w)) + lambda_perceptual * LPIPS(x, G(w))    per image, summed;
          the pixel loss is the mean squared residual ("mse") or, for `refine`, optionally the mean
          smooth absolute residual ("l1", see `pixel_loss`)
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

__all__ = ["project", "refine", "lr_schedule", "estimate_w_std", "pixel_loss", "PIXEL_LOSSES"]

PIXEL_LOSSES = ("mse", "l1")
L1_EPS = 1e-6          # sqrt(r^2 + eps): |r| with a finite gradient at 0


def pixel_loss(residual: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Per-image pixel loss of a residual [N, C, H, W] -> [N]: the mean of r^2 ("mse") or of sqrt(r^2 + eps),
    a smooth |r| ("l1").

    The two differ in how much a large residual pulls: the gradient of r^2 grows with r, so an optimiser on
    MSE works hardest on the pixels it fits worst - on an abnormal image, the finding. The gradient of |r| has
    the same size wherever |r| >> sqrt(eps), so no region dominates: the fit follows the bulk of the image
    (a robust, median-like fit) and leaves an outlying region in the residual."""
    assert residual.ndim == 4, f"expected a residual [N, C, H, W], got {tuple(residual.shape)}"
    if kind == "mse":
        return residual.square().mean(dim=[1, 2, 3])
    if kind == "l1":
        return (residual.square() + L1_EPS).sqrt().mean(dim=[1, 2, 3])
    raise ValueError(f"unknown pixel loss {kind!r}: use one of {PIXEL_LOSSES}")


def lr_schedule(t: float, lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """Official projector lr at progress t in [0, 1]: linear warm-up, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * (min(1.0, t / rampup) if rampup > 0 else 1.0)
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
            w_std_samples: int = 10000, seed: int = 0, progress: bool = False, init: torch.Tensor | None = None,
            prior=None, lambda_prior: float = 0.0, pixel: str = "mse"):
    """Invert `images` [N, C, R, R] (in [-1, 1]) through the frozen G.

    percep: a PerceptualDistance (built with backend 'auto' if None and lambda_perceptual > 0).
    init: start codes [N, num_ws, w_dim] (e.g. the encoder's, see `refine`) instead of w_avg (W+ only).
    prior, lambda_prior: per-slot Gaussians (`terms.LatentGaussians`); adds lambda_prior x the mean over
    slots of the squared Mahalanobis distance / w_dim (about 1 for a normal code) to each image's loss.
    pixel: the pixel loss, "mse" or "l1" (`pixel_loss`).
    Returns (ws [N, num_ws, w_dim] detached, history: one dict per step with the batch-mean
    loss / l2 / perceptual and the lr).
    """
    from tqdm.auto import tqdm

    if space not in ("w", "w+"):
        raise ValueError(f"space must be 'w' or 'w+', got {space!r}")
    if pixel not in PIXEL_LOSSES:
        raise ValueError(f"unknown pixel loss {pixel!r}: use one of {PIXEL_LOSSES}")
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
    if init is not None:
        if space != "w+" or tuple(init.shape) != (n, G.num_ws, G.w_dim):
            raise ValueError(f"init must be W+ codes [{n}, {G.num_ws}, {G.w_dim}] with space 'w+', got "
                             f"{tuple(init.shape)} with space {space!r}")
        w_opt = init.detach().clone().to(device).requires_grad_(True)
    else:
        w_opt = G.w_avg.detach().clone()[None, None].repeat(n, slots, 1).requires_grad_(True)  # [N, S, w_dim]
    if prior is not None and lambda_prior > 0:
        prior_mean = torch.as_tensor(prior.means, dtype=torch.float32, device=device)        # [L, D]
        prior_precision = torch.as_tensor(prior.precisions, dtype=torch.float32, device=device)  # [L, D, D]
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
        l2 = (x_hat - x).square().mean(dim=[1, 2, 3])                       # [N], logged whatever the loss
        rec = pixel_loss(x_hat - x, pixel)                                  # [N]
        perc = percep(x_hat, x) if lambda_perceptual > 0 else torch.zeros_like(l2)
        loss = lambda_l2 * rec + lambda_perceptual * perc
        if prior is not None and lambda_prior > 0:
            diff = ws - prior_mean
            d2 = torch.einsum("nld,lde,nle->nl", diff, prior_precision, diff).mean(dim=1) / G.w_dim   # [N]
            loss = loss + lambda_prior * d2
        loss = loss.sum()
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


def refine(G, images: torch.Tensor, ws: torch.Tensor, steps: int = 50, lr: float = 0.01, prior=None,
           lambda_prior: float = 0.0, batch: int = 64, loss: str = "mse") -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder-initialised inversion: a short projector run in W+ from the encoder's codes `ws`.

    A pixel loss only, `loss` = "mse" or the robust "l1" (`pixel_loss`; no perceptual loss, no latent noise,
    no warm-up; cosine ramp-down of the lr over the last 25 % of steps), optionally under the normal-latent
    prior (see `project`). The encoder puts the code near a normal image; the few steps fit what a normal
    image of this patient looks like in detail, which the generator can draw, while an anomaly it cannot draw
    stays in the residual (more so under "l1", which does not chase the largest residuals).
    Returns (refined ws [N, L, D], G(refined ws) [N, C, R, R] clamped to [-1, 1]), both on the CPU."""
    assert ws.shape[0] == images.shape[0], (ws.shape, images.shape)
    out_ws, out_rec = [], []
    for i in range(0, len(images), batch):
        with torch.enable_grad():                       # callers may score under no_grad
            w, _ = project(G, images[i:i + batch], "w+", steps=steps, lr=lr, lambda_l2=1.0, lambda_perceptual=0.0,
                           initial_noise_factor=0.0, lr_rampup_length=0.0, init=ws[i:i + batch], prior=prior,
                           lambda_prior=lambda_prior, pixel=loss)
        with torch.no_grad():
            out_rec.append(G.synthesis(w, noise_mode="const").clamp(-1, 1).cpu())
        out_ws.append(w.cpu())
    return torch.cat(out_ws), torch.cat(out_rec)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [-1, 1] (peak-to-peak 2). [N, C, H, W] x2 -> [N]"""
    mse = F.mse_loss(a, b, reduction="none").flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))

"""Projector: the loss decreases and a generated image is recovered better than the w_avg start."""
import math

import pytest
import torch

from hqanogan_core.nets.stylegan2 import Generator
from hqanogan_core.project import estimate_w_std, lr_schedule, pixel_loss, project, psnr, refine
from tests.tiny import tiny_percep


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    G = Generator(resolution=32, z_dim=16, w_dim=16, channel_base=128, channel_max=16).eval()
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(512, 16), update_w_avg=False)[:, 0].mean(0))
    return G


def test_lr_schedule():
    assert lr_schedule(0.0, 0.1) == 0.0                       # warm-up starts at 0
    assert lr_schedule(0.05, 0.1) == pytest.approx(0.1)       # full lr after 5 %
    assert lr_schedule(0.5, 0.1) == pytest.approx(0.1)
    assert lr_schedule(0.875, 0.1) == pytest.approx(0.05)     # half-way down the cosine ramp
    assert lr_schedule(1.0, 0.1) == pytest.approx(0.0)


@pytest.mark.parametrize("space", ["w", "w+"])
def test_projection_recovers_generated_image(G, space):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        ws_true = G.mapping(torch.randn(2, 16, generator=g), update_w_avg=False)
        target = G.synthesis(ws_true, noise_mode="const")                      # [2, 1, 32, 32]
        start = G.synthesis(G.w_avg.expand(2, G.num_ws, -1), noise_mode="const")
    percep = tiny_percep()
    params_before = [p.detach().clone() for p in G.parameters()]
    ws, hist = project(G, target, space=space, steps=80, lr=0.1, percep=percep, w_std_samples=500)
    assert ws.shape == (2, G.num_ws, G.w_dim) and len(hist) == 80
    if space == "w":
        assert torch.equal(ws[:, 0], ws[:, -1])
    first, last = sum(h["loss"] for h in hist[:5]) / 5, sum(h["loss"] for h in hist[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    with torch.no_grad():
        recon = G.synthesis(ws, noise_mode="const")
    assert (psnr(recon, target) > psnr(start, target) + 3).all()              # >= 3 dB better than w_avg
    assert all(torch.equal(a, b) for a, b in zip(params_before, G.parameters()))  # G untouched
    assert all(p.requires_grad for p in G.parameters())                       # and its flags restored


def test_w_std_and_bad_space(G):
    assert math.isfinite(estimate_w_std(G, 200)) and estimate_w_std(G, 200) > 0
    with pytest.raises(ValueError):
        project(G, torch.zeros(1, 1, 32, 32), space="z", steps=1, lambda_perceptual=0)


def test_pixel_loss_by_hand():
    r = torch.tensor([[[[0.0, 3.0], [-4.0, 1.0]]]])                  # [1, 1, 2, 2]
    assert pixel_loss(r, "mse").item() == pytest.approx((9 + 16 + 1) / 4)
    assert pixel_loss(r, "l1").item() == pytest.approx((1e-3 + 3 + 4 + 1) / 4, abs=1e-5)   # sqrt(0 + 1e-6) = 1e-3
    with pytest.raises(ValueError, match="unknown pixel loss 'l2'"):
        pixel_loss(r, "l2")
    with pytest.raises(ValueError, match="unknown pixel loss 'huber'"):
        project(torch.nn.Identity(), r, steps=1, pixel="huber")


def test_l1_refinement_leaves_an_outlier_in_the_residual(G):
    """The point of the robust loss: started from the same code, MSE spends its steps on the pixels it fits
    worst - a bright square the generator cannot draw - while L1 fits the rest of the image; so the square's
    share of the residual is larger after L1, and L1 fits outside the square at least as well."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        ws_true = G.mapping(torch.randn(3, 16, generator=g), update_w_avg=False)
        target = G.synthesis(ws_true, noise_mode="const")
    square = torch.zeros_like(target, dtype=torch.bool)
    square[..., 10:16, 10:16] = True
    target = torch.where(square, torch.ones_like(target), target)          # the "finding"
    start = (ws_true + 0.3 * torch.randn(ws_true.shape, generator=g)).detach()
    out = {}
    for loss in ("mse", "l1"):
        _, rec = refine(G, target, start, steps=40, lr=0.02, loss=loss)
        res = (target - rec).abs()
        out[loss] = (res[square].mean() / res[~square].mean()).item(), res[~square].mean().item()
    assert out["l1"][0] > out["mse"][0]                  # the finding stands out more against the rest
    assert out["l1"][1] <= out["mse"][1] * 1.05          # and the rest is fitted about as well

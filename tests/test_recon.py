"""Reconstruction metrics: SSIM against hand computations and properties; encoder-vs-projector harness."""
import math

import numpy as np
import pytest
import torch

from hqanogan_core.recon import compare_inversions, reconstruction_metrics, ssim, summarise

from tests.tiny import tiny_gan, tiny_percep


def test_ssim_identical_is_one_and_symmetric():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 2, 24, 24, generator=g) * 2 - 1
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    assert torch.allclose(ssim(a, a), torch.ones(3))
    assert torch.allclose(ssim(a, b), ssim(b, a))
    noisier = (a + 0.5 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    assert (ssim(a, noisier) < ssim(a, b)).all() and (ssim(a, b) < 1).all()


def test_ssim_of_flat_images_by_hand():
    # constant images: variances and covariance are 0, so SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
    a = torch.full((1, 1, 16, 16), 0.3)
    b = torch.full((1, 1, 16, 16), -0.2)
    c1 = (0.01 * 2) ** 2
    expected = (2 * 0.3 * -0.2 + c1) / (0.3 ** 2 + 0.2 ** 2 + c1)
    assert ssim(a, b).item() == pytest.approx(expected, rel=1e-5)


def test_ssim_of_a_contrast_flip_by_hand():
    # b = -a with zero local means: luminance term 1, structure/contrast term (-2 var + C2) / (2 var + C2)
    a = torch.tensor([[1.0, -1.0] * 8, [-1.0, 1.0] * 8] * 8)[None, None]      # checkerboard, 16 x 16
    # an 11-px Gaussian window over a checkerboard: local mean m and E[x^2] = 1 -> var = 1 - m^2 per window
    w = torch.exp(-((torch.arange(11.0) - 5) ** 2) / (2 * 1.5 ** 2))
    w = w / w.sum()
    win = w[:, None] * w[None, :]
    sign = torch.tensor([[(-1.0) ** (i + j) for j in range(11)] for i in range(11)])
    m = (win * sign).sum().abs()
    var = 1 - m ** 2
    c1, c2 = 0.02 ** 2, 0.06 ** 2
    expected = ((-2 * m ** 2 + c1) / (2 * m ** 2 + c1)) * ((-2 * var + c2) / (2 * var + c2))
    assert ssim(a, -a).item() == pytest.approx(expected.item(), rel=1e-4)


def test_ssim_rejects_small_images():
    with pytest.raises(ValueError, match="smaller than the 11 px"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_reconstruction_metrics_by_hand():
    x = torch.zeros(2, 1, 16, 16)
    x_hat = x.clone()
    x_hat[0] += 0.1                                   # MSE 0.01 -> PSNR 10 log10(4 / 0.01)
    x_hat[1] -= 0.2
    m = reconstruction_metrics(x, x_hat, percep=tiny_percep())
    assert m["l1"] == pytest.approx([0.1, 0.2])
    assert m["psnr"] == pytest.approx([10 * math.log10(4 / 0.01), 10 * math.log10(4 / 0.04)], rel=1e-5)
    assert m["perceptual"].shape == (2,) and (m["perceptual"] >= 0).all()
    s = summarise({"a": np.array([1.0, 3.0])})
    assert s["a"] == pytest.approx((2.0, 1.0))       # mean, std/sqrt(n) with ddof 1: sqrt(2)/sqrt(2)


def test_compare_inversions_structure():
    from hqanogan_core.nets.psp import build_encoder, encoder_config_for

    G, _ = tiny_gan()
    torch.manual_seed(0)
    E = build_encoder("gradual", encoder_config_for(G, width=8, blocks=(1, 1, 1, 1)), w_avg=G.w_avg).eval()
    with torch.no_grad():
        x = G(torch.randn(3, G.z_dim), noise_mode="const")
    res = compare_inversions(G, E, x, tiny_percep(), projector_steps=30, spaces=("w", "w+"), encoder_repeats=2)
    assert set(res) == {"encoder", "projector_w", "projector_w+"}
    for r in res.values():
        assert r["seconds_per_image"] > 0 and r["reconstructions"].shape == x.shape
        assert set(r["metrics"]) == {"l1", "psnr", "ssim", "perceptual"}
    # the projector optimises these very losses, so it beats an untrained encoder on generated images
    assert res["projector_w+"]["metrics"]["l1"].mean() < res["encoder"]["metrics"]["l1"].mean()
    assert len(res["projector_w+"]["history"]) == 30

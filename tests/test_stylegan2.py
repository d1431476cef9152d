"""StyleGAN2 networks: shapes, equalised LR, modulation, mapping, noise, minibatch-std, FIR, gradients."""
import math

import pytest
import torch

from hqanogan_core.nets.stylegan2 import (
    Discriminator,
    DiscriminatorConfig,
    EqualConv2d,
    EqualLinear,
    Generator,
    GeneratorConfig,
    downsample2d,
    fir_kernel,
    minibatch_std,
    modulated_conv2d,
    num_ws_for,
    upsample2d,
)

TINY = dict(channel_base=256, channel_max=32)


def tiny_G(res=32, ch=1, **kw):
    return Generator(GeneratorConfig(resolution=res, img_channels=ch, z_dim=32, w_dim=32, **TINY, **kw))


def tiny_D(res=32, ch=1, **kw):
    return Discriminator(DiscriminatorConfig(resolution=res, img_channels=ch, **TINY, **kw))


@pytest.mark.parametrize("res,ch", [(32, 1), (32, 3), (64, 1), (64, 3)])
def test_shapes(res, ch):
    torch.manual_seed(0)
    G, D = tiny_G(res, ch), tiny_D(res, ch)
    img, ws = G(torch.randn(4, 32), return_ws=True)
    assert img.shape == (4, ch, res, res)
    assert ws.shape == (4, num_ws_for(res), 32)
    assert torch.equal(G.synthesis(ws, noise_mode="none"), G.synthesis(ws, noise_mode="none"))
    logits, feats = D(img, return_features=True)
    assert logits.shape == (4,) and feats.shape == (4, D.feature_dim)
    assert torch.equal(D(img), logits)


def test_num_ws():
    assert [num_ws_for(r) for r in (32, 64, 256, 1024)] == [8, 10, 14, 18]
    assert tiny_G(32).num_ws == 8 and tiny_G(64).num_ws == 10


def test_equalised_lr_runtime_scaling():
    torch.manual_seed(0)
    lin = EqualLinear(256, 64, lr_mul=0.01)
    assert abs(lin.weight.std().item() - 100.0) < 5  # stored as N(0,1)/lr_mul
    assert abs((lin.weight * lin.weight_gain).std().item() - 1 / math.sqrt(256)) < 0.005
    conv = EqualConv2d(32, 32, 3)
    eff = conv.weight * conv.weight_gain
    assert abs(eff.std().item() - 1 / math.sqrt(32 * 9)) < 0.01
    x = torch.randn(64, 32, 8, 8)
    assert 0.8 < conv(x).std().item() < 1.2  # unit-variance in, unit-variance out


def test_demodulation_makes_output_independent_of_style_scale():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    w = torch.randn(8, 16, 3, 3)
    s = torch.rand(2, 16) + 0.5
    y1 = modulated_conv2d(x, w, s, demodulate=True)
    y2 = modulated_conv2d(x, w, s * 7.0, demodulate=True)
    assert torch.allclose(y1, y2, atol=1e-4)
    # without demodulation the output scales with the style
    z1 = modulated_conv2d(x, w, s, demodulate=False)
    z2 = modulated_conv2d(x, w, s * 7.0, demodulate=False)
    assert torch.allclose(z2, z1 * 7.0, rtol=1e-4, atol=1e-4)
    # demodulated output has ~unit per-channel std for unit-variance input
    y = modulated_conv2d(torch.randn(64, 16, 8, 8), w, torch.rand(64, 16) + 0.5, demodulate=True)
    assert 0.7 < y.std(dim=(0, 2, 3)).mean().item() < 1.3


def test_modulated_grouped_conv_matches_per_sample_conv():
    torch.manual_seed(0)
    x, w, s = torch.randn(3, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    y = modulated_conv2d(x, w, s, demodulate=False)
    for i in range(3):
        ref = torch.nn.functional.conv2d(x[i:i + 1], w * s[i][None, :, None, None], padding=1)
        assert torch.allclose(y[i:i + 1], ref, atol=1e-5)
    yu = modulated_conv2d(x, w, s, up=True, fir=fir_kernel())
    assert yu.shape == (3, 5, 12, 12)


def test_mapping_normalises_z_scale():
    torch.manual_seed(0)
    G = tiny_G().eval()
    z = torch.randn(4, 32)
    assert torch.allclose(G.mapping(z), G.mapping(z * 13.0), atol=1e-5)


def test_w_avg_tracking_and_truncation():
    torch.manual_seed(0)
    G = tiny_G().train()
    z = torch.randn(8, 32)
    G.mapping(z)
    assert G.w_avg.abs().sum() > 0  # updated in train mode
    G.eval()
    before = G.w_avg.clone()
    ws = G.mapping(z, psi=0.0)
    assert torch.equal(G.w_avg, before)  # not in eval mode
    assert torch.allclose(ws, before.expand_as(ws))
    ws_cut = G.mapping(z, psi=0.0, truncation_cutoff=3)
    assert torch.allclose(ws_cut[:, :3], before.expand(8, 3, -1))
    assert torch.allclose(ws_cut[:, 3:], G.mapping(z)[:, 3:])
    # w_avg follows beta 0.995
    G.train()
    G.w_avg.zero_()
    w = G.mapping(z)[:, 0]
    assert torch.allclose(G.w_avg, 0.005 * w.mean(0), atol=1e-6)


def test_noise_modes():
    torch.manual_seed(0)
    G = tiny_G().eval()
    for p in G.parameters():
        if p.ndim == 0:  # noise strengths start at 0; make noise visible
            p.data.fill_(0.5)
    ws = G.mapping(torch.randn(2, 32))
    a, b = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    assert torch.equal(a, b)
    r1, r2 = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
    assert not torch.equal(r1, r2)
    none = G.synthesis(ws, noise_mode="none")
    for m in G.modules():
        if hasattr(m, "noise_strength"):
            m.noise_strength.data.zero_()
    assert torch.allclose(none, G.synthesis(ws, noise_mode="random"), atol=1e-6)
    with pytest.raises(ValueError):
        G.synthesis(ws, noise_mode="bogus")


def test_minibatch_std():
    torch.manual_seed(0)
    x = torch.randn(8, 6, 4, 4)
    y = minibatch_std(x, group_size=4)
    assert y.shape == (8, 7, 4, 4) and torch.equal(y[:, :6], x)
    # groups are samples i, i+2, i+4, i+6 (i % (N/G)); check group 0 by hand
    grp = x[0::2]
    ref = (grp.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    assert torch.allclose(y[0, 6], ref.expand(4, 4), atol=1e-6)
    assert torch.allclose(y[2, 6], ref.expand(4, 4), atol=1e-6)
    # N not divisible by the group: largest divisor <= group (6 -> 3), N=5 -> 1 (std 0), N=2 -> 2
    assert minibatch_std(torch.randn(6, 6, 4, 4), 4).shape == (6, 7, 4, 4)
    y5 = minibatch_std(torch.randn(5, 6, 4, 4), 4)
    assert torch.allclose(y5[:, 6], torch.full((5, 4, 4), 1e-4), atol=1e-6)
    assert minibatch_std(torch.randn(2, 6, 4, 4), 4)[:, 6].abs().sum() > 0
    D = tiny_D()
    assert D(torch.randn(3, 1, 32, 32)).shape == (3,)  # odd batch does not crash


def test_fir_resampling_keeps_constants():
    k = fir_kernel()
    assert torch.isclose(k.sum(), torch.tensor(1.0))
    x = torch.full((1, 2, 8, 8), 3.0)
    up = upsample2d(x, k)
    assert up.shape == (1, 2, 16, 16)
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.full_like(up[:, :, 2:-2, 2:-2], 3.0))  # zero-pad border aside
    down = downsample2d(x, k)
    assert down.shape == (1, 2, 4, 4) and torch.allclose(down[:, :, 1:-1, 1:-1], torch.full((1, 2, 2, 2), 3.0))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    G, D = tiny_G(), tiny_D()
    img = G(torch.randn(4, 32))
    D(img).sum().backward()
    missing = [n for n, p in [*G.named_parameters(), *D.named_parameters()]
               if p.grad is None or p.grad.abs().sum() == 0]
    # the noise strengths start at 0 but still receive gradient
    assert not missing, missing


def test_d_features_feed_final_fc():
    torch.manual_seed(0)
    D = tiny_D()
    x = torch.randn(4, 1, 32, 32)
    logits, feats = D(x, return_features=True)
    assert torch.allclose(D.out(feats).squeeze(1), logits)


def test_bad_resolution():
    with pytest.raises(ValueError):
        tiny_G(48)

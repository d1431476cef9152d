"""pSp encoder: style split, shapes, start at w_avg, gradients."""
import pytest
import torch

from hqanogan_core.nets.psp import (EncoderConfig, GradualStyleEncoder, SingleWEncoder, build_encoder,
                                    encoder_config_for, style_split, zero_final_layers)
from hqanogan_core.nets.stylegan2 import Generator, num_ws_for




@pytest.mark.parametrize("num_ws, split", [(6, (3, 3, 0)), (8, (3, 4, 1)), (10, (3, 4, 3)), (14, (3, 4, 7)),
                                           (18, (3, 4, 11)), (2, (2, 0, 0))])
def test_style_split(num_ws, split):
    assert style_split(num_ws) == split and sum(split) == num_ws


def test_style_split_matches_psp_at_1024():
    assert num_ws_for(1024) == 18 and style_split(18) == (3, 4, 11)  # pSp: coarse 0-2, middle 3-6, fine 7-17


@pytest.mark.parametrize("res, ch", [(32, 1), (64, 3), (256, 1)])
def test_gradual_shapes(res, ch):
    cfg = EncoderConfig(resolution=res, img_channels=ch, num_ws=num_ws_for(res), w_dim=16,
                        **({"width": 8, "blocks": (1, 1, 1, 1)} if res == 256 else {}))
    enc = GradualStyleEncoder(cfg)
    ws = enc(torch.randn(2, ch, res, res))
    assert ws.shape == (2, num_ws_for(res), 16)
    c1, c2, c3 = enc.trunk(torch.randn(2, ch, res, res))
    assert (c1.shape[-1], c2.shape[-1], c3.shape[-1]) == (res // 4, res // 8, res // 16)
    with pytest.raises(AssertionError):
        enc(torch.randn(2, ch, res // 2, res // 2))


def test_64px_encoder_is_small():
    enc = GradualStyleEncoder(EncoderConfig(resolution=64, num_ws=10, w_dim=64))
    n = sum(p.numel() for p in enc.parameters())
    assert 0.3e6 < n < 3e6, n


@pytest.mark.parametrize("cls", [GradualStyleEncoder, SingleWEncoder])
def test_zeroed_heads_output_w_avg_and_gradients_flow(cls):
    cfg = EncoderConfig(resolution=32, img_channels=1, num_ws=8, w_dim=16)
    enc = cls(cfg)
    w_avg = torch.randn(16)
    enc.w_avg.copy_(w_avg)
    x = torch.randn(3, 1, 32, 32, requires_grad=True)
    ws = enc(x)
    ws.square().sum().backward()
    assert x.grad.abs().sum() > 0                                              # to the input
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)  # to every parameter
    zero_final_layers(enc)
    assert torch.allclose(enc(x), w_avg.expand(3, 8, 16))
    if cls is SingleWEncoder:
        ws = enc(x)
        assert torch.equal(ws[:, 0], ws[:, -1])


def test_build_encoder_from_generator():
    G = Generator(resolution=32, z_dim=16, w_dim=16, channel_base=128, channel_max=16)
    G.mapping.w_avg.normal_()
    cfg = encoder_config_for(G, zero_init_heads=True)
    E = build_encoder("gradual", cfg, w_avg=G.w_avg)
    ws = E(torch.randn(2, 1, 32, 32))
    assert ws.shape == (2, G.num_ws, G.w_dim) and torch.allclose(ws, G.w_avg.expand_as(ws))
    assert G.synthesis(ws, noise_mode="const").shape == (2, 1, 32, 32)
    with pytest.raises(ValueError):
        build_encoder("nope", cfg)
    with pytest.raises(ValueError):
        EncoderConfig(resolution=48)

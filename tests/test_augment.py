"""ADA augmentation pipe and the r_t controller."""
import torch

from hqanogan_core.nets.augment import AdaController, AugmentConfig, AugmentPipe

ONLY_XFLIP = {k: 0.0 for k in ("rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness", "contrast",
                               "lumaflip", "hue", "saturation")}


def test_p_zero_is_identity():
    x = torch.randn(4, 1, 16, 16)
    assert torch.equal(AugmentPipe(0.0)(x), x)


def test_shape_and_differentiable():
    torch.manual_seed(0)
    for ch in (1, 3):
        x = torch.randn(6, ch, 16, 16, requires_grad=True)
        y = AugmentPipe(1.0)(x)
        assert y.shape == x.shape
        y.square().sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0


def test_xflip_only_flips_exactly():
    torch.manual_seed(0)
    pipe = AugmentPipe(1.0, AugmentConfig(**ONLY_XFLIP))
    x = torch.randn(32, 1, 8, 8)
    y = pipe(x)
    flipped = torch.isclose(y, x.flip(3), atol=1e-5).flatten(1).all(1)
    same = torch.isclose(y, x, atol=1e-5).flatten(1).all(1)
    assert bool((flipped | same).all())
    assert 5 < int(flipped.sum()) < 27  # each sample flips with probability 1/2


def test_integer_ops_are_pixel_exact():
    torch.manual_seed(1)
    only_rot90 = dict(ONLY_XFLIP, xflip=0.0, rotate90=1.0)
    x = torch.randn(16, 1, 8, 8)
    y = AugmentPipe(1.0, AugmentConfig(**only_rot90))(x)
    for i in range(16):
        assert any(torch.allclose(y[i], torch.rot90(x[i], k, dims=(1, 2)), atol=1e-5) for k in range(4))


def test_grayscale_skips_colour_ops_and_lumaflip_off_by_default():
    torch.manual_seed(0)
    pipe = AugmentPipe(1.0, AugmentConfig(**dict(ONLY_XFLIP, xflip=0.0, hue=1.0, saturation=1.0)))
    x = torch.rand(8, 1, 8, 8)
    assert torch.allclose(pipe(x), x, atol=1e-6)  # hue/saturation do nothing to gray
    assert AugmentConfig().lumaflip == 0.0
    inv = AugmentPipe(1.0, AugmentConfig(**dict(ONLY_XFLIP, xflip=0.0, lumaflip=1.0)))
    y = inv(x)
    assert bool((torch.isclose(y, -x, atol=1e-6).flatten(1).all(1)
                 | torch.isclose(y, x, atol=1e-6).flatten(1).all(1)).all())


def test_ada_controller_moves_p_and_clamps():
    pipe = AugmentPipe(0.0)
    ada = AdaController(pipe, target=0.6, interval=4, ada_kimg=0.1)  # step = 16*4/100 = 0.64
    for _ in range(4):  # D overfits: all reals positive
        ada.accumulate(torch.ones(16))
        ada.step(16)
    assert abs(float(pipe.p) - 0.64) < 1e-6 and ada.last_rt == 1.0
    for _ in range(4):
        ada.accumulate(torch.ones(16))
        ada.step(16)
    assert float(pipe.p) == 1.0  # clamped
    for _ in range(12):  # D unsure: r_t = 0 < 0.6
        ada.accumulate(torch.tensor([1.0, -1.0] * 8))
        ada.step(16)
    assert float(pipe.p) == 0.0
    # no change between intervals
    ada.accumulate(torch.ones(16))
    ada.step(16)
    assert float(pipe.p) == 0.0

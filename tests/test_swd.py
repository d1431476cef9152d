"""Multi-scale sliced Wasserstein distance."""
import torch
import torch.nn.functional as F

from hqanogan_core.swd import laplacian_pyramid, swd


def smooth_images(n, seed, res=32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, res // 4, res // 4, generator=g)
    return F.interpolate(x, size=(res, res), mode="bicubic", align_corners=False).clamp(-1, 1)


def test_pyramid_reconstructs():
    from hqanogan_core.swd import pyr_up

    x = smooth_images(2, 0)
    levels = laplacian_pyramid(x, 2)
    assert [lv.shape[-1] for lv in levels] == [32, 16]
    assert torch.allclose(levels[0] + pyr_up(levels[1]), x, atol=1e-5)


def test_swd_same_vs_different_and_symmetric():
    a, b = smooth_images(32, 1), smooth_images(32, 2)
    g = torch.Generator().manual_seed(3)
    noisy = (b + 0.5 * torch.randn(b.shape, generator=g)).clamp(-1, 1)
    same = swd(a, a, seed=0, descriptors_per_image=64)
    near = swd(a, b, seed=0, descriptors_per_image=64)
    far = swd(a, noisy, seed=0, descriptors_per_image=64)
    assert set(near["levels"]) == {32, 16}
    assert same["avg"] < 1e-6
    assert near["avg"] < 0.75 * far["avg"]
    back = swd(noisy, a, seed=0, descriptors_per_image=64)["avg"]
    assert abs(back - far["avg"]) < 0.25 * far["avg"]
    assert swd(a, noisy, seed=0, descriptors_per_image=64) == far  # deterministic for a seed


def test_swd_identical_descriptors_are_zero():
    from hqanogan_core.swd import sliced_wasserstein

    d = torch.randn(500, 49)
    assert sliced_wasserstein(d, d[torch.randperm(500)], torch.Generator().manual_seed(0)) < 1e-6

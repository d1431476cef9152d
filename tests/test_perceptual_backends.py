"""The two perceptual backends with the real `lpips` package installed (requirements.txt declares it).

`lpips` ships only the lin-layer weights; its AlexNet trunk comes from torchvision's ImageNet file in the
torch hub cache (TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth). Without that file (the usual
offline case) 'auto' must fall back to the shift-tolerant stlpips, whose wheel ships everything; with it,
our own implementation of the 'lpips' backend must agree with the package's `lpips.LPIPS`.
"""
import importlib.util
import sys

import pytest
import torch

from hqanogan_core.nets import perceptual as P

lpips = pytest.importorskip("lpips", reason="`lpips` is a declared requirement (requirements.txt)")


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """TORCH_HOME at an empty folder: no backbone weights cached, and nothing may be downloaded there."""
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    # an earlier torch.hub.set_dir (test_fid) would win over TORCH_HOME
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    assert not P.torchvision_weight_file("alex").exists()
    return home


def _no_download(*args, **kwargs):
    raise AssertionError("a download was attempted")


@pytest.fixture
def random_alexnet_home(empty_torch_home):
    """TORCH_HOME holding a random-initialised torchvision AlexNet under the name torchvision caches it as."""
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    file = P.torchvision_weight_file("alex")
    assert file.is_relative_to(empty_torch_home)
    file.parent.mkdir(parents=True)
    torch.save(state, file)
    return file


def _image_pairs(n=4, size=64, seed=0):
    """Two batches of smooth random RGB images in [-1, 1], [n, 3, size, size] (64 px: no resizing anywhere)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(2, n, 3, size // 8, size // 8, generator=g) * 2 - 1
    x = torch.nn.functional.interpolate(low.flatten(0, 1), size=(size, size), mode="bilinear", align_corners=False)
    x = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    return x[:n], x[n:]


def test_auto_falls_back_to_stlpips_without_backbone_weights(empty_torch_home):
    assert importlib.util.find_spec("lpips") is not None          # the package is there ...
    assert P.lpips_weight_file("alex").is_file()                  # ... with its lin weights
    assert not P.lpips_available("alex")                          # but no ImageNet trunk
    d = P.PerceptualDistance(P.PerceptualConfig(backend="auto", verbose=False))
    assert d.backend_name == "stlpips-alex"
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth") as err:
        P.PerceptualDistance(P.PerceptualConfig(backend="lpips", verbose=False))
    assert str(empty_torch_home) in str(err.value) and "nothing is downloaded" in str(err.value)


@pytest.mark.filterwarnings("ignore:.*deprecated since 0.13:UserWarning")   # lpips calls alexnet(pretrained=True)
def test_lpips_backend_matches_the_lpips_package(random_alexnet_home):
    ours = P.PerceptualDistance(P.PerceptualConfig(backend="lpips", verbose=False))
    assert ours.backend_name == "lpips-alex"
    auto = P.PerceptualDistance(P.PerceptualConfig(backend="auto", verbose=False))
    assert auto.backend_name == "lpips-alex"                       # the trunk is cached: auto takes lpips
    # the package's own model: lin weights from its wheel, trunk via torchvision from TORCH_HOME's cache
    theirs = lpips.LPIPS(net="alex", pretrained=True, verbose=False).eval()
    tv_trunk = torch.load(random_alexnet_home, weights_only=True)
    assert torch.equal(theirs.net.slice1[0].weight, tv_trunk["features.0.weight"])   # it read our file
    x0, x1 = _image_pairs()
    with torch.no_grad():
        d_ours = ours(x0, x1)
        d_theirs = theirs(x0, x1).flatten()
        d_spatial, dmap = ours(x0, x1, spatial=True)
    assert d_ours.shape == (4,) and (d_ours > 0).all()
    torch.testing.assert_close(d_ours, d_theirs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(d_spatial, d_ours)
    assert dmap.shape == (4, 1, 64, 64)
    with torch.no_grad():                                          # gray inputs are repeated to RGB
        g0, g1 = x0[:, :1], x1[:, :1]
        torch.testing.assert_close(ours(g0, g1), theirs(g0.expand(-1, 3, -1, -1), g1.expand(-1, 3, -1, -1)).flatten(),
                                   rtol=1e-5, atol=1e-5)


def test_auto_picks_stlpips_when_lpips_is_unimportable(random_alexnet_home, monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)                # `import lpips` now fails
    with pytest.raises(ImportError):
        __import__("lpips")
    assert importlib.util.find_spec("lpips") is None
    assert P.lpips_weight_file("alex") is None and not P.lpips_available("alex")
    d = P.PerceptualDistance(P.PerceptualConfig(backend="auto", verbose=False))
    assert d.backend_name == "stlpips-alex"
    with pytest.raises(FileNotFoundError, match="lpips"):
        P.PerceptualDistance(P.PerceptualConfig(backend="lpips", verbose=False))

"""Perceptual distance: backend choice, no downloads, LPIPS properties on both code paths."""
import socket
import sys
import urllib.request

import pytest
import torch
from torch import nn

from hqanogan_core.nets import perceptual as P




def _no_network(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", boom)
    monkeypatch.setattr(torch.hub, "download_url_to_file", boom)
    monkeypatch.setattr(urllib.request, "urlopen", boom)
    monkeypatch.setattr(torch.hub, "urlopen", boom)          # torch.hub binds urlopen at import
    monkeypatch.setattr(socket.socket, "connect", boom)     # and any other route to the network


class TinyBackbone(nn.Module):
    """Fixture stand-in for AlexNet: three ReLU conv taps."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.convs = nn.ModuleList([nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(8, 16, 3, 2, 1), nn.Conv2d(16, 16, 3, 2, 1)])
        for c in self.convs:
            c.weight.data = torch.randn(c.weight.shape, generator=g) * 0.3

    def forward(self, x):
        out = []
        for c in self.convs:
            x = torch.relu(c(x))
            out.append(x)
        return out


@pytest.fixture(scope="module")
def stlpips():
    with pytest.MonkeyPatch.context() as mp:
        _no_network(mp)
        return P.PerceptualDistance(P.PerceptualConfig(backend="stlpips", verbose=False))


@pytest.fixture(scope="module")
def tiny():
    return P.PerceptualDistance(P.PerceptualConfig(min_size=16, verbose=False),
                                model=P.LpipsNet(TinyBackbone(), [8, 16, 16]), backend_name="lpips-tiny")


def _images(n=3, c=1, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish structure plus texture, in [-1, 1]
    base = torch.nn.functional.interpolate(torch.rand(n, c, s // 4, s // 4, generator=g), size=(s, s), mode="bilinear")
    return (base * 1.6 - 0.8 + 0.1 * torch.rand(n, c, s, s, generator=g)).clamp(-1, 1)


def _check_properties(d):
    x = _images()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    assert d(x, x).abs().max() < 1e-6                                        # identity ~ 0
    dists = [d(x, (x + s * noise).clamp(-1, 1)).mean().item() for s in (0.05, 0.2, 0.6)]
    assert dists[0] < dists[1] < dists[2], dists                             # grows with noise
    y = (x + 0.3 * noise).clamp(-1, 1)
    assert torch.allclose(d(x, y), d(y, x), rtol=1e-4, atol=1e-6)            # symmetric
    dist, dmap = d(x, y, spatial=True)
    assert dist.shape == (3,) and dmap.shape == (3, 1, 32, 32) and (dmap >= 0).all()
    assert torch.allclose(d(x, y), d(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)))  # gray == repeated RGB
    xr = x.clone().requires_grad_(True)
    d(xr, y).sum().backward()
    assert xr.grad is not None and xr.grad.abs().sum() > 0                   # gradients reach the input
    assert all(not p.requires_grad for p in d.parameters()) and not d.training
    d.train()
    assert not d.training                                                    # stays in eval mode


def test_stlpips_backend_properties_and_no_download(stlpips):
    assert stlpips.backend_name == "stlpips-alex"
    _check_properties(stlpips)
    # small inputs are upsampled internally, maps come back at the input size
    x = _images(2, 1, 16)
    dist, dmap = stlpips(x, x.flip(-1), spatial=True)
    assert dmap.shape == (2, 1, 16, 16) and (dist > 0).all()


def test_stlpips_matches_package_reference(stlpips):
    from stlpips_pytorch import stlpips as ref_mod

    ref = ref_mod.LPIPS(net="alex", variant="shift_tolerant", verbose=False)  # loads the same shipped .pth
    x, y = _images(2, 3, 64), _images(2, 3, 64, seed=5)
    assert torch.allclose(stlpips(x, y), ref(x, y).flatten(), rtol=1e-4, atol=1e-6)


def test_injected_backbone_properties(tiny):
    _check_properties(tiny)


def test_auto_backend_resolution(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(P, "lpips_weight_file", lambda net: tmp_path / "lpips" / f"{net}.pth")
    assert P.resolve_backend(P.PerceptualConfig()) == "stlpips"
    with pytest.raises(FileNotFoundError):
        P.resolve_backend(P.PerceptualConfig(backend="lpips"))
    (tmp_path / "lpips").mkdir()
    (tmp_path / "lpips" / "alex.pth").write_bytes(b"")
    assert P.resolve_backend(P.PerceptualConfig()) == "stlpips"          # backbone weights still missing
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    P.torchvision_weight_file("alex").write_bytes(b"")
    assert P.resolve_backend(P.PerceptualConfig()) == "lpips"
    assert P.resolve_backend(P.PerceptualConfig(backend="stlpips")) == "stlpips"
    with pytest.raises(ValueError):
        P.resolve_backend(P.PerceptualConfig(net="squeeze"))


def test_lpips_path_builds_from_cached_files_only(monkeypatch, tmp_path):
    """The 'lpips' code path end to end with fixture files: a fake `lpips` package (lin weights) and a
    torchvision AlexNet state (random, features only) placed in a fake hub cache; downloads forbidden."""
    import torchvision

    _no_network(monkeypatch)
    pkg = tmp_path / "site" / "lpips"
    (pkg / "weights" / "v0.1").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    lins = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(P.CHANNELS["alex"])}
    torch.save(lins, pkg / "weights" / "v0.1" / "alex.pth")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "lpips", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    feats = torchvision.models.alexnet(weights=None).features.state_dict()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in feats.items()}, P.torchvision_weight_file("alex"))

    d = P.PerceptualDistance(P.PerceptualConfig(backend="auto", verbose=False))
    assert d.backend_name == "lpips-alex"
    assert torch.equal(d.model.lins[2].weight, lins["lin2.model.1.weight"])
    assert torch.equal(d.model.net.slices[0][0].weight, feats["0.weight"])
    x = _images(2, 1, 64)
    assert d(x, x).abs().max() < 1e-6 and (d(x, x.flip(-1)) > 0).all()


def test_backend_printed_once(capsys):
    P._announced.discard("lpips-once")
    for _ in range(2):
        P.PerceptualDistance(P.PerceptualConfig(min_size=16), model=P.LpipsNet(TinyBackbone(), [8, 16, 16]),
                             backend_name="lpips-once")
    assert capsys.readouterr().out.count("perceptual distance: lpips-once") == 1

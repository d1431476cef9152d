"""Fréchet Inception Distance: the maths by hand, a tiny injected backbone, and never a download."""
import socket

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hqanogan_core import fid as fid_mod
from hqanogan_core.fid import (InceptionFeatures, feature_statistics, fid, fid_unavailable_reason,
                               frechet_distance, inception_weights_path)


def smooth_images(n, seed, res=32, channels=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, res // 4, res // 4, generator=g)
    return F.interpolate(x, size=(res, res), mode="bicubic", align_corners=False).clamp(-1, 1)


def tiny_backbone(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


@pytest.mark.parametrize("m1,v1,m2,v2", [(0.0, 1.0, 0.0, 1.0), (1.0, 4.0, -2.0, 0.25), (0.5, 2.0, 0.5, 3.0)])
def test_frechet_1d_matches_closed_form(m1, v1, m2, v2):
    want = (m1 - m2) ** 2 + v1 + v2 - 2 * np.sqrt(v1 * v2)
    assert frechet_distance(m1, v1, m2, v2) == pytest.approx(want, abs=1e-10)
    assert frechet_distance([m1], [[v1]], [m2], [[v2]]) == pytest.approx(want, abs=1e-10)


def test_frechet_diagonal_sum_over_dims_and_symmetric():
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([2.0, 1.0, 0.5])
    v1, v2 = np.array([1.0, 4.0, 0.5]), np.array([9.0, 1.0, 0.5])
    want = np.sum((mu1 - mu2) ** 2 + v1 + v2 - 2 * np.sqrt(v1 * v2))   # = 4 + 2.25 + (4 + 1) + 0 = 11.25
    assert want == pytest.approx(11.25)
    d = frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert d == pytest.approx(want, abs=1e-9)
    assert frechet_distance(mu2, np.diag(v2), mu1, np.diag(v1)) == pytest.approx(d, abs=1e-9)


def test_frechet_identical_zero_and_general_symmetric():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 6)), rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) + 0.3
    mu_a, s_a = feature_statistics(a)
    mu_b, s_b = feature_statistics(b)
    assert abs(frechet_distance(mu_a, s_a, mu_a, s_a)) < 1e-8
    d_ab, d_ba = frechet_distance(mu_a, s_a, mu_b, s_b), frechet_distance(mu_b, s_b, mu_a, s_a)
    assert d_ab > 0.1 and d_ab == pytest.approx(d_ba, rel=1e-6)


def test_frechet_singular_covariances_stay_finite():
    # fewer samples than dimensions -> rank-deficient covariances; the eigenvalue route needs no eps
    rng = np.random.default_rng(1)
    mu_a, s_a = feature_statistics(rng.normal(size=(4, 10)))
    mu_b, s_b = feature_statistics(rng.normal(size=(4, 10)))
    assert np.isfinite(frechet_distance(mu_a, s_a, mu_b, s_b))
    with pytest.raises(ValueError):
        frechet_distance(mu_a, s_a, mu_b[:3], s_b)


def test_feature_statistics_matches_numpy():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(50, 7)) * np.arange(1, 8)
    mu, sigma = feature_statistics(torch.from_numpy(f).float())
    assert mu.shape == (7,) and sigma.shape == (7, 7) and mu.dtype == np.float64
    np.testing.assert_allclose(mu, f.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sigma, np.cov(f, rowvar=False), rtol=1e-5, atol=1e-4)
    mu1, sigma1 = feature_statistics(f[:, :1])
    assert sigma1.shape == (1, 1) and sigma1[0, 0] == pytest.approx(np.var(f[:, 0], ddof=1))
    with pytest.raises(ValueError):
        feature_statistics(f[:1])


def test_preprocess_equals_torchvision_pipeline():
    """[-1, 1] fed straight in == torchvision's ImageNet normalisation followed by transform_input=True."""
    from torchvision.models.inception import Inception3

    ext = InceptionFeatures(backbone=nn.Identity())
    x = smooth_images(2, 0, res=64)
    ours = ext.preprocess(x)
    assert ours.shape == (2, 3, 299, 299) and torch.equal(ours[:, 0], ours[:, 2])
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    imagenet = ((ours + 1) / 2 - mean) / std

    class _Flag:
        transform_input = True

    theirs = Inception3._transform_input(_Flag(), imagenet)
    assert torch.allclose(ours, theirs, atol=1e-5)
    rgb = smooth_images(2, 0, res=299, channels=3)
    assert torch.equal(ext.preprocess(rgb), rgb)                   # already 299 and 3 channels: untouched


def test_fid_with_injected_backbone():
    ext = InceptionFeatures(backbone=tiny_backbone())
    real, real2 = smooth_images(40, 1), smooth_images(40, 2)
    shifted = (real2 + 0.6).clamp(-1, 1)
    same = fid(real, real, batch=16, extractor=ext)
    near = fid(real, real2, batch=16, extractor=ext)
    far = fid(real, shifted, batch=16, extractor=ext)
    assert abs(same) < 1e-6
    assert far > 0 and near < 0.5 * far
    assert fid(shifted, real, batch=7, extractor=ext) == pytest.approx(far, rel=1e-4)   # symmetric; batch-independent
    assert fid_unavailable_reason(ext) is None


@pytest.fixture
def offline(monkeypatch):
    """Any download or socket connection fails the test."""
    def boom(*a, **k):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", boom)
    monkeypatch.setattr(torch.hub, "download_url_to_file", boom)
    monkeypatch.setattr(socket.socket, "connect", boom)


@pytest.fixture
def hub_dir(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        yield tmp_path
    finally:
        torch.hub.set_dir(old)


def test_no_weights_returns_none_without_network(offline, hub_dir):
    assert inception_weights_path() is None
    real = smooth_images(4, 0)
    assert fid(real, real) is None
    reason = fid_unavailable_reason()
    assert reason and "\n" not in reason and str(hub_dir) in reason
    with pytest.raises(FileNotFoundError):
        InceptionFeatures()
    (hub_dir / "checkpoints").mkdir()
    (hub_dir / "checkpoints" / "inception_v3_other.pth").write_bytes(b"")
    assert inception_weights_path() is None


def test_default_hub_has_no_real_weights_or_skip(offline):
    """In the real hub cache: if the official file is absent, fid() must return None offline."""
    if inception_weights_path() is not None:
        pytest.skip(f"real Inception weights present at {inception_weights_path()}")
    assert fid(smooth_images(4, 0), smooth_images(4, 1)) is None


def test_cached_weights_file_loads_strictly(offline, hub_dir, monkeypatch):
    """A file with the official layout (aux head included) is found by glob, loaded strictly, and used by fid().

    Random weights stand in for the real file (checks discovery, strict loading, head removal, the
    2048-d output and the default path of fid(), not the values: frechet_distance is stubbed).
    """
    from torchvision.models.inception import Inception3

    ckpt = hub_dir / "checkpoints"
    ckpt.mkdir()
    state = Inception3(num_classes=1000, aux_logits=True, init_weights=False).state_dict()
    assert any(k.startswith("AuxLogits.") for k in state)
    path = ckpt / "inception_v3_google-0cc3c7bd.pth"
    torch.save(state, path)
    assert inception_weights_path() == path

    net = fid_mod.load_inception_backbone(path)
    assert net.AuxLogits is None and isinstance(net.fc, nn.Identity) and not net.training
    assert not net.transform_input
    assert torch.equal(net.Conv2d_1a_3x3.conv.weight, state["Conv2d_1a_3x3.conv.weight"])

    monkeypatch.setattr(fid_mod, "_cached", None)
    feats = fid_mod._default_extractor()(smooth_images(2, 0))
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    # the default path end to end, minus the 2048x2048 sqrtm (tens of seconds on a busy CPU)
    seen = []
    monkeypatch.setattr(fid_mod, "frechet_distance", lambda mu1, s1, mu2, s2: seen.append((mu1, s1, mu2, s2)) or 1.5)
    assert fid(smooth_images(3, 0), smooth_images(4, 1), batch=2) == 1.5 and fid_unavailable_reason() is None
    (mu1, s1, mu2, s2), = seen
    assert mu1.shape == mu2.shape == (2048,) and s1.shape == s2.shape == (2048, 2048)

    bad = dict(state)
    bad.pop("AuxLogits.fc.weight")
    torch.save(bad, path)
    with pytest.raises(RuntimeError):                               # strict: a mismatched file is an error
        fid_mod.load_inception_backbone(path)


def test_frechet_trace_term_equals_general_sqrtm():
    from scipy import linalg

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 50)), rng.normal(size=(50, 50))
    s1, s2 = a @ a.T / 50 + 0.1 * np.eye(50), b @ b.T / 50 + 0.1 * np.eye(50)
    mu = np.zeros(50)
    reference = np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(reference, rel=1e-8)

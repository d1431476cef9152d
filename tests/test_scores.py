"""Score math against hand computations, and the scorer end to end on tiny networks."""
import numpy as np
import pytest
import torch

from hqanogan_core import scores
from hqanogan_core.nets.psp import EncoderConfig, build_encoder
from tests.tiny import phantom_like, tiny_gan, tiny_percep


def test_mahalanobis_matches_hand_computation():
    rng = np.random.default_rng(0)
    ws = rng.normal(size=(500, 2, 3)) * np.array([1.0, 2.0, 0.5])  # independent axes, known scales
    g = scores.fit_latent_gaussians(ws)
    assert g.means.shape == (2, 3) and g.precisions.shape == (2, 3, 3) and np.all(g.shrinkage >= 0)
    d = scores.latent_mahalanobis(ws[:5], g)
    diff = ws[:5, 1] - g.means[1]
    expected = np.einsum("nd,de,ne->n", diff, g.precisions[1], diff)
    np.testing.assert_allclose(d[:, 1], expected)
    # the mean of squared Mahalanobis distances of the fitting data is ~ dimension (3)
    assert 2.5 < scores.latent_mahalanobis(ws, g).mean() < 3.5
    # a point 4 sigma out along the smallest axis is far; the same offset along the largest is not
    centre = g.means[0]
    far = scores.latent_mahalanobis((centre + [0, 0, 2.0])[None, None].repeat(2, 1), g)[0, 0]
    near = scores.latent_mahalanobis((centre + [0, 2.0, 0])[None, None].repeat(2, 1), g)[0, 0]
    assert far > 10 * near


def test_shape_errors_are_clear():
    g = scores.fit_latent_gaussians(np.random.default_rng(0).normal(size=(20, 2, 3)))
    with pytest.raises(AssertionError, match="does not match"):
        scores.latent_mahalanobis(np.zeros((4, 3, 3)), g)
    with pytest.raises(ValueError, match="at least 2"):
        scores.fit_latent_gaussians(np.zeros((1, 2, 3)))


def test_standardise_and_combine():
    normal = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([10.0, 10.0, 13.0])}
    stats = scores.fit_standardisation(normal)
    assert stats["a"][0] == pytest.approx(2.0) and stats["a"][1] == pytest.approx(np.std([1, 2, 3]))
    z = scores.standardise({"a": np.array([2.0]), "b": np.array([11.0])}, stats)
    assert z["a"][0] == pytest.approx(0.0) and z["b"][0] == pytest.approx(0.0)
    assert scores.combine({"a": np.array([1.0]), "b": np.array([2.0])}, ("a", "b"))[0] == 3.0
    assert scores.combine({"a": np.array([1.0]), "b": np.array([2.0])}, ("a", "b"), {"b": 0.5})[0] == 2.0
    with pytest.raises(ValueError, match="not computed"):
        scores.combine({"a": np.array([1.0])}, ("a", "latent"))


def test_residual_map_smooths_and_keeps_location():
    x = np.zeros((1, 9, 9))
    rec = x.copy()
    x[0, 4, 4] = 1.0
    m = scores.residual_map(x, rec, sigma=1.0)
    assert m.shape == (1, 9, 9) and np.unravel_index(m[0].argmax(), (9, 9)) == (4, 4)
    assert m[0, 4, 4] < 1.0 and m.sum() == pytest.approx(1.0, rel=1e-6)


def test_scorer_end_to_end_on_tiny_nets():
    G, D = tiny_gan()
    E = build_encoder("gradual", EncoderConfig(resolution=16, num_ws=G.num_ws, w_dim=G.w_dim, width=8,
                                               blocks=(1, 1, 1, 1)), w_avg=G.w_avg).eval()
    config = scores.ScoreConfig(terms=(*scores.DEFAULT_TERMS, "cycle"))
    scorer = scores.HQAnoGANScorer(G, E, D=D, percep=tiny_percep(), batch=8, config=config)
    train, held_out = phantom_like(24, seed=0), phantom_like(12, seed=1)
    scorer.fit(train, held_out)
    test = phantom_like(6, seed=2)
    test[3:, :, 4:10, 4:10] = 1.0  # bright square "lesions"
    out = scorer.score(test)
    for name in ("image_residual", "perceptual", "feature_residual", "latent", "cycle", "hqanogan"):
        assert out[name].shape == (6,) and np.all(np.isfinite(out[name])), name
    np.testing.assert_allclose(out["hqanogan"], sum(out[f"z_{t}"] for t in config.terms))
    assert sum(k.startswith("latent_l") for k in out) == G.num_ws
    np.testing.assert_allclose(sum(out[f"latent_l{k}"] for k in range(G.num_ws)), out["latent"])
    # the held-out normals standardise to mean 0
    z_normal = scores.standardise(scorer.terms(held_out)[0], scorer.stats)
    assert abs(z_normal["image_residual"].mean()) < 1e-6
    # scoring is per image: the same image scores the same whatever else is in the batch
    alone = scorer.score(test[:1])["hqanogan"][0]
    assert alone == pytest.approx(out["hqanogan"][0], rel=1e-4, abs=1e-4)
    maps = scorer.anomaly_maps(test)
    assert maps.shape == (6, 16, 16) and np.all(maps >= 0)
    with pytest.raises(RuntimeError, match="fit"):
        scores.HQAnoGANScorer(G, E).score(test)


def test_discriminator_features_equal_one_image_at_a_time():
    _, D = tiny_gan()
    x = phantom_like(7, seed=3)
    batched = scores.discriminator_features(D, x, batch=4)
    one_by_one = torch.cat([D(x[i:i + 1], return_features=True)[1] for i in range(len(x))])
    torch.testing.assert_close(batched, one_by_one, rtol=1e-5, atol=1e-6)
    assert D.mbstd_group == 4                      # restored afterwards
    # whereas a plain batch mixes images through minibatch-std
    assert not torch.allclose(D(x[:4], return_features=True)[1], one_by_one[:4], atol=1e-6)


def test_anomaly_maps_reuse_restorations():
    G, D = tiny_gan()
    E = build_encoder("gradual", EncoderConfig(resolution=16, num_ws=G.num_ws, w_dim=G.w_dim, width=8,
                                               blocks=(1, 1, 1, 1)), w_avg=G.w_avg).eval()
    scorer = scores.HQAnoGANScorer(G, E, D=D, percep=tiny_percep(), batch=8).fit(phantom_like(24), phantom_like(12, 1))
    test = phantom_like(5, seed=2)
    scorer.score(test)
    np.testing.assert_allclose(scorer.anomaly_maps(test, scorer.last_evidence), scorer.anomaly_maps(test), atol=1e-6)

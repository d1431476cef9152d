"""The term registry and ScoreConfig: hand-computed aggregations, only requested terms computed,
configurations round-trip, and bad configurations fail with clear messages."""
import numpy as np
import pytest
import torch

from hqanogan_core import scores, terms
from hqanogan_core.nets.psp import EncoderConfig, build_encoder
from tests.tiny import phantom_like, tiny_gan, tiny_percep


def tiny_scorer(config=None, **kw):
    G, D = tiny_gan()
    E = build_encoder("gradual", EncoderConfig(resolution=16, num_ws=G.num_ws, w_dim=G.w_dim, width=8,
                                               blocks=(1, 1, 1, 1)), w_avg=G.w_avg).eval()
    return scores.HQAnoGANScorer(G, E, D=D, percep=tiny_percep(), batch=8, config=config, **kw)


def test_aggregate_matches_hand_computation():
    maps = np.zeros((2, 10, 10))
    maps[0, 0, :5] = [5, 4, 3, 2, 1]
    maps[1] = 1.0
    np.testing.assert_allclose(terms.aggregate(maps, "mean"), [0.15, 1.0])
    np.testing.assert_allclose(terms.aggregate(maps, "max"), [5, 1])
    np.testing.assert_allclose(terms.aggregate(maps, "topk", top_percent=3), [4, 1])        # top 3 of 100 pixels
    np.testing.assert_allclose(terms.aggregate(maps, "topk", top_percent=100), terms.aggregate(maps, "mean"))
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        terms.aggregate(maps, "median")


def test_top_percent_aggregation_finds_a_small_lesion_the_mean_dilutes():
    rng = np.random.default_rng(0)
    normal = rng.uniform(0, 0.2, size=(50, 32, 32))
    lesion = rng.uniform(0, 0.2, size=(50, 32, 32))
    lesion[:, 10:13, 10:13] += 0.5                       # 9 of 1024 pixels
    from hqanogan_core.metrics import auroc
    labels = np.r_[np.zeros(50), np.ones(50)]
    both = np.concatenate([normal, lesion])
    assert auroc(terms.aggregate(both, "topk", 1.0), labels) > 0.99
    assert auroc(terms.aggregate(both, "mean"), labels) < auroc(terms.aggregate(both, "topk", 1.0), labels)


def test_score_config_checks_and_round_trips():
    cfg = terms.ScoreConfig(terms=("perceptual", "latent_l3"), weights={"perceptual": 2.0}, aggregation="topk",
                            top_percent=2.0, combine="max")
    again = terms.ScoreConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.terms == ("perceptual", "latent_l3")
    for bad, message in [({"terms": ("nope",)}, "unknown score terms \\['nope'\\]"),
                         ({"terms": ()}, "at least one term"),
                         ({"weights": {"latent": 1.0}}, "weights given for terms \\['latent'\\]"),
                         ({"aggregation": "median"}, "unknown aggregation"),
                         ({"combine": "product"}, "unknown combine"),
                         ({"top_percent": 0}, "top_percent"),
                         ({"held_out_fraction": 1.0}, "held_out_fraction"),
                         ({"map_terms": ("latent",)}, "map_terms must be distinct map terms"),
                         ({"map_terms": ("perceptual", "perceptual")}, "map_terms must be distinct"),
                         ({"map_terms": ()}, "map_terms"),
                         ({"detect_terms": ("latent",)}, "detect_terms must be distinct map terms"),
                         ({"refine_loss": "l2"}, "unknown refine_loss 'l2'")]:
        with pytest.raises(ValueError, match=message):
            terms.ScoreConfig(**{"terms": ("perceptual",), **bad})
    # a config stored before detect_terms existed loads with the default: the anomaly map's terms
    two = terms.ScoreConfig(terms=("detection_map",), map_terms=("image_residual", "perceptual"))
    old = {k: v for k, v in two.to_dict().items() if k != "detect_terms"}
    assert terms.ScoreConfig.from_dict(old).detection_terms == ("image_residual", "perceptual")
    with pytest.raises(ValueError, match="unknown ScoreConfig fields \\['sigma'\\]"):
        terms.ScoreConfig.from_dict({"sigma": 1})
    assert "top 2 % pixels" in cfg.describe() and "largest of 2 x z(perceptual)" in cfg.describe()
    # the restoration labels the score study keys its restorations by, and back
    for fields, label in [({}, "0"), ({"refine_steps": 20}, "20"), ({"refine_steps": 40, "refine_loss": "l1"}, "l1-40"),
                          ({"refine_loss": "l1"}, "0")]:
        c = terms.ScoreConfig(**fields)
        assert c.restoration == label
        assert terms.ScoreConfig(**terms.restoration_settings(label)).restoration == label
    assert "40 steps of pixel-L1" in terms.ScoreConfig(refine_steps=40, refine_loss="l1").describe()
    for bad in ("l1-", "x-3", "huber-20", ""):
        with pytest.raises(ValueError, match="bad restoration label"):
            terms.restoration_settings(bad)


def test_only_requested_terms_are_computed():
    scorer = tiny_scorer(terms.ScoreConfig(terms=("image_residual",)))
    calls = {"percep": 0, "D": 0}
    percep, D = scorer.percep, scorer.D

    def counted_percep(*a, **k):
        calls["percep"] += 1
        return percep(*a, **k)

    def counted_D(*a, **k):
        calls["D"] += 1
        return D(*a, **k)

    scorer.percep = counted_percep
    scorer.D = type("CountedD", (), {"__call__": staticmethod(counted_D), "mbstd_group": D.mbstd_group,
                                     "blocks": D.blocks})()
    scorer.fit(phantom_like(16, seed=0), phantom_like(8, seed=1))
    out = scorer.score(phantom_like(4, seed=2))
    assert calls == {"percep": 0, "D": 0}
    assert set(out) == {"image_residual", "z_image_residual", "hqanogan"}
    np.testing.assert_allclose(out["hqanogan"], out["z_image_residual"])


def test_every_registered_term_runs_and_latent_groups_add_up():
    scorer = tiny_scorer(terms.ScoreConfig(terms=tuple(terms.TERMS), aggregation="topk", top_percent=5))
    scorer.fit(phantom_like(24, seed=0), phantom_like(12, seed=1))
    test = phantom_like(6, seed=2)
    out = scorer.score(test)
    for name in terms.TERMS:
        assert out[name].shape == (6,) and np.all(np.isfinite(out[name])), name
    np.testing.assert_allclose(out["latent_coarse"] + out["latent_middle"] + out["latent_fine"], out["latent"])
    n_coarse = 3
    np.testing.assert_allclose(out["latent_coarse"], sum(out[f"latent_l{k}"] for k in range(n_coarse)))
    # a map term under "topk" is the top pixels of the smoothed map the anomaly map shows
    maps = scorer.anomaly_maps(test, scorer.last_evidence)
    np.testing.assert_allclose(out["image_residual"], terms.aggregate(maps, "topk", 5), rtol=1e-5)


def test_mean_aggregation_keeps_the_global_terms():
    scorer = tiny_scorer()
    scorer.fit(phantom_like(16, seed=0), phantom_like(8, seed=1))
    test = phantom_like(5, seed=2)
    out = scorer.score(test)
    rec = scorer.last_restored
    np.testing.assert_allclose(out["image_residual"], (test - rec).abs().mean(dim=(1, 2, 3)).numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["perceptual"], scorer.percep(test, rec).numpy(), rtol=1e-5)


def test_block_residuals_are_per_image_and_zero_for_identical_images():
    _, D = tiny_gan()
    x = phantom_like(5, seed=3)
    r = terms.block_residuals(D, x, x.clone())
    assert r.shape == (5, len(D.blocks)) and np.all(r == 0)
    noisy = x + 0.1 * torch.randn_like(x)
    batched = terms.block_residuals(D, x, noisy, batch=2)
    alone = np.concatenate([terms.block_residuals(D, x[i:i + 1], noisy[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(batched, alone, rtol=1e-5)
    assert np.all(batched > 0)


def test_fitted_state_round_trips_with_its_config():
    cfg = terms.ScoreConfig(terms=("image_residual", "perceptual", "latent"), aggregation="max")
    scorer = tiny_scorer(cfg).fit(phantom_like(16, seed=0), phantom_like(8, seed=1))
    tensors, meta = scorer.state()
    fresh = tiny_scorer().load_state(tensors, meta)
    assert fresh.config == cfg
    test = phantom_like(4, seed=2)
    np.testing.assert_allclose(fresh.score(test)["hqanogan"], scorer.score(test)["hqanogan"], rtol=1e-6)


def test_refinement_fits_normals_closer_and_keeps_the_encoder_codes():
    """refine_steps > 0: the restoration is the encoder-initialised W+ optimisation, closer to the image in
    pixels than G(E(x)); the latent terms still measure E(x)."""
    plain = tiny_scorer(terms.ScoreConfig(terms=("image_residual", "latent")))
    refined = tiny_scorer(terms.ScoreConfig(terms=("image_residual", "latent"), refine_steps=20, refine_lr=0.05))
    refined.G, refined.E, refined.D = plain.G, plain.E, plain.D          # the same networks
    train, held = phantom_like(16, seed=0), phantom_like(8, seed=1)
    plain.fit(train, held)
    refined.fit(train, held)
    test = phantom_like(6, seed=2)
    a, b = plain.score(test), refined.score(test)
    assert np.all(b["image_residual"] < a["image_residual"])
    np.testing.assert_allclose(b["latent"], a["latent"], rtol=1e-6)
    ws_plain, _ = plain.encode(test)
    ws_refined, rec = refined.restore(test)
    assert torch.equal(ws_plain, ws_refined) and rec.shape == test.shape and rec.abs().max() <= 1
    with_prior = tiny_scorer(terms.ScoreConfig(terms=("image_residual",), refine_steps=5, refine_prior=1.0))
    with pytest.raises(RuntimeError, match="fit the scorer first"):
        with_prior.restore(test)


def test_perceptual_encoder_compares_with_the_one_pass_restoration():
    """perceptual_encoder is perceptual when nothing is refined, and the distance to G(E(x)) (not to the
    refined restoration) when something is."""
    cfg = dict(terms=("perceptual", "perceptual_encoder"), aggregation="max", map_sigma=1.0)
    plain = tiny_scorer(terms.ScoreConfig(**cfg))
    refined = tiny_scorer(terms.ScoreConfig(**cfg, refine_steps=10, refine_lr=0.05))
    refined.G, refined.E, refined.D, refined.percep = plain.G, plain.E, plain.D, plain.percep
    test = phantom_like(4, seed=3)
    a = plain.terms_of(scores.Evidence(plain, test))
    np.testing.assert_array_equal(a["perceptual"], a["perceptual_encoder"])
    ev = scores.Evidence(refined, test)
    b = refined.terms_of(ev)
    np.testing.assert_allclose(b["perceptual_encoder"], a["perceptual"], rtol=1e-5)    # G(E(x)) again
    assert not np.allclose(b["perceptual"], b["perceptual_encoder"])
    _, one_pass = plain.encode(test)
    torch.testing.assert_close(ev.encoder_rec(), one_pass, rtol=0, atol=1e-6)


def test_repair_of_a_refined_restoration_keeps_its_usual_slots():
    """With refinement, repair replaces only the flagged slots of the refined code: nothing flagged gives
    the restoration itself, and the unflagged slots of a repaired code are the refined ones."""
    scorer = tiny_scorer(terms.ScoreConfig(terms=("image_residual",), refine_steps=8, refine_lr=0.05))
    scorer.fit(phantom_like(16, seed=0), phantom_like(8, seed=1))
    test = phantom_like(3, seed=4)
    ws, codes = scorer.restore_codes(test)
    _, restored = scorer.restore(test)
    none = scorer.repair(test, flagged=np.zeros(ws.shape[:2], bool))
    np.testing.assert_allclose(none["repaired"], restored.numpy(), atol=1e-6)
    chosen = np.zeros(ws.shape[:2], bool)
    chosen[:, 0] = True
    out = scorer.repair(test, flagged=chosen)
    np.testing.assert_array_equal(out["ws_repaired"][:, 1:], codes.numpy()[:, 1:])
    assert not np.allclose(out["ws_repaired"][:, 0], codes.numpy()[:, 0])


def test_refined_codes_are_stored_by_image_and_reused(tmp_path):
    scorer = tiny_scorer(terms.ScoreConfig(terms=("image_residual",), refine_steps=4, refine_lr=0.05))
    scorer.refined = scores.RefinedCodes(read_from=[tmp_path], write_to=tmp_path)
    namespace = scores.refine_namespace(scorer.G, scorer.E, scorer.config)
    test = phantom_like(5, seed=2)
    ws, first = scorer.restore(test[:3])
    assert len(scorer.refined.codes_of(namespace)) == 3 and (tmp_path / f"refined-{namespace}.safetensors").is_file()
    calls = []
    original = scores.refine

    def counting(G, images, *a, **k):
        calls.append(len(images))
        return original(G, images, *a, **k)

    scores.refine = counting
    try:
        fresh = scores.RefinedCodes(read_from=[tmp_path], write_to=tmp_path)     # read back from the file
        scorer.refined = fresh
        _, again = scorer.restore(test)
    finally:
        scores.refine = original
    assert calls == [2]                                      # only the two new images were refined
    torch.testing.assert_close(again[:3], first, rtol=0, atol=1e-6)
    scorer.refined = None                                    # without the store: the same restorations
    _, direct = scorer.restore(test)
    torch.testing.assert_close(direct, again, rtol=0, atol=1e-5)


def test_keep_refined_codes_ships_only_the_given_images(tmp_path):
    """What `ship-refined` writes: the codes of the book's images, not every image the cache ever restored."""
    from hqanogan_core.ship import keep_refined_codes

    scorer = tiny_scorer(terms.ScoreConfig(terms=("image_residual",), refine_steps=2, refine_lr=0.05))
    cache, out = tmp_path / "cache", tmp_path / "out"
    scorer.refined = scores.RefinedCodes(read_from=[cache], write_to=cache)
    namespace = scores.refine_namespace(scorer.G, scorer.E, scorer.config)
    book, other = phantom_like(3, seed=4), phantom_like(2, seed=5)
    _, codes = scorer.restore_codes(torch.cat([book, other]))
    name = f"refined-{namespace}.safetensors"
    kept = keep_refined_codes(cache / name, out / name, torch.cat([book[2:], book, phantom_like(1, seed=6)]))
    assert kept == 3                              # duplicates once, an image without a code skipped
    shipped = scores.RefinedCodes(read_from=[out]).codes_of(namespace)
    assert list(shipped) == [scores.RefinedCodes.key(im) for im in (book[2], book[0], book[1])]
    torch.testing.assert_close(torch.stack(list(shipped.values())), codes[[2, 0, 1]].cpu())
    with pytest.raises(ValueError, match="holds none of the 2 images"):
        keep_refined_codes(cache / name, out / "x.safetensors", phantom_like(2, seed=7))


def test_refinements_under_a_prior_are_stored_by_prior(tmp_path):
    """Under the normal-latent prior a refined code also depends on the fitted Gaussians: those are part of
    its namespace, so codes of one prior are reused and never served for another one."""
    scorer = tiny_scorer(terms.ScoreConfig(terms=("image_residual",), refine_steps=3, refine_lr=0.05,
                                           refine_prior=0.1))
    test = phantom_like(4, seed=3)
    with pytest.raises(RuntimeError, match="refine_prior needs the fitted Gaussians"):
        scorer.restore(test)
    ws, _ = scorer.encode(phantom_like(12, seed=4))
    scorer.gaussians = terms.fit_latent_gaussians(ws.numpy())
    other = terms.fit_latent_gaussians(ws.numpy()[:6])
    ns = scores.refine_namespace(scorer.G, scorer.E, scorer.config, scorer.gaussians)
    assert ns != scores.refine_namespace(scorer.G, scorer.E, scorer.config, other)
    assert ns != scores.refine_namespace(scorer.G, scorer.E, scorer.config.replace(refine_prior=0.0))
    # the pixel loss is part of the namespace; MSE namespaces are what they were before the loss was a setting
    mse = scorer.config.replace(refine_prior=0.0)
    assert scores.refine_namespace(scorer.G, scorer.E, mse.replace(refine_loss="l1")) != scores.refine_namespace(
        scorer.G, scorer.E, mse)
    import hashlib
    import json

    from hqanogan_core.provenance import tensor_digest
    before = tensor_digest(scorer.G) + tensor_digest(scorer.E) + json.dumps([3, 0.05, 0.0])
    assert scores.refine_namespace(scorer.G, scorer.E, mse) == hashlib.sha256(before.encode()).hexdigest()[:16]
    with pytest.raises(ValueError, match="needs the Gaussians"):
        scores.refine_namespace(scorer.G, scorer.E, scorer.config)
    scorer.refined = scores.RefinedCodes(read_from=[tmp_path], write_to=tmp_path)
    _, first = scorer.restore(test)
    assert (tmp_path / f"refined-{ns}.safetensors").is_file()
    calls = []
    original = scores.refine
    scores.refine = lambda G, images, *a, **k: calls.append(len(images)) or original(G, images, *a, **k)
    try:
        scorer.refined = scores.RefinedCodes(read_from=[tmp_path])
        _, again = scorer.restore(test)                      # the same prior: read back, nothing refined
        scorer.gaussians = other
        _, under_other = scorer.restore(test)                # another prior: refined anew
    finally:
        scores.refine = original
    assert calls == [4]
    torch.testing.assert_close(again, first, rtol=0, atol=1e-6)
    assert not torch.allclose(under_other, first)


def test_anomaly_map_sums_maps_in_held_out_std_units():
    """Several map terms: each smoothed map divided by its held-out normals' pixel std (fitted with the
    scorer, stored in its state), summed; the `anomaly_map` term aggregates exactly that map."""
    cfg = terms.ScoreConfig(terms=("anomaly_map", "image_residual"), aggregation="max", map_sigma=1.0,
                            map_terms=("image_residual", "perceptual"))
    scorer = tiny_scorer(cfg)
    held = phantom_like(8, seed=1)
    scorer.fit(phantom_like(16, seed=0), held)
    ev_held = terms.Evidence(scorer, held)
    for name in cfg.map_terms:                                   # the scales are the held-out pixel stds
        assert scorer.map_scales[name] == pytest.approx(float(ev_held.map(name, 1.0).std()), rel=1e-5)
    test = phantom_like(4, seed=2)
    out = scorer.score(test)
    ev = terms.Evidence(scorer, test)
    by_hand = (terms.smooth((test - ev.rec).abs().mean(dim=1).numpy(), 1.0) / scorer.map_scales["image_residual"]
               + terms.smooth(scorer.percep(test, ev.rec, spatial=True)[1][:, 0].numpy(), 1.0)
               / scorer.map_scales["perceptual"])
    maps = scorer.anomaly_maps(test)
    np.testing.assert_allclose(maps, by_hand, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(scorer.anomaly_maps(test, scorer.last_evidence), maps, rtol=1e-5)
    np.testing.assert_allclose(out["anomaly_map"], maps.reshape(4, -1).max(axis=1), rtol=1e-4)
    tensors, meta = scorer.state()                                # the scales travel with the fitted state
    fresh = tiny_scorer().load_state(tensors, meta)
    assert fresh.map_scales == scorer.map_scales
    np.testing.assert_allclose(fresh.anomaly_maps(test), maps, rtol=1e-5)
    assert cfg.describe_map().startswith("the sum of |x - x_hat| and the perceptual map")
    assert terms.ScoreConfig(map_sigma=2).describe_map() == "|x - x_hat| smoothed by sigma 2 px"
    unfitted = tiny_scorer(cfg)
    with pytest.raises(RuntimeError, match="needs the map scales"):
        unfitted.anomaly_maps(test)


def test_detection_map_sums_its_own_terms_in_the_same_units():
    """`detect_terms` make a second sum of maps, in the same held-out std units (the scales cover both maps'
    terms); the `detection_map` term aggregates it, and without detect_terms it is the anomaly map."""
    cfg = terms.ScoreConfig(terms=("detection_map", "anomaly_map"), aggregation="max", map_sigma=1.0,
                            map_terms=("image_residual",), detect_terms=("image_residual", "perceptual"))
    assert cfg.scaled_maps == ("image_residual", "perceptual")
    scorer = tiny_scorer(cfg)
    scorer.fit(phantom_like(16, seed=0), phantom_like(8, seed=1))
    assert set(scorer.map_scales) == {"image_residual", "perceptual"}
    test = phantom_like(4, seed=2)
    out = scorer.score(test)
    ev = scorer.last_evidence
    by_hand = (ev.map("image_residual", 1.0) / scorer.map_scales["image_residual"]
               + ev.map("perceptual", 1.0) / scorer.map_scales["perceptual"])
    np.testing.assert_allclose(out["detection_map"], by_hand.reshape(4, -1).max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(scorer.anomaly_maps(test, ev), ev.map("image_residual", 1.0), rtol=1e-6)  # unchanged
    np.testing.assert_allclose(out["anomaly_map"], ev.map("image_residual", 1.0).reshape(4, -1).max(axis=1),
                               rtol=1e-5)
    same = cfg.replace(detect_terms=())
    np.testing.assert_allclose(terms.compute_terms(ev, ("detection_map",), same)["detection_map"],
                               out["anomaly_map"], rtol=1e-6)
    assert "the detection map is the sum of |x - x_hat| and the perceptual map" in cfg.describe()


def test_residual_added_sees_only_what_is_brighter_than_the_restoration():
    """residual_added is max(x - x_hat, 0): a bright (dense) blob counts in full, an equally strong dark one
    not at all, where |x - x_hat| sees both alike; with both present it is the positive part, by hand."""
    scorer = tiny_scorer(terms.ScoreConfig(terms=("image_residual",)))
    rec = phantom_like(3, seed=4)
    x = rec.clone()
    x[0, :, 4:7, 4:7] += 0.5                                  # added density
    x[1, :, 4:7, 4:7] -= 0.5                                  # a lucency
    x[2] = x[2] + torch.linspace(-0.3, 0.3, 16)               # both sides at once
    ev = terms.Evidence(scorer, x, torch.zeros(3, scorer.G.num_ws, scorer.G.w_dim), rec)
    cfg = terms.ScoreConfig(terms=("residual_added", "image_residual"), aggregation="max", map_sigma=0.0)
    out = terms.compute_terms(ev, cfg.terms, cfg)
    np.testing.assert_allclose(out["image_residual"][:2], [0.5, 0.5], rtol=1e-5)
    np.testing.assert_allclose(out["residual_added"][:2], [0.5, 0.0], atol=1e-6)
    by_hand = np.clip((x - rec).mean(dim=1).numpy(), 0, None)
    np.testing.assert_allclose(ev.map("residual_added", 0.0), by_hand, rtol=1e-6)
    assert (by_hand[2] == 0).any() and (by_hand[2] > 0).any()
    assert terms.ScoreConfig(map_terms=("residual_added",)).describe_map() == "max(x - x_hat, 0) smoothed by sigma 1 px"


def test_only_a_scored_detection_map_has_its_maps_scaled():
    """The scorer fits held-out scales for the anomaly map's terms, and for the detection map's only when
    the score uses it (a score override that drops `detection_map` does not pay for its maps)."""
    both = terms.ScoreConfig(terms=("detection_map",), map_terms=("image_residual",),
                             detect_terms=("residual_added", "perceptual"))
    assert both.scaled_maps == ("image_residual", "residual_added", "perceptual")
    assert both.replace(terms=("anomaly_map",)).scaled_maps == ("image_residual",)
    with pytest.raises(ValueError, match="detect_terms must be distinct"):
        both.replace(detect_terms=("perceptual", "perceptual"))


def test_with_restoration_keeps_only_what_the_encoder_decides():
    """A repair swaps the restoration: residual maps follow it, maps against G(E(x)) and slot distances do not."""
    scorer = tiny_scorer(terms.ScoreConfig(terms=("image_residual",), refine_steps=3, refine_lr=0.05))
    scorer.fit(phantom_like(16, seed=0), phantom_like(8, seed=1))
    test = phantom_like(3, seed=2)
    ev = terms.Evidence(scorer, test)
    enc_map, slots = ev.map("residual_encoder", 1.0), ev.slot_distances()
    ev.map("image_residual", 1.0)
    other = ev.with_restoration(torch.zeros_like(ev.rec))
    assert other.map("residual_encoder", 1.0) is enc_map and other.slot_distances() is slots
    np.testing.assert_allclose(other.map("image_residual", 1.0), terms.smooth(test.abs().mean(dim=1).numpy(), 1.0),
                               rtol=1e-5, atol=1e-7)


def test_with_restoration_without_refinement_moves_every_map():
    """Without refinement G(E(x)) is the restoration, so a repair moves the 'encoder' maps too."""
    scorer = tiny_scorer(terms.ScoreConfig(terms=("image_residual",)))
    scorer.fit(phantom_like(16, seed=0), phantom_like(8, seed=1))
    test = phantom_like(3, seed=2)
    ev = terms.Evidence(scorer, test)
    slots = ev.slot_distances()
    before = ev.map("residual_encoder", 1.0)
    other = ev.with_restoration(torch.zeros_like(ev.rec))
    expected = terms.smooth(test.abs().mean(dim=1).numpy(), 1.0)
    np.testing.assert_allclose(other.map("residual_encoder", 1.0), expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(before, expected) and other.slot_distances() is slots


def test_a_slot_the_generator_lacks_is_skipped_like_a_missing_network():
    """A score may name latent_l<k> for a slot a smaller generator lacks: that generator skips it."""
    scorer = tiny_scorer(terms.ScoreConfig(terms=("image_residual", "latent_l1")))
    L = scorer.G.num_ws
    assert (scorer.usable(["image_residual", f"latent_l{L - 1}", f"latent_l{L}"])
            == ["image_residual", f"latent_l{L - 1}"])

"""Latent repair (hqanogan_core.repair, HQAnoGANScorer.repair) and localisation metrics
(hqanogan_core.localisation) against hand computations and the exact metrics."""
import warnings

import numpy as np
import pytest
from scipy import ndimage

from hqanogan_core import localisation as loc
from hqanogan_core import metrics, repair, scores

# ----------------------------------------------------------------------------- repair: pure functions


@pytest.fixture(scope="module")
def gaussians():
    """Per-slot Gaussians fitted on 300 random 'normal' codes [300, 3, 4] (correlated, different scales),
    the per-slot distances of 100 held-out normals and their 90 % thresholds."""
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(3, 4, 4))                                   # per-slot correlation
    draw = lambda n: np.einsum("nld,lde->nle", rng.normal(size=(n, 3, 4)), mix) + [[1.0], [-2.0], [0.5]]  # noqa: E731
    g = scores.fit_latent_gaussians(draw(300))
    held = scores.latent_mahalanobis(draw(100), g)                    # [100, 3]
    return {"g": g, "draw": draw, "held": held, "t": repair.slot_thresholds(held, 0.9), "bank": draw(50)}


def _outlying_codes(gz, n=6, seed=1):
    """n codes, each with slot (i % 3) pushed 6x farther from its mean: at least one slot flagged per code."""
    ws = gz["draw"](n)
    for i in range(n):
        s = i % 3
        ws[i, s] = gz["g"].means[s] + 6 * (ws[i, s] - gz["g"].means[s])
    return ws


def test_slot_thresholds_is_the_per_slot_quantile(gaussians):
    held = gaussians["held"]
    for q in (0.5, 0.9, 0.99):
        np.testing.assert_array_equal(repair.slot_thresholds(held, q), np.quantile(held, q, axis=0))
    np.testing.assert_array_equal(repair.unusual_slots(held, gaussians["t"]), held > gaussians["t"][None])
    # 90 % threshold: 10 of 100 held-out normals above it in each slot (linear interpolation between them)
    assert np.all(repair.unusual_slots(held, gaussians["t"]).sum(axis=0) == 10)


@pytest.mark.parametrize("mode", repair.REPAIR_MODES)
def test_codes_with_no_unusual_slot_come_back_bit_identical(gaussians, mode):
    g, t = gaussians["g"], gaussians["t"]
    ws = gaussians["draw"](40)
    d2 = scores.latent_mahalanobis(ws, g)
    ws, d2 = ws[(d2 <= t).all(axis=1)], d2[(d2 <= t).all(axis=1)]     # the codes with every slot usual
    assert len(ws) >= 10
    fixed, flagged = repair.repair_codes(ws, d2, t, g.means, mode=mode, bank=gaussians["bank"], k=3)
    assert not flagged.any()
    assert fixed.dtype == ws.dtype and np.array_equal(fixed, ws) and fixed is not ws
    # float32 codes with float32 means (as HQAnoGANScorer.repair passes them) too
    ws32 = ws.astype(np.float32)
    fixed32, _ = repair.repair_codes(ws32, d2, t, g.means.astype(np.float32), mode=mode, bank=gaussians["bank"], k=3)
    assert fixed32.dtype == np.float32 and np.array_equal(fixed32, ws32)


def test_shrink_moves_flagged_slots_exactly_to_target_and_nothing_else(gaussians):
    g, t = gaussians["g"], gaussians["t"]
    ws = _outlying_codes(gaussians)
    d2 = scores.latent_mahalanobis(ws, g)
    fixed, flagged = repair.repair_codes(ws, d2, t, g.means, mode="shrink")
    np.testing.assert_array_equal(flagged, d2 > t)
    assert flagged[np.arange(6), np.arange(6) % 3].all()               # the pushed slots are flagged
    after = scores.latent_mahalanobis(fixed, g)
    # flagged slots: distance^2 exactly the target (the threshold, by default); unflagged: bit for bit
    np.testing.assert_allclose(after[flagged], np.broadcast_to(t, d2.shape)[flagged], rtol=1e-10)
    np.testing.assert_array_equal(fixed[~flagged], ws[~flagged])
    # radially: w' - mu = c (w - mu) with c = sqrt(t / d2) in (0, 1)
    for n, s in zip(*np.nonzero(flagged)):
        c = np.sqrt(t[s] / d2[n, s])
        assert 0 < c < 1
        np.testing.assert_allclose(fixed[n, s] - g.means[s], c * (ws[n, s] - g.means[s]), rtol=1e-10)
    # an explicit target (a higher quantile) instead of the threshold
    target = repair.slot_thresholds(gaussians["held"], 0.97)
    fixed97, _ = repair.repair_codes(ws, d2, t, g.means, mode="shrink", target=target)
    np.testing.assert_allclose(scores.latent_mahalanobis(fixed97, g)[flagged],
                               np.broadcast_to(target, d2.shape)[flagged], rtol=1e-10)


def test_shrink_never_pushes_outwards(gaussians):
    """A slot the reader flags (flagged=...) that is already within target stays exactly where it is."""
    g, t = gaussians["g"], gaussians["t"]
    ws = _outlying_codes(gaussians)
    d2 = scores.latent_mahalanobis(ws, g)
    mine = np.ones_like(d2, dtype=bool)                                # the reader flags every slot
    for dtype in (np.float64, np.float32):
        w = ws.astype(dtype)
        fixed, flagged = repair.repair_codes(w, d2, t, g.means.astype(dtype), mode="shrink", flagged=mine)
        assert flagged.all()
        inside = d2 <= t
        assert inside.any() and (~inside).any()
        np.testing.assert_array_equal(fixed[inside], w[inside])       # bit for bit, not just close
        after = scores.latent_mahalanobis(fixed, g)
        assert np.all(after <= d2 * (1 + 1e-6))
        np.testing.assert_allclose(after[~inside], np.broadcast_to(t, d2.shape)[~inside], rtol=1e-5)


@pytest.mark.parametrize("mode", repair.REPAIR_MODES)
def test_repair_lowers_the_latent_term(gaussians, mode):
    g, t = gaussians["g"], gaussians["t"]
    ws = _outlying_codes(gaussians)
    d2 = scores.latent_mahalanobis(ws, g)
    fixed, flagged = repair.repair_codes(ws, d2, t, g.means, mode=mode, bank=gaussians["bank"], k=5)
    assert flagged.any(axis=1).all()
    latent_before, latent_after = d2.sum(axis=1), scores.latent_mahalanobis(fixed, g).sum(axis=1)
    assert np.all(latent_after < latent_before)
    if mode == "shrink":        # by exactly the excess over the threshold of the flagged slots
        excess = np.where(flagged, d2 - t[None], 0.0).sum(axis=1)
        np.testing.assert_allclose(latent_before - latent_after, excess, rtol=1e-9)


def _tiny_bank():
    """Bank of 4 codes [4, 3, 2]. On slots 0 and 1 code m sits at squared distance 0, 1, 4, 9 from zero;
    its slot 2 is (10 m, -m)."""
    bank = np.zeros((4, 3, 2))
    bank[1, 0] = [1, 0]
    bank[2, 1] = [0, 2]
    bank[3, 0] = [3, 0]
    bank[:, 2] = np.stack([10.0 * np.arange(4), -np.arange(4.0)], axis=1)
    return bank


def test_retrieve_takes_the_mean_of_the_nearest_on_unflagged_slots():
    bank = _tiny_bank()
    w = np.zeros((1, 3, 2))
    w[0, 2] = [30, -3]                       # slot 2 (flagged) equals bank code 3's: must NOT steer the search
    flagged = np.array([[False, False, True]])
    # nearest on slots 0 and 1: codes 0 (d 0), 1 (d 1), 2 (d 4), 3 (d 9)
    #   k = 1: slot 2 <- code 0's (0, 0);  k = 2: mean of (0, 0), (10, -1) = (5, -0.5)
    #   k = 3: mean of (0, 0), (10, -1), (20, -2) = (10, -1)
    for k, expected in ((1, [0, 0]), (2, [5, -0.5]), (3, [10, -1])):
        out = repair.retrieve_slots(w, bank, flagged, k=k)
        np.testing.assert_allclose(out[0, 2], expected)
        np.testing.assert_array_equal(out[0, :2], w[0, :2])          # unflagged slots kept
    # through repair_codes (d2 / thresholds only decide what is flagged)
    out, fl = repair.repair_codes(w, np.array([[0.0, 0.0, 5.0]]), np.ones(3), np.zeros((3, 2)), mode="retrieve",
                                  bank=bank, k=2)
    np.testing.assert_array_equal(fl, flagged)
    np.testing.assert_allclose(out[0, 2], [5, -0.5])
    # codes with nothing flagged are untouched, whatever their neighbours
    two = np.concatenate([w, w + 1])
    out = repair.retrieve_slots(two, bank, np.array([[False, False, True], [False, False, False]]), k=2)
    np.testing.assert_array_equal(out[1], two[1])
    np.testing.assert_allclose(out[0, 2], [5, -0.5])


def test_retrieve_with_every_slot_flagged_searches_on_all_slots():
    bank = _tiny_bank()
    w = bank[3:4] + 0.1                      # slots (3.1, 0.1), (0.1, 0.1), (30.1, -2.9)
    # squared distances on all three slots (slot 0 + slot 1 + slot 2):
    #   code 3: 0.02 + 0.02 + 0.02 = 0.06
    #   code 2: 9.62 + 3.62 + 102.82 = 116.06      (slots (0, 0), (0, 2), (20, -2))
    #   code 1: 4.42 + 0.02 + 407.62 = 412.06      (slots (1, 0), (0, 0), (10, -1))
    #   code 0: 9.62 + 0.02 + 914.42 = 924.06
    flagged = np.ones((1, 3), bool)
    np.testing.assert_allclose(repair.retrieve_slots(w, bank, flagged, k=1)[0], bank[3])
    np.testing.assert_allclose(repair.retrieve_slots(w, bank, flagged, k=2)[0], (bank[3] + bank[2]) / 2)
    np.testing.assert_allclose(repair.retrieve_slots(w, bank, flagged, k=4)[0], bank.mean(axis=0))


def test_repair_errors_are_clear(gaussians):
    g, t = gaussians["g"], gaussians["t"]
    ws = _outlying_codes(gaussians)
    d2 = scores.latent_mahalanobis(ws, g)
    with pytest.raises(ValueError, match="unknown repair mode 'nearest'"):
        repair.repair_codes(ws, d2, t, g.means, mode="nearest")
    with pytest.raises(ValueError, match="needs a bank"):
        repair.repair_codes(ws, d2, t, g.means, mode="retrieve")
    for k in (0, 51):
        with pytest.raises(ValueError, match=r"k must be in \[1, 50\]"):
            repair.repair_codes(ws, d2, t, g.means, mode="retrieve", bank=gaussians["bank"], k=k)
    for q in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"quantile must be in \(0, 1\)"):
            repair.slot_thresholds(gaussians["held"], q)


# ----------------------------------------------------------------------------- localisation


def test_dice_against_hand_counts():
    maps = np.zeros((4, 3, 3))
    masks = np.zeros((4, 3, 3), bool)
    maps[0, 0, :3] = 1                       # predicted 3 pixels, mask 2, overlap 1: 2 * 1 / (3 + 2) = 0.4
    masks[0, 0, 2] = masks[0, 1, 2] = True
    #   image 1: nothing predicted, nothing in the mask: 1 by convention
    masks[2, 2, :2] = True                   # image 2: nothing predicted, mask 2: 0
    maps[3, 1:, 1:] = 0.7                    # image 3: predicted = mask (4 pixels): 1
    masks[3, 1:, 1:] = True
    np.testing.assert_allclose(loc.dice(maps, masks, 0.5), [0.4, 1.0, 0.0, 1.0])
    # threshold is inclusive (map >= t): at 0.7 image 3 still matches, above it nothing is predicted
    np.testing.assert_allclose(loc.dice(maps, masks, 0.7), [0.4, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(loc.dice(maps, masks, 1.5), [0.0, 1.0, 0.0, 0.0])


def test_dice_threshold_finds_the_gap():
    rng = np.random.default_rng(0)
    masks = np.zeros((10, 16, 16), bool)
    for m in masks:
        r, c = rng.integers(0, 12, 2)
        m[r:r + 4, c:c + 4] = True                                    # 16 of 256 pixels
    maps = np.where(masks, 1.0, rng.choice([0.0, 0.1, 0.2], size=masks.shape))
    t, best = loc.dice_threshold(maps, masks)
    # any threshold in (0.2, 1] separates exactly: Dice 1 on every image; at or below 0.2 it cannot
    assert 0.2 < t <= 1.0 and best == 1.0
    assert best == loc.dice(maps, masks, t).mean()
    assert loc.dice(maps, masks, 0.2).mean() < 1.0


def _random_maps_masks(n=30, size=32, seed=0):
    """Half the images with 1-2 rectangular findings; maps = smoothed mask + smoothed noise."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    for m in masks[: n // 2]:
        for _ in range(rng.integers(1, 3)):
            r, c = rng.integers(0, size - 8, 2)
            h, w = rng.integers(3, 8, 2)
            m[r:r + h, c:c + w] = True
    noise = ndimage.gaussian_filter(rng.normal(size=masks.shape), (0, 1, 1))
    maps = ndimage.gaussian_filter(masks.astype(float), (0, 1, 1)) + 0.5 * noise / noise.std()
    return maps, masks


def test_pixel_bootstrap_binned_values_match_the_exact_metrics():
    maps, masks = _random_maps_masks()
    out = loc.pixel_bootstrap(maps, masks, n_boot=100, seed=0)
    exact_auroc, exact_aupro = metrics.pixel_auroc(maps, masks), metrics.aupro(maps, masks)
    assert 0.8 < exact_auroc < 0.95 and 0.5 < exact_aupro < 0.8        # informative but imperfect maps
    assert out["binned"]["pixel_auroc"] == pytest.approx(exact_auroc, abs=0.005)
    assert out["binned"]["aupro"] == pytest.approx(exact_aupro, abs=0.005)
    for name in ("pixel_auroc", "aupro"):
        lo, hi = out[name]
        assert 0 <= lo < hi <= 1
        assert hi - lo < 0.3
    # the same seed gives the same intervals; another seed other ones; fpr_limit reaches AUPRO only
    assert loc.pixel_bootstrap(maps, masks, n_boot=100, seed=0) == out
    other = loc.pixel_bootstrap(maps, masks, n_boot=100, seed=1)
    assert other["pixel_auroc"] != out["pixel_auroc"] and other["binned"] == out["binned"]
    lim = loc.pixel_bootstrap(maps, masks, n_boot=20, seed=0, fpr_limit=0.05)
    assert lim["binned"]["aupro"] == pytest.approx(metrics.aupro(maps, masks, fpr_limit=0.05), abs=0.005)
    assert lim["binned"]["pixel_auroc"] == out["binned"]["pixel_auroc"]


def test_pixel_bootstrap_of_a_perfect_map():
    _, masks = _random_maps_masks()
    # two values only: no bin holds both a normal and an abnormal pixel, so exactly 1
    out = loc.pixel_bootstrap(masks.astype(float), masks, n_boot=50)
    assert out["pixel_auroc"] == [1.0, 1.0] and out["aupro"] == [1.0, 1.0]
    assert out["binned"] == {"pixel_auroc": 1.0, "aupro": 1.0}
    # continuous values: one quantile bin may straddle the gap between the highest normal and the lowest
    # abnormal value (ties within a bin count half), so 1 up to the binning error
    perfect = masks + 0.1 * np.random.default_rng(1).uniform(size=masks.shape)
    assert metrics.pixel_auroc(perfect, masks) == 1.0 and metrics.aupro(perfect, masks) == 1.0
    out = loc.pixel_bootstrap(perfect, masks, n_boot=50)
    for name in ("pixel_auroc", "aupro"):
        assert out[name][0] <= out[name][1] <= 1.0
        assert out[name][0] == pytest.approx(1.0, abs=1e-4) and out["binned"][name] == pytest.approx(1.0, abs=1e-4)


def test_pixel_bootstrap_needs_a_region():
    maps, masks = _random_maps_masks()
    with pytest.raises(ValueError, match="at least one anomalous region"):
        loc.pixel_bootstrap(maps, np.zeros_like(masks))


def _images(n, seed, size=32):
    rng = np.random.default_rng(seed)
    return np.clip(ndimage.gaussian_filter(rng.uniform(size=(n, size, size)), (0, 1.5, 1.5)) * 1.5 - 0.25, 0, 1)


def test_naturalness_change_inside_and_outside():
    inputs, normals = _images(3, 0), _images(8, 1)
    masks = np.zeros((3, 32, 32), bool)
    masks[0, 4:6, 4:6] = True                # 4 pixels
    masks[1, 10, 10:12] = True               # 2 pixels; image 2 has no finding
    # a restoration identical to the input: nothing changed anywhere; contrast undefined (nan), no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = loc.naturalness(inputs, inputs, masks, normals)
    assert same["change_inside"] == 0.0 and same["change_outside"] == 0.0 and np.isnan(same["contrast"])
    assert np.isfinite(same["swd"]) and same["swd"] > 0
    # changes only inside the findings: image 0 all 4 mask pixels by 0.1 -> 0.1; image 1 one of its 2 by 0.6
    # -> 0.3; mean over images (not pixels): 0.2. Image 2 (no finding) is changed everywhere by 0.5 but
    # counts nowhere. Outside: 0, contrast inf.
    restored = inputs.copy()
    restored[0][masks[0]] = inputs[0][masks[0]] + 0.1
    restored[1, 10, 10] = inputs[1, 10, 10] - 0.6
    restored[2] = inputs[2] + 0.5
    out = loc.naturalness(restored, inputs, masks, normals)
    assert out["change_inside"] == pytest.approx(0.2) and out["change_outside"] == 0.0 and out["contrast"] == np.inf
    # and some change outside: 0.05 on every mask-free pixel of image 0 only -> (0.05 + 0) / 2 = 0.025, contrast 8
    restored[0][~masks[0]] = inputs[0][~masks[0]] + 0.05
    out = loc.naturalness(restored, inputs, masks, normals)
    assert out["change_outside"] == pytest.approx(0.025) and out["contrast"] == pytest.approx(8.0)
    assert out["swd"] == loc.image_swd(restored, normals)


def test_image_swd_of_a_set_with_itself_is_zero():
    a, b = _images(8, 0), _images(8, 1)
    assert loc.image_swd(a, a) == 0.0 and loc.image_swd(a, a, seed=3) == 0.0
    assert loc.image_swd(a, b) > 0 and loc.image_swd(a, b) == loc.image_swd(a, b)    # seeded
    assert loc.image_swd(a, np.clip(a + 0.2, 0, 1)) < loc.image_swd(a, 1 - b)


# ----------------------------------------------------------------------------- the scorer's repair


def test_scorer_repair_on_tiny_nets():
    import torch

    from hqanogan_core.nets.psp import EncoderConfig, build_encoder
    from tests.tiny import phantom_like, tiny_gan

    G, _ = tiny_gan()
    E = build_encoder("gradual", EncoderConfig(resolution=16, num_ws=G.num_ws, w_dim=G.w_dim, width=8,
                                               blocks=(1, 1, 1, 1)), w_avg=G.w_avg).eval()
    scorer = scores.HQAnoGANScorer(G, E, batch=8)
    with pytest.raises(RuntimeError, match="fit"):
        scorer.repair(phantom_like(2))
    scorer.fit(phantom_like(24, seed=0), phantom_like(12, seed=1))
    test = phantom_like(6, seed=2)
    test[3:, :, 4:10, 4:10] = 1.0                                      # bright square "lesions"
    ws, rec = scorer.encode(test)
    # nothing flagged (the reader's choice of no slot): the plain encode restorations, bit for bit
    for mode in repair.REPAIR_MODES:
        out = scorer.repair(test, mode=mode, k=3, flagged=np.zeros((6, G.num_ws), bool))
        assert not out["flagged"].any()
        np.testing.assert_array_equal(out["ws_repaired"], ws.numpy())
        np.testing.assert_array_equal(out["repaired"], rec.numpy())
        np.testing.assert_array_equal(out["d2_repaired"], out["d2"])
    # the threshold rule: images none of whose slots passes the held-out quantile are restored as by encode
    out = scorer.repair(test, quantile=0.9)
    np.testing.assert_allclose(out["d2"], scores.latent_mahalanobis(ws.numpy(), scorer.gaussians))
    np.testing.assert_array_equal(out["flagged"], out["d2"] > np.quantile(scorer.held_out_slots, 0.9, axis=0))
    clean = ~out["flagged"].any(axis=1)
    assert out["flagged"].any() and clean.any(), "test images should give both cases"
    np.testing.assert_array_equal(out["repaired"][clean], rec.numpy()[clean])
    assert np.all(out["d2_repaired"] <= out["d2"] * (1 + 1e-6))
    assert np.all(out["d2_repaired"][out["flagged"]] < out["d2"][out["flagged"]])
    assert out["repaired"].shape == test.shape and out["repaired"].min() >= -1 and out["repaired"].max() <= 1
    # passing the codes gives the same as encoding again
    again = scorer.repair(test, quantile=0.9, ws=ws)
    np.testing.assert_array_equal(again["repaired"], out["repaired"])
    assert isinstance(out["repaired"], np.ndarray) and not torch.is_tensor(out["repaired"])


def test_inside_outside_by_hand():
    """Per image with a finding: mean change inside its mask and outside; an image without one is left out."""
    change = np.zeros((3, 2, 2))
    change[0] = [[4.0, 1.0], [1.0, 1.0]]
    change[1] = [[9.0, 9.0], [9.0, 9.0]]          # no finding: not counted
    change[2] = [[2.0, 2.0], [0.0, 1.0]]
    masks = np.zeros((3, 2, 2), bool)
    masks[0, 0, 0] = True
    masks[2, 0] = True
    inside, outside = loc.inside_outside(change, masks)
    np.testing.assert_allclose(inside, [4.0, 2.0])
    np.testing.assert_allclose(outside, [1.0, 0.5])
    with pytest.raises(AssertionError):
        loc.inside_outside(change[0], masks[0])   # [H, W] is not a batch

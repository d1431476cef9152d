"""The frozen ImageNet backbone and what is built on it (PatchCore's coreset and image score, PaDiM's maps),
and the paired comparisons of the book: DeLong's test by hand and against the paired bootstrap, pairing
by path in the harness, and the markdown tables."""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from hqanogan_core import metrics
from hqanogan_core.benchmark import MethodRun, paired_comparisons
from hqanogan_core.data.splits import SplitArrays
from hqanogan_core.methods.padim import PaDiM
from hqanogan_core.methods.patchcore import greedy_coreset, reweighted_image_score
from hqanogan_core.nets.backbone import ImageNetFeatures
from hqanogan_core.published import SOURCES, published_rows
from hqanogan_core import tables
from hqanogan_core.tables import paired_table, paired_verdicts, published_table

ALEX_AT_64 = [(64, 30, 30), (192, 15, 15), (384, 8, 8), (256, 8, 8), (256, 8, 8)]   # as nets/backbone.py says


def _grey(n=4, r=64, seed=0) -> torch.Tensor:
    return torch.rand(n, 1, r, r, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def alex():
    return ImageNetFeatures("alex", stages=(4, 0, 2, 1, 3))          # any order: sorted


@pytest.fixture(scope="module")
def padim():
    rng = np.random.default_rng(0)
    train = rng.uniform(0.2, 0.8, (8, 64, 64)).astype(np.float32)
    return PaDiM(dims=10, n_fit=8, seed=0).fit(train)


# ----------------------------------------------------------------------------- the frozen backbone


def test_imagenet_features_stage_shapes_at_64px(alex):
    x = _grey()
    out = alex(x)
    assert [tuple(f.shape[1:]) for f in out] == ALEX_AT_64 and all(len(f) == 4 for f in out)
    assert alex.stages == (0, 1, 2, 3, 4) and alex.channels == [c for c, _, _ in ALEX_AT_64]
    assert all(torch.isfinite(f).all() and (f >= 0).all() for f in out)         # ReLU outputs
    # per image: a batch gives what the images give one by one
    torch.testing.assert_close(alex(x[1:2])[2], out[2][1:2], rtol=1e-4, atol=1e-5)


def test_imagenet_features_are_frozen(alex):
    params = list(alex.parameters())
    assert params and not any(p.requires_grad for p in params)
    assert not alex.training and not alex.train().training and not alex.train(True).training
    x = _grey(n=2).requires_grad_(True)
    assert not any(f.requires_grad for f in alex(x))                             # no graph to train through
    assert isinstance(alex.weights_digest(), str) and len(alex.weights_digest()) == 64


def test_imagenet_features_run_only_as_deep_as_asked(alex, padim):
    shallow = padim.backbone                                                     # stages (0, 1, 2)
    assert len(shallow.slices) == 3 and len(alex.slices) == 5
    x = _grey(n=2, seed=1)
    for a, b in zip(shallow(x), alex(x)[:3]):
        torch.testing.assert_close(a, b)


def test_imagenet_features_errors():
    with pytest.raises(ValueError, match="backbone must be one of"):
        ImageNetFeatures("resnet18")
    with pytest.raises(ValueError, match="stages must be in 0..4"):
        ImageNetFeatures("alex", stages=(0, 5))
    with pytest.raises(ValueError, match="stages must be in"):
        ImageNetFeatures("alex", stages=())


# ----------------------------------------------------------------------------- PatchCore's pieces


def _covering_radius(x: np.ndarray, chosen) -> float:
    return float(np.max(np.min(np.linalg.norm(x[:, None] - x[list(chosen)][None], axis=2), axis=1)))


def test_greedy_coreset_on_a_line():
    line = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    x = torch.tensor(line)[:, None].float()
    starts = set()
    for seed in range(8):
        start = greedy_coreset(x, 1, seed=seed)
        assert start.shape == (1,)
        starts.add(int(start[0]))
        picks = greedy_coreset(x, 3, seed=seed).tolist()
        assert picks[0] == int(start[0])                                  # the seeded start ...
        assert picks[1] == int(np.argmax(np.abs(line - line[picks[0]])))   # ... then the farthest point from it
        dist_to_set = np.min(np.abs(line[:, None] - line[picks[:2]][None]), axis=1)
        assert picks[2] == int(np.argmax(dist_to_set))                     # ... then the farthest from both
        assert torch.equal(greedy_coreset(x, 3, seed=seed), torch.tensor(picks))
    assert len(starts) > 1                                                 # the start depends on the seed
    # from 0 the greedy order is 0, 10, 3: every point is then within 1.0 of a chosen one
    for seed in range(30):
        picks = greedy_coreset(x, 3, seed=seed).tolist()
        if picks[0] == 0:
            assert picks == [0, 4, 3] and _covering_radius(line[:, None], picks) == 1.0
            break
    else:
        pytest.fail("no seed in 0..29 starts at row 0")


@pytest.mark.parametrize("seed", range(4))
def test_greedy_coreset_covers_every_point(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(12, 3))
    n = 3
    picks = greedy_coreset(torch.tensor(x), n, seed=seed).tolist()
    assert len(set(picks)) == n
    radius = _covering_radius(x, picks)
    chosen = x[picks]
    # every point is within the covering radius, which is no larger than the distance between any two picks
    # (each pick was the farthest point when it was taken) ...
    assert all(np.min(np.linalg.norm(chosen - p, axis=1)) <= radius + 1e-12 for p in x)
    assert radius <= min(np.linalg.norm(a - b) for a, b in itertools.combinations(chosen, 2)) + 1e-9
    # ... and at most twice the best possible (k-center greedy is a 2-approximation): brute force over all triples
    best = min(_covering_radius(x, c) for c in itertools.combinations(range(len(x)), n))
    assert radius <= 2 * best + 1e-9
    # all rows: a permutation
    assert sorted(greedy_coreset(torch.tensor(x), len(x), seed=seed).tolist()) == list(range(len(x)))


def test_reweighted_image_score_by_hand():
    bank = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    patches = torch.tensor([[0.1, 0.1], [4.0, 4.0], [0.5, 0.0]])
    d = torch.cdist(patches, bank)
    scores, nearest = d.min(dim=1)
    # the worst patch is [4, 4], nearest bank patch m* = [5, 5] at sqrt(2); m*'s 3 nearest bank patches are
    # itself, [0, 2] (sqrt 34) and [1, 0] (sqrt 41); the patch's distances to them: sqrt 2, sqrt 20, 5
    dists = np.array([math.sqrt(2), math.sqrt(20), 5.0])
    weight = 1 - np.exp(dists[0]) / np.exp(dists).sum()
    out = reweighted_image_score(scores, nearest, patches, bank, neighbours=3)
    assert out.item() == pytest.approx(weight * math.sqrt(2), rel=1e-5)
    assert out.item() == pytest.approx(1.38997, abs=1e-4)
    # more neighbours than the bank has: all of it
    dists4 = np.r_[dists, math.sqrt(32)]
    out4 = reweighted_image_score(scores, nearest, patches, bank, neighbours=9)
    assert out4.item() == pytest.approx((1 - np.exp(dists4[0]) / np.exp(dists4).sum()) * math.sqrt(2), rel=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_reweighting_weight_is_in_0_1(seed):
    g = torch.Generator().manual_seed(seed)
    bank, patches = torch.randn(20, 4, generator=g), torch.randn(9, 4, generator=g) * 2
    scores, nearest = torch.cdist(patches, bank).min(dim=1)
    for k in (1, 3, 9):
        weight = (reweighted_image_score(scores, nearest, patches, bank, k) / scores.max()).item()
        # the nearest bank patch is the closest of m*'s neighbours, so its softmax share is at most 1 / k
        assert 1 - 1 / k - 1e-6 <= weight < 1, (k, weight)


# ----------------------------------------------------------------------------- PaDiM on tiny data


def test_padim_maps_and_scores(padim):
    test = np.random.default_rng(1).uniform(0.2, 0.8, (3, 64, 64)).astype(np.float32)
    test[0, 20:40, 20:40] = 1.0
    out = padim.score(test)
    maps = padim.anomaly_map(test)
    assert maps.shape == test.shape and np.isfinite(maps).all() and (maps >= 0).all()
    assert out["pred_score"].shape == (3,)
    np.testing.assert_array_equal(out["pred_score"], maps.reshape(3, -1).max(axis=1))
    # the map of a new array object is computed afresh and equals the one kept from score()
    np.testing.assert_allclose(padim.anomaly_map(test.copy()), maps, rtol=1e-5, atol=1e-6)
    assert padim.grid == (30, 30) and padim.patch_maps(test).shape == (3, 30, 30)
    assert padim.means.shape == (900, 10) and padim.precisions.shape == (900, 10, 10)
    assert padim.info()["parameters"] == 900 * 10 + 900 * 100 and padim.info()["n_fit"] == 8


# ----------------------------------------------------------------------------- DeLong and the paired bootstrap


def test_delong_by_hand():
    labels = np.array([1, 1, 0, 0])
    a = np.array([0.9, 0.4, 0.5, 0.1])      # AUROC 3/4: V10 = [1, 1/2], V01 = [1/2, 1]
    b = np.array([0.8, 0.7, 0.2, 0.3])      # AUROC 1:   V10 = [1, 1],   V01 = [1, 1]
    out = metrics.delong_test(a, b, labels)
    # var = var(V10_a) / m + var(V01_a) / n = 0.125 / 2 + 0.125 / 2 = 0.125 (b's placements are constant)
    assert (out["auroc_a"], out["auroc_b"], out["diff"]) == (0.75, 1.0, -0.25)
    assert out["se"] == pytest.approx(math.sqrt(0.125))
    assert out["z"] == pytest.approx(-0.25 / math.sqrt(0.125))
    assert out["p"] == pytest.approx(2 * norm.sf(0.25 / math.sqrt(0.125)))
    swapped = metrics.delong_test(b, a, labels)
    assert (swapped["diff"] == 0.25 and swapped["z"] == pytest.approx(-out["z"])
            and swapped["p"] == pytest.approx(out["p"]))


def test_delong_identical_scores():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(30), np.ones(20)].astype(int)
    s = rng.normal(size=50) + labels
    out = metrics.delong_test(s, s.copy(), labels)
    assert out["diff"] == 0.0 and out["se"] == 0.0 and out["z"] == 0.0 and out["p"] == 1.0
    # a monotone transform ranks the same: the same AUROC, no difference
    out = metrics.delong_test(s, np.exp(3 * s), labels)
    assert out["diff"] == 0.0 and out["p"] == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_delong_aurocs_equal_metrics_auroc(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 80)
    a = np.round(rng.normal(size=80) + labels, 1)                   # ties
    b = np.round(rng.normal(size=80) + 0.3 * labels, 1)
    out = metrics.delong_test(a, b, labels)
    assert out["auroc_a"] == pytest.approx(metrics.auroc(a, labels), abs=1e-12)
    assert out["auroc_b"] == pytest.approx(metrics.auroc(b, labels), abs=1e-12)
    assert out["diff"] == pytest.approx(out["auroc_a"] - out["auroc_b"], abs=1e-15)
    assert out["z"] == pytest.approx(out["diff"] / out["se"]) and 0 < out["p"] < 1


def test_delong_agrees_with_the_paired_bootstrap():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(100), np.ones(100)].astype(int)
    shared = rng.normal(size=200)                                    # the two methods are correlated
    strong = shared + 2.0 * labels + 0.5 * rng.normal(size=200)
    weak = shared + 0.5 * labels + 0.5 * rng.normal(size=200)
    twin = shared + 2.0 * labels + 0.5 * rng.normal(size=200)        # as good as `strong`, other noise
    for b, significant in ((weak, True), (twin, False)):
        d = metrics.delong_test(strong, b, labels)
        boot = metrics.paired_bootstrap(metrics.auroc, strong, b, labels, n_boot=400, seed=1)
        assert boot["diff"] == pytest.approx(d["diff"], abs=1e-12)
        assert (d["p"] < 0.05) == (boot["p"] < 0.05) == significant, (d["p"], boot["p"])
        # the bootstrap CI is about diff +- 1.96 DeLong standard errors
        half_width = (boot["ci95"][1] - boot["ci95"][0]) / 2
        assert 0.7 < half_width / (1.96 * d["se"]) < 1.3, (half_width, d["se"])
        assert boot["ci95"][0] <= boot["diff"] <= boot["ci95"][1]
    assert metrics.paired_bootstrap(metrics.auroc, strong, weak, labels, n_boot=50, seed=3) == \
        metrics.paired_bootstrap(metrics.auroc, strong, weak, labels, n_boot=50, seed=3)


# ----------------------------------------------------------------------------- pairing in the harness


def _run(paths, labels, scores) -> MethodRun:
    n = len(paths)
    test = SplitArrays(images=np.zeros((n, 2, 2), np.float32), labels=np.asarray(labels), types=np.array(
        ["bad" if y else "good" for y in labels]), masks=None, paths=list(paths))
    return MethodRun(scores=np.asarray(scores, np.float64), maps=None, timing={}, terms={}, method=None, test=test)


def test_paired_comparisons_match_images_by_path():
    rng = np.random.default_rng(0)
    n = 40
    paths = [f"test/{'bad' if i % 2 else 'good'}/{i:03d}.png" for i in range(n)]
    labels = np.array([i % 2 for i in range(n)])
    ours = rng.normal(size=n) + 1.5 * labels
    theirs_by_path = dict(zip(paths, rng.normal(size=n) + 0.5 * labels))
    # the other method scored a shuffled subset of 25 images (and one image ours never saw)
    subset = [paths[i] for i in rng.permutation(n)[:25]]
    other_paths = subset + ["test/bad/999.png"]
    other = _run(other_paths, [int(p.split("/")[1] == "bad") for p in other_paths],
                 [theirs_by_path[p] for p in subset] + [100.0])
    full = _run(paths, labels, [theirs_by_path[p] for p in paths])
    out = paired_comparisons({"hqanogan": _run(paths, labels, ours), "other": other, "full": full},
                             n_boot=200, seed=0)
    assert set(out) == {"other", "full"}
    pick = [paths.index(p) for p in subset]
    a, b, y = ours[pick], np.array([theirs_by_path[p] for p in subset]), labels[pick]
    assert out["other"]["n"] == 25 and out["full"]["n"] == n
    assert out["other"]["diff"] == pytest.approx(metrics.auroc(a, y) - metrics.auroc(b, y), abs=1e-12)
    delong = metrics.delong_test(a, b, y)
    assert out["other"]["p_delong"] == pytest.approx(delong["p"]) and out["other"]["z"] == pytest.approx(delong["z"])
    boot = metrics.paired_bootstrap(metrics.auroc, a, b, y, n_boot=200, seed=0)
    assert out["other"]["p_bootstrap"] == boot["p"] and out["other"]["ci95"] == boot["ci95"]
    full_theirs = np.array([theirs_by_path[p] for p in paths])
    assert out["full"]["diff"] == pytest.approx(metrics.auroc(ours, labels) - metrics.auroc(full_theirs, labels))


# ----------------------------------------------------------------------------- tables


COMPARISONS = {
    "ae": {"n": 200, "diff": 0.12, "ci95": [0.08, 0.16], "p_delong": 0.0001, "p_bootstrap": 0.0, "z": 5.1},
    "padim": {"n": 200, "diff": -0.05, "ci95": [-0.09, -0.01], "p_delong": 0.012, "p_bootstrap": 0.02, "z": -2.5},
    "vae": {"n": 150, "diff": 0.01, "ci95": [-0.03, 0.05], "p_delong": 0.6, "p_bootstrap": 0.61, "z": 0.5},
}


def test_paired_table_rows_and_verdicts():
    table = paired_table(COMPARISONS)
    lines = table.splitlines()
    assert lines[0] == ("| method | images | AUROC hqanogan − method [95 % CI] | p (DeLong) | p (Holm) "
                        "| p (bootstrap) | at α = 0.05 |")
    assert lines[1] == "|" + "---|" * 7
    # Holm over three tests: 3 x 0.0001, 2 x 0.012, max(1 x 0.6, previous)
    assert lines[2:] == [
        "| ae | 200 | +0.120 [+0.080, +0.160] | < 0.001 | < 0.001 | < 0.001 | hqanogan better |",
        "| vae | 150 | +0.010 [-0.030, +0.050] | 0.600 | 0.600 | 0.610 | no significant difference |",
        "| padim | 200 | -0.050 [-0.090, -0.010] | 0.012 | 0.024 | 0.020 | padim better |",
    ]
    # at alpha 0.01 padim's adjusted p (0.024) is not significant, but its bootstrap CI excludes 0: borderline
    strict = paired_table(COMPARISONS, ours="ours", alpha=0.01).splitlines()
    assert strict[0].endswith("| at α = 0.01 |") and "AUROC ours − method" in strict[0]
    assert strict[-1].endswith("| no significant difference (borderline) |") and strict[2].endswith("| ours better |")
    v = paired_verdicts(COMPARISONS)
    assert (v["ours_better"], v["tie"], v["ours_worse"], v["excluded"]) == (["ae"], ["vae"], ["padim"], [])
    v = paired_verdicts(COMPARISONS, alpha=0.01)
    assert (v["ours_better"], sorted(v["tie"]), v["ours_worse"]) == (["ae"], ["padim", "vae"], [])
    # a method left out of the family (it used labels) is tested but not adjusted with the others
    v = paired_verdicts(COMPARISONS, exclude=["padim"])
    assert v["excluded"] == ["padim"] and v["p_holm"] == pytest.approx({"ae": 0.0002, "vae": 0.6})
    assert "not in the family" in paired_table(COMPARISONS, exclude=["padim"]).splitlines()[-1]


def test_holm_by_hand():
    assert tables.holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert tables.holm({"a": 0.5}) == {"a": 0.5} and tables.holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}


def test_claim_sentence_covers_every_outcome():
    v = paired_verdicts(COMPARISONS)
    assert tables.claim_sentence(COMPARISONS, v).startswith("does not hold here: padim detects")
    better = {k: {**c, "diff": abs(c["diff"]), "p_delong": 1e-4} for k, c in COMPARISONS.items()}
    assert tables.claim_sentence(better, paired_verdicts(better)).startswith("holds here")
    unclear = {k: {**c, "p_delong": 0.5} for k, c in COMPARISONS.items()}
    sentence = tables.claim_sentence(unclear, paired_verdicts(unclear))
    assert sentence.startswith("is neither confirmed nor contradicted") and "0.050 against padim" in sentence


def _report(aurocs: dict, per_type: dict | None = None) -> dict:
    entry = lambda v: {"value": v, "ci95": [v - 0.05, v + 0.05]}        # noqa: E731
    return {"methods": {m: {"image": {"auroc": entry(v)}, "per_type": {k: {"auroc": entry(t[m])}
                                                                       for k, t in (per_type or {}).items()}}
                        for m, v in aurocs.items()}}


def test_headline_is_true_whichever_way_it_went():
    first = tables.headline(_report({"hqanogan": 0.9, "ae": 0.8, "pca": 0.7}), "hqanogan", ["hqanogan", "ae", "pca"])
    assert first.startswith("hqanogan ranks first (0.900); the runner-up, ae (0.800), is 0.100 lower")
    behind = tables.headline(_report({"hqanogan": 0.7, "ae": 0.8, "pca": 0.75}), "hqanogan", ["hqanogan", "ae", "pca"])
    assert behind.startswith("the best method is ae (0.800); hqanogan (0.700) ranks 3 of 3, 0.100 below it")
    tie = tables.headline(_report({"hqanogan": 0.8, "ae": 0.8}), "hqanogan", ["ae", "hqanogan"])
    assert "ties with the best method" in tie or tie.startswith("hqanogan ranks first")


def test_type_leaders_share_ties():
    report = _report({"a": 0.9, "b": 0.8}, {"x": {"a": 1.0, "b": 1.0}, "y": {"a": 0.7, "b": 0.9}})
    assert tables.type_leaders(report, ["a", "b"]) == {"x": ["a", "b"], "y": ["b"]}


def test_published_table():
    rows = published_rows()
    assert {"source": "bmad", "dataset": "RSNA", "method": "fanogan", "auroc": 55.1} in rows
    lines = published_table(rows, SOURCES).splitlines()
    assert lines[0] == ("| method | RSNA (BMAD) | OCT2017 (BMAD) | ZhangLab (AnatPaste) | CheXpert (AnatPaste) "
                        "| RSNA (AnatPaste) |")
    body = {line.split(" | ")[0][2:]: line for line in lines[2:]}
    assert list(body) == ["fanogan", "ganomaly", "deepsvdd", "cutpaste", "padim", "patchcore", "cs-flow", "anatpaste"]
    assert body["fanogan"] == "| fanogan | 55.1 | 72.8 | – | – | – |"
    assert body["anatpaste"] == "| anatpaste | – | – | 92.1 | 78.7 | 81.9 |"
    assert body["patchcore"] == "| patchcore | 75.2 | 98.6 | – | – | – |"
    # a hand-made input: columns in order of appearance, a missing value is a dash
    small = [{"source": "s", "dataset": "D2", "method": "m1", "auroc": 70.04},
             {"source": "s", "dataset": "D1", "method": "m2", "auroc": 80.0}]
    assert published_table(small, {"s": {"short": "S"}}).splitlines() == [
        "| method | D2 (S) | D1 (S) |", "|---|---|---|", "| m1 | 70.0 | – |", "| m2 | – | 80.0 |"]

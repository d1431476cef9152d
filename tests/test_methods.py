"""Every registered method end to end through the benchmark harness on the tiny 32 px phantom, and the
harness's checks on the method interface (unknown names / options, score() must return a dict)."""
import json
import os

import numpy as np
import pytest

from hqanogan_core.benchmark import make_method, run_benchmark, run_method
from hqanogan_core.data.splits import SplitArrays, load_split
from hqanogan_core.methods import METHODS
from hqanogan_core.methods.base import Method

# the smallest settings that still run every code path (train in fit(), score, maps)
TINY_GAN_BASELINE = {"steps": 2, "settings": {"width": 2, "gan_steps": 1, "batch": 4}}
TINY = {
    "mean": {},
    "iforest": {"n_estimators": 10},
    "pca": {},
    "ae": {"steps": 2, "settings": {"width": 4}},
    "vae": {"steps": 2, "settings": {"width": 4}},
    "fanogan": TINY_GAN_BASELINE,
    "anogan": {**TINY_GAN_BASELINE, "iterations": 3, "test_subset": 2},
    "ganomaly": {"steps": 2, "settings": {"width": 4, "batch": 4}},
    "deepsvdd": {"steps": 2, "settings": {"width": 2, "pretrain_steps": 1, "batch": 4}},
    "deepsad": {"steps": 2, "n_labelled": 3, "settings": {"width": 2, "pretrain_steps": 1, "batch": 4}},
    "cutpaste": {"steps": 2, "settings": {"width": 2, "batch": 4}},
    "anatpaste": {"steps": 2, "settings": {"width": 2, "batch": 4}},
    "gaussian_ad": {"n_fit": 8},
    "padim": {"n_fit": 8, "dims": 10},
    "patchcore": {"n_fit": 4, "coreset": 0.05},
    "supervised": {"n_normal": 8, "n_per_type": 2, "steps": 3, "width": 4},
    "hqanogan": None,          # {"run": the tiny shipped encoder}, filled in by the test
    "hqanogan_repair": None,   # the same
}


def test_every_registered_method_has_tiny_options():
    assert set(TINY) == set(METHODS)


@pytest.mark.parametrize("name", list(METHODS))
def test_method_end_to_end(name, shipped, tmp_path, monkeypatch):
    monkeypatch.setenv("HQANOGAN_CACHE", str(tmp_path / "cache"))   # trained-in-fit runs land here
    options = {"run": shipped["enc"]} if name.startswith("hqanogan") else TINY[name]
    fitted = {}
    with open(os.devnull, "w") as devnull:
        report = run_benchmark(shipped["data"], [name], out=tmp_path / "out", n_boot=20, seed=0,
                               method_options={name: options}, fitted=fitted, log=devnull)
    run, r = fitted[name], report["methods"][name]
    n = len(run.test)
    if name == "anogan":        # scored on a seeded stratified subset: 2 images of each type (or all it has)
        full_types, full_counts = np.unique(load_split(shipped["data"], "test").types, return_counts=True)
        types, counts = np.unique(run.test.types, return_counts=True)
        assert r["test_subset"] == 2 and list(types) == list(full_types)
        assert list(counts) == [min(2, c) for c in full_counts] and n < shipped["n_test"]
    else:
        assert n == shipped["n_test"] and r["test_subset"] is None
    assert r["n_test"] == n
    assert run.scores.shape == (n,) and np.isfinite(run.scores).all()
    for term, values in run.terms.items():
        assert values.shape == (n,), term
    if run.maps is None:
        assert r["pixel_auroc"] is None and r["aupro"] is None
    else:
        assert run.maps.shape == run.test.images.shape and np.isfinite(run.maps).all()
        assert 0.0 <= r["aupro"] <= 1.0 and 0.0 <= r["pixel_auroc"] <= 1.0
        for key in ("pixel_auroc_ci95", "aupro_ci95"):
            assert 0.0 <= r[key][0] <= r[key][1] <= 1.0, (key, r[key])
        # Dice per type with the threshold chosen on the validation split, and one for all types
        assert "all" in r["dice"] and set(r["dice"]) - {"all"} <= set(r["per_type"])
        for d in r["dice"].values():
            assert 0.0 <= d["ci95"][0] <= d["ci95"][1] <= 1.0 and 0.0 <= d["value"] <= 1.0
    if run.restored is not None:
        nat = r["naturalness"]
        assert nat["swd"] >= 0 and nat["change_inside"] >= 0 and nat["change_outside"] >= 0
    else:
        assert "naturalness" not in r
    info = run.method.info()
    assert isinstance(info["parameters"], int) and info["parameters"] > 0
    assert json.loads(json.dumps(info)) == json.loads(json.dumps(r["info"]))    # JSON-able, and the one reported
    if name in ("ae", "vae", "fanogan", "anogan", "ganomaly", "deepsvdd", "deepsad", "cutpaste", "anatpaste"):
        # trained in fit() under the cache
        assert info["weights"].startswith("trained in fit(): ") and f"runs/{METHODS[name].recipe}-" in info["weights"]
        assert info["train_steps"] == 2
    assert r["ms_per_image"] > 0 and r["train_seconds"] >= 0
    # the report is strict JSON (no NaN / inf) and round-trips to what was written
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == json.loads((tmp_path / "out" / "benchmark.json").read_text())
    for metric in ("auroc", "ap", "sens_at_95spec"):
        value, (lo, hi) = r["image"][metric]["value"], r["image"][metric]["ci95"]
        assert 0.0 <= lo <= value <= hi <= 1.0


# ----------------------------------------------------------------------------- the harness's checks


def _tiny_split(n_normal=6, n_abnormal=4, size=8, seed=0) -> SplitArrays:
    rng = np.random.default_rng(seed)
    n = n_normal + n_abnormal
    return SplitArrays(images=rng.uniform(0, 1, (n, size, size)).astype(np.float32),
                       labels=np.r_[np.zeros(n_normal), np.ones(n_abnormal)].astype(np.int64),
                       types=np.array(["good"] * n_normal + ["spot"] * n_abnormal), masks=None,
                       paths=[f"img{i}.png" for i in range(n)])


def test_unknown_method_and_option_are_named(shipped):
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        make_method("nope")
    with pytest.raises(ValueError, match=r"'pca' has no option\(s\) \['bogus'\]"):
        make_method("pca", options={"bogus": 1})
    with pytest.raises(ValueError, match=r"'ae' has no option\(s\) \['bogus'\]"):
        make_method("ae", options={"steps": 1, "bogus": 1})
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        run_benchmark(shipped["data"], ["mean", "nope"])
    with pytest.raises(ValueError, match=r"'pca' has no option\(s\) \['bogus'\]"):
        run_benchmark(shipped["data"], ["pca"], method_options={"pca": {"bogus": 1}}, log=open(os.devnull, "w"))
    with pytest.raises(ValueError, match=r"options given for \['pca'\]"):
        run_benchmark(shipped["data"], ["mean"], method_options={"pca": {}})


class BareArrayMethod(Method):
    """Breaks the interface: score() returns the scores array itself, not {"pred_score": ...}."""

    name = "bare"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, train, valid=None):
        return self

    def score(self, images):
        return images.reshape(len(images), -1).mean(axis=1)


def test_score_returning_a_bare_array_is_rejected(monkeypatch):
    monkeypatch.setitem(METHODS, "bare", BareArrayMethod)
    split = _tiny_split()
    with pytest.raises(TypeError, match=r"bare.score\(\) must return a dict with 'pred_score', got ndarray"):
        run_method("bare", split, split)
    # the same method with the interface honoured passes
    monkeypatch.setattr(BareArrayMethod, "score", lambda self, images: {"pred_score": images.mean(axis=(1, 2))})
    run = run_method("bare", split, split)
    assert run.scores.shape == (len(split),) and run.maps is None and run.timing["info"]["parameters"] == 0


@pytest.mark.parametrize("name", ["ae", "anogan"])
def test_learned_methods_are_deterministic(name, shipped, tmp_path, monkeypatch):
    """Trained from scratch twice (separate caches), same seed: the same scores, bit for bit."""
    train, test = load_split(shipped["data"], "train"), load_split(shipped["data"], "test")
    scores = []
    for k in range(2):
        monkeypatch.setenv("HQANOGAN_CACHE", str(tmp_path / f"cache{k}"))
        scores.append(run_method(name, train, test, seed=3, options=TINY[name]).scores)
    np.testing.assert_array_equal(scores[0], scores[1])


def test_repair_map_is_the_same_whether_or_not_the_images_were_scored(shipped, tmp_path, monkeypatch):
    """HQAnoGANRepair.anomaly_map reuses the scored evidence, or builds it from E(x) alone (no refinement):
    the repaired restoration replaces the refined one either way, so the maps agree."""
    from hqanogan_core.methods.hqanogan import HQAnoGANRepair

    monkeypatch.setenv("HQANOGAN_CACHE", str(tmp_path / "cache"))
    train = load_split(shipped["data"], "train").images
    test = load_split(shipped["data"], "test").images[:4]
    method = HQAnoGANRepair(run=shipped["enc"], score={"refine_steps": 3}).fit(train)
    fresh = method.anomaly_map(test.copy())              # never scored
    method.score(test)
    scored = method.anomaly_map(test)
    assert fresh.shape == test.shape
    np.testing.assert_allclose(fresh, scored, rtol=1e-4, atol=1e-5)

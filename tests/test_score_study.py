"""The score study: selection on validation only, the semi-supervised weights, and the shipped study's
choice being the package's default score."""
import json

import numpy as np
import pytest
import torch

from hqanogan_core import metrics, score_study as st
from hqanogan_core.methods.hqanogan import DEFAULT_SCORE
from hqanogan_core.terms import ENCODER_MAPS, ScoreConfig


def test_greedy_selection_adds_terms_only_while_they_help():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200), np.ones(200)].astype(int)
    signal_a = rng.normal(size=400) + 1.0 * y            # two independent informative terms
    signal_b = rng.normal(size=400) + 1.0 * y
    noise = rng.normal(size=400)
    z = {"a": signal_a, "b": signal_b, "noise": noise}
    chosen, value = st.greedy_selection(z, y, ["noise", "a", "b"])
    assert sorted(chosen) == ["a", "b"]
    assert value == pytest.approx(metrics.auroc(signal_a + signal_b, y))
    assert value > max(metrics.auroc(signal_a, y), metrics.auroc(signal_b, y))
    # a term whose gain is positive but within the bootstrap noise stays out (a fixed bar of 0.005 let it in)
    weak = np.random.default_rng(11).normal(size=400) * 0.3 + 0.1 * y
    gain = metrics.auroc(signal_a + weak, y) - metrics.auroc(signal_a, y)
    assert 0.005 < gain and metrics.paired_bootstrap(metrics.auroc, signal_a + weak, signal_a, y)["ci95"][0] < 0
    only, _ = st.greedy_selection({"a": signal_a, "weak": weak}, y, ["weak", "a"])
    assert only == ["a"]


def test_term_weights_follow_the_labels_and_fall_back_to_the_prior():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(100), np.ones(100)]
    z = np.stack([rng.normal(size=200) + 2 * y, rng.normal(size=200)], axis=1)       # only column 0 informs
    prior = np.array([0.0, 1.0])                                                      # a wrong prior
    w = st.fit_term_weights(z, y, prior, strength=0.01)
    assert w[0] > 1.0 and abs(w[1]) < 0.5
    np.testing.assert_allclose(st.fit_term_weights(z, np.zeros(200), prior), prior)  # no abnormal label
    np.testing.assert_allclose(st.fit_term_weights(z, y, prior, strength=1e6), prior, atol=1e-3)
    # the gradient is right: a finite-difference check of the objective at the answer (it is a minimum)
    w_free = st.fit_term_weights(z, y, prior, strength=1.0)
    assert np.all(np.isfinite(w_free))


def test_study_on_the_tiny_pipeline_chooses_on_validation(shipped, monkeypatch, tmp_path):
    from hqanogan_core.data.splits import load_split
    from hqanogan_core.pipeline import load_pipeline
    from tests.tiny import tiny_percep

    monkeypatch.setenv("HQANOGAN_CACHE", str(tmp_path))
    monkeypatch.setattr(st, "REFINE_CANDIDATES", ("0", "3", "l1-3"))
    monkeypatch.setattr(st, "K_LABELS", (0, 2))
    monkeypatch.setattr(st, "DRAWS", 3)
    pipe = load_pipeline(shipped["enc"])
    splits = st.study_splits(shipped["data"])
    out = st.run_score_study(pipe, splits, tiny_percep(), n_boot=20, log=lambda *a: None)
    rep = out["report"]
    # only restorations that keep the findings in the residual compete; G(E(x)) always does
    restored = rep["restorations"]
    assert restored["0"]["keeps_findings"]
    for r, q in restored.items():
        assert q["keeps_findings"] == (q["contrast"] >= restored["0"]["contrast"])
    assert set(restored) == {"0", "3", "l1-3"}
    best = max(o["valid_auroc"] for o in rep["options"] if restored[o["restoration"]]["keeps_findings"])
    assert rep["chosen"]["valid_auroc"] == pytest.approx(best)
    assert restored[rep["chosen"]["restoration"]]["keeps_findings"]
    cfg = ScoreConfig.from_dict(rep["chosen"]["config"])
    assert cfg.restoration == rep["chosen"]["restoration"] in ("0", "3", "l1-3")
    # the L1 refinement is another restoration than the MSE one of as many steps (its own refined codes)
    assert restored["l1-3"]["psnr_normals"] != pytest.approx(restored["3"]["psnr_normals"], abs=1e-6)
    assert all(t in st.CANDIDATE_TERMS or t.startswith("latent_l") for t in cfg.terms)
    # the map: the best validation pixel AUROC of every set of maps and sigma, per restoration, and the
    # chosen config carries its restoration's map; G(E(x)) alone never sums a map with its own duplicate
    n_maps = {r: len(st.MAP_CANDIDATES) - (len(ENCODER_MAPS) if r == "0" else 0) for r in rep["maps"]}
    for r, m in rep["maps"].items():
        assert m["pixel_auroc"] == pytest.approx(max(c["pixel_auroc"] for c in m["candidates"]), abs=1e-4)
        assert len(m["candidates"]) == len(st.SIGMA_CANDIDATES) * (2 ** n_maps[r] - 1)
    chosen_map = rep["maps"][cfg.restoration]
    assert list(cfg.map_terms) == chosen_map["terms"] and cfg.map_sigma == chosen_map["sigma"]
    # the detection map: the set of maps with the best validation image AUROC (at the map's sigma), and the
    # column detection_map@<its aggregation> is that map's aggregate, so it has that AUROC
    valid = load_split(shipped["data"], "valid")
    for r, m in rep["maps"].items():
        assert len(m["detect_candidates"]) == 2 ** n_maps[r] - 1
        best = max(c["image_auroc"] for c in m["detect_candidates"])
        picked = [c for c in m["detect_candidates"] if c["terms"] == m["detect_terms"]][0]
        assert m["detect_auroc"] == picked["image_auroc"] == pytest.approx(best, abs=1e-4)
        column = st.z_columns(out, "valid", r)[f"detection_map@{picked['aggregation']}"]
        assert metrics.auroc(column, valid.labels) == pytest.approx(m["detect_auroc"], abs=1e-4)
    assert list(cfg.detect_terms) == chosen_map["detect_terms"]
    # the chosen score's test AUROC is recomputable from the stored z-scores
    test = load_split(shipped["data"], "test")
    z = st.z_columns(out, "test", cfg.restoration)
    s = st.combined(z, rep["chosen"]["columns"], cfg.combine)
    assert rep["chosen"]["test"]["value"] == pytest.approx(metrics.auroc(s, test.labels), abs=1e-6)
    # per type on validation (each finding against all validation normals), by hand
    column = rep["chosen"]["columns"][0]
    zv = st.z_columns(out, "valid", cfg.restoration)[column]
    by_type = rep["columns"][cfg.restoration][column]["valid_per_type"]
    assert set(by_type) == set(valid.types[valid.labels == 1])
    for kind, value in by_type.items():
        pick = (valid.labels == 0) | (valid.types == kind)
        assert value == pytest.approx(metrics.auroc(zv[pick], valid.labels[pick]), abs=1e-6)
    # k = 0 is the unsupervised choice itself
    assert rep["semi_supervised"]["0"]["auroc_mean"] == pytest.approx(rep["chosen"]["test"]["value"], abs=1e-6)
    assert rep["semi_supervised"]["2"]["draws"] == 3
    json.dumps(rep)                                                   # storable as JSON
    # stored, then asked for under another selection rule: re-selected from the stored columns, which
    # (the same rule in fact) gives the same choice and numbers, up to the float32 storage of the columns
    key = st.study_key(pipe, splits, "lpips-tiny")
    st.save_study(tmp_path / "study", out, key, "test", "cpu")
    assert st.load_study(tmp_path / "study", key)["report"]["chosen"] == json.loads(json.dumps(rep["chosen"]))
    monkeypatch.setattr(st, "GAIN_RULE", "another rule")
    other = st.study_key(pipe, splits, "lpips-tiny")
    assert st.load_study(tmp_path / "study", other) is None
    found = st.load_study(tmp_path / "study", other, measured_only=True)
    again = st.reselect_study(found, splits, n_boot=20)["report"]
    assert (again["chosen"]["columns"] == rep["chosen"]["columns"]
            and again["chosen"]["config"] == rep["chosen"]["config"])
    assert again["chosen"]["test"]["value"] == pytest.approx(rep["chosen"]["test"]["value"], abs=1e-4)
    assert again["semi_supervised"]["2"]["auroc_mean"] == pytest.approx(rep["semi_supervised"]["2"]["auroc_mean"],
                                                                        abs=1e-3)
    other_data = dict(key, generator_sha256="another generator")
    assert st.load_study(tmp_path / "study", other_data, measured_only=True) is None


def test_study_chooses_on_another_folders_validation_split(shipped, monkeypatch, tmp_path):
    """`valid_data`: the choice and every validation number come from that folder's valid/ split; the test
    split, the training normals and what depends only on them stay `data`'s."""
    from hqanogan_core.data.phantom import PhantomConfig, write_phantom_dataset
    from hqanogan_core.data.splits import load_split
    from hqanogan_core.pipeline import load_pipeline
    from tests.tiny import tiny_percep

    monkeypatch.setenv("HQANOGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(st, "REFINE_CANDIDATES", ("0",))
    monkeypatch.setattr(st, "K_LABELS", (0, 2))
    monkeypatch.setattr(st, "DRAWS", 2)
    selection = tmp_path / "selection"
    write_phantom_dataset(selection, n_train=2, n_test=0, n_valid=24, seed=9, config=PhantomConfig(size=32),
                          workers=1, progress=False)
    pipe, percep = load_pipeline(shipped["enc"]), tiny_percep()
    own_splits, splits = st.study_splits(shipped["data"]), st.study_splits(shipped["data"], selection)
    own = st.run_score_study(pipe, own_splits, percep, n_boot=10, log=lambda *a: None)
    other = st.run_score_study(pipe, splits, percep, n_boot=10, log=lambda *a: None)
    sel = load_split(selection, "valid")
    assert len(sel) != shipped["n_valid"]       # precondition: the lengths below tell the two splits apart
    zv = st.z_columns(other, "valid", "0")
    assert all(len(v) == len(sel) for v in zv.values())
    for column, numbers in other["report"]["columns"]["0"].items():
        assert numbers["valid"] == pytest.approx(metrics.auroc(zv[column], sel.labels), abs=1e-6)
    # the test split is data's: a term that no validation choice touches has the same test z-scores
    np.testing.assert_allclose(st.z_columns(other, "test", "0")["latent"], st.z_columns(own, "test", "0")["latent"],
                               rtol=1e-6)
    assert len(st.z_columns(other, "test", "0")["latent"]) == shipped["n_test"]
    # a stored study knows which validation split chose it, and re-selecting it uses that split again
    key = st.study_key(pipe, splits, "lpips-tiny")
    assert key["valid_signature"] != st.study_key(pipe, own_splits, "lpips-tiny")["valid_signature"]
    st.save_study(tmp_path / "study", other, key, "test", "cpu")
    found = st.load_study(tmp_path / "study", key, measured_only=True)
    again = st.reselect_study(found, splits, n_boot=10)["report"]
    assert again["chosen"]["columns"] == other["report"]["chosen"]["columns"]
    assert again["chosen"]["valid_auroc"] == pytest.approx(other["report"]["chosen"]["valid_auroc"], abs=1e-4)
    # the splits: SEL's validation images, DATA's training normals and test images
    np.testing.assert_array_equal(splits.valid.images, sel.images)
    np.testing.assert_array_equal(splits.train.images, own_splits.train.images)
    np.testing.assert_array_equal(splits.test.images, own_splits.test.images)


def test_the_selection_phantom_uses_a_seed_no_benchmark_or_ceiling_uses(monkeypatch, tmp_path):
    """The study's selection split is drawn from a seed that nothing else draws from, with masks, half abnormal;
    the phantom book chooses on it, a reader's own data on its own valid/."""
    from hqanogan_core.data import default
    from hqanogan_core.data.splits import load_split
    from hqanogan_core.methods.supervised import SupervisedCeiling
    from hqanogan_core.train.supervised import BENCHMARK_SEEDS
    from hqanogan_core.workflow import Workspace

    assert default.SELECTION_SEED not in BENCHMARK_SEEDS
    assert default.SELECTION_SEED != SupervisedCeiling().phantom_seed
    monkeypatch.setenv("HQANOGAN_CACHE", str(tmp_path))
    monkeypatch.setattr(default, "SELECTION_VALID", 20)
    folder = default.selection_phantom(size=32)
    valid = load_split(folder, "valid")
    assert len(valid.labels) == 20 and valid.labels.sum() == 10
    assert valid.masks[valid.labels == 1].any(axis=(1, 2)).all()
    meta = json.loads((folder / "phantom.json").read_text())
    assert meta["seed"] == default.SELECTION_SEED
    # the phantom book chooses on it; a reader's own data chooses on its own valid/
    assert Workspace(tmp_path / "phantom64", default=True).selection() == default.selection_phantom(64)
    assert Workspace(tmp_path / "mine", default=False).selection() == tmp_path / "mine"


def test_a_restoration_that_draws_the_finding_is_not_eligible():
    encoder = {"contrast": 3.5, "psnr_normals": 24.0}
    assert st.restoration_keeps_findings({"contrast": 3.6}, encoder)
    assert st.restoration_keeps_findings({"contrast": 3.5}, encoder)
    assert not st.restoration_keeps_findings({"contrast": 3.4, "psnr_normals": 30.0}, encoder)
    assert st.restoration_keeps_findings({"psnr_normals": 30.0}, {"psnr_normals": 24.0})    # no masks: no test


def test_shipped_study_chose_the_default_score():
    """DEFAULT_SCORE is data: it must be what the shipped study chose on the validation split."""
    doc = json.loads((st.default_study_path() / "results.json").read_text())
    assert ScoreConfig.from_dict(doc["report"]["chosen"]["config"]) == DEFAULT_SCORE


def test_supervised_ceiling_never_trains_on_a_benchmark_seed():
    from hqanogan_core.train.supervised import labelled_phantoms, train_classifier

    with pytest.raises(ValueError, match="phantom seed 0 may be a benchmark's"):
        labelled_phantoms(32, 2, 1, seed=0)
    images, labels, types = labelled_phantoms(32, 6, 2, seed=1000)
    assert (images.shape == (16, 32, 32) and labels.sum() == 10
            and set(types) == {"good", "nodule", "consolidation", "effusion", "cardiomegaly", "pneumothorax"})
    net, log = train_classifier(images, labels, steps=30, batch=8, width=4, log_every=10)
    assert log[-1]["step"] == 30 and log[-1]["loss"] < log[0]["loss"] * 1.5
    with torch.no_grad():
        assert net(torch.from_numpy(images[:, None] * 2 - 1)).shape == (16,)


def test_ceiling_max_pooling_keeps_a_one_cell_response_the_mean_divides():
    """SmallCNN's pooling: the same features, one cell lit; max pooling passes it whole, the mean divides it
    by the number of cells of the last map (4 x 4 at 64 px)."""
    from hqanogan_core.nets.classifier import SmallCNN

    class Fixed(torch.nn.Module):
        def __init__(self, value):
            super().__init__()
            self.value = value

        def forward(self, x):
            return self.value

    feats = torch.zeros(1, 128, 4, 4)
    feats[0, :, 1, 2] = 1.0
    outs = {}
    for pool in ("mean", "max"):
        net = SmallCNN(64, 16, pool=pool)
        net.features = Fixed(feats)                         # the conv stack replaced by fixed features
        with torch.no_grad():
            net.head.weight.fill_(1.0)
            net.head.bias.zero_()
            outs[pool] = net(torch.zeros(1, 1, 64, 64)).item()
    assert outs["max"] == pytest.approx(128.0) and outs["mean"] == pytest.approx(128.0 / 16)
    with pytest.raises(ValueError, match="pool must be 'mean' or 'max'"):
        SmallCNN(64, 16, pool="sum")


def test_shipped_refined_codes_reproduce():
    """The shipped refinements are what refining those images again gives (3 of them, checked here)."""
    from hqanogan_core import checkpoint as ckpt
    from hqanogan_core.data.splits import load_split, to_model_input
    from hqanogan_core.data.default import phantom_dataset
    from hqanogan_core.pipeline import REFINED_FOLDER, load_pipeline
    from hqanogan_core.paths import data_dir
    from hqanogan_core.project import refine
    from hqanogan_core.recon import encode_images
    from hqanogan_core.scores import RefinedCodes, refine_namespace

    pipe = load_pipeline()
    file = (data_dir() / "pretrained" / REFINED_FOLDER
            / f"refined-{refine_namespace(pipe.G, pipe.E, DEFAULT_SCORE)}.safetensors")
    assert file.is_file(), f"{file} is not shipped for the default score (python -m hqanogan_core ship-refined ...)"
    stored = RefinedCodes(read_from=[file.parent]).codes_of(refine_namespace(pipe.G, pipe.E, DEFAULT_SCORE))
    x = to_model_input(load_split(phantom_dataset(), "test").images[:3], pipe.G.resolution)
    keys = [RefinedCodes.key(im) for im in x]
    assert all(k in stored for k in keys), "the shipped codes do not cover the test split"
    ws0, _ = encode_images(pipe.G, pipe.E, x)
    fresh, _ = refine(pipe.G, x, ws0, steps=DEFAULT_SCORE.refine_steps, lr=DEFAULT_SCORE.refine_lr,
                      loss=DEFAULT_SCORE.refine_loss)
    torch.testing.assert_close(fresh, torch.stack([stored[k] for k in keys]), rtol=0, atol=1e-3)
    assert ckpt.read_meta(file)["keys"]


def test_restoration_views_draw_one_line_per_loss():
    """Chapter 4's restoration table and refinement curve read a study report keyed by restoration label:
    G(E(x)) starts both the MSE and the L1 line; hollow markers are the ineligible restorations; the AUROC panel
    shows the best validation option on each restoration."""
    import matplotlib

    matplotlib.use("Agg")
    from hqanogan_core import plots, tables

    restorations = {r: {"psnr_normals": 24 + i, "contrast": c, "keeps_findings": c >= 3.5, "seconds_per_image": 0.01}
                    for i, (r, c) in enumerate([("0", 3.5), ("20", 3.7), ("40", 3.3), ("l1-40", 4.8)])}
    options = [{"restoration": r, "valid_auroc": 0.8 + 0.01 * i} for i, r in enumerate(restorations)]
    report = {"restorations": restorations, "options": options, "chosen": {"restoration": "l1-40"}}
    table = tables.restoration_table(restorations)
    assert "| L1 refinement, 40 steps | 27.00 | 4.80 | yes | 10 |" in table
    assert "| MSE refinement, 40 steps | 26.00 | 3.30 | no |" in table and "| G(E(x)) |" in table
    fig = plots.refinement_curve(report)
    psnr_axis = fig.axes[0]
    lines = [ln for ln in psnr_axis.get_lines() if ln.get_linestyle() == "-"]
    assert [list(ln.get_xdata()) for ln in lines] == [[0, 20, 40], [0, 40]]          # MSE, then L1
    assert [list(ln.get_ydata()) for ln in lines] == [[24, 25, 26], [24, 27]]
    star = [ln for ln in psnr_axis.get_lines() if ln.get_marker() == "*"][0]
    assert list(star.get_xdata()) == [40] and list(star.get_ydata()) == [27]          # the chosen L1-40
    assert tables.restoration_name("l1-60") == "L1 refinement, 60 steps"
    options.append({"restoration": "20", "valid_auroc": 0.95})                # a second option on "20" wins there
    assert st.best_valid_auroc(report) == pytest.approx({"0": 0.8, "20": 0.95, "40": 0.82, "l1-40": 0.83})
    mse_line = [ln for ln in plots.refinement_curve(report).axes[2].get_lines() if ln.get_linestyle() == "-"][0]
    assert list(mse_line.get_ydata()) == pytest.approx([0.8, 0.95, 0.82])          # the best option per step


def test_phantom_seeds_table_has_one_row_per_phantom():
    from hqanogan_core import tables

    def entry(auroc, nodule):
        return {"image": {"auroc": {"value": auroc, "ci95": [auroc - 0.02, auroc + 0.02]}}, "pixel_auroc": 0.95,
                "per_type": {"nodule": {"auroc": {"value": nodule, "ci95": [0, 1]}},
                             "effusion": {"auroc": {"value": 0.97, "ci95": [0, 1]}}}}

    table = tables.phantom_seeds_table({"seed 0": entry(0.91, 0.83), "seed 1": entry(0.89, 0.77)})
    lines = table.splitlines()
    assert lines[0] == "| phantom | image AUROC [95 % CI] | effusion | nodule | pixel AUROC |"
    assert lines[2] == "| seed 0 | 0.910 [0.890, 0.930] | 0.970 | 0.830 | 0.950 |"
    assert lines[3].startswith("| seed 1 | 0.890 [0.870, 0.910] | 0.970 | 0.770 |")

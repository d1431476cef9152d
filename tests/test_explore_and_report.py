"""The reader-facing layer on top of a fitted HQ-AnoGAN, on the tiny shipped 32 px run (conftest `shipped`):
the scorer cache, the latent view, the kernel-free and live explorers, the `explain` report and its CLI,
the shipped inversion study and the latent-repair sweep."""
import json
import re

import ipywidgets
import numpy as np
import pytest
import torch
from PIL import Image

from hqanogan_core import plots
from hqanogan_core.terms import ScoreConfig
from hqanogan_core.data.splits import load_split, to_model_input
from hqanogan_core.explore import latent_view, score_percentile, slot_groups
from hqanogan_core.widgets import (CONTROL_CLASS, EXPLORER_CLASS, VIEW_CLASS, explorer_states, figure_png,
                                   latent_explorer, repair_choices, static_latent_explorer)

NORMAL, ABNORMAL = 0, 5          # valid split of the tiny phantom: 0-4 good, 5.. one per anomaly type


@pytest.fixture(scope="module")
def fitted(shipped, tmp_path_factory):
    """HQ-AnoGAN on the tiny run, fitted on the tiny train split (its scorer cache in a temporary folder),
    and the tiny valid split."""
    from hqanogan_core.methods.hqanogan import HQAnoGAN

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HQANOGAN_CACHE", str(tmp_path_factory.mktemp("cache")))
        method = HQAnoGAN(run=shipped["enc"]).fit(load_split(shipped["data"], "train").images)
    valid = load_split(shipped["data"], "valid")
    assert valid.labels[NORMAL] == 0 and valid.labels[ABNORMAL] == 1 and valid.masks[ABNORMAL].any()
    return method, valid


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HQANOGAN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _png(path, array, mode="L"):
    Image.fromarray(np.asarray(array, np.uint8), mode=mode).save(path)
    return path


# ----------------------------------------------------------------------------- scorer cache


def test_fit_scorer_cache_round_trip(shipped, tmp_path, monkeypatch):
    from hqanogan_core.nets.perceptual import PerceptualDistance
    from hqanogan_core.pipeline import fit_scorer, load_pipeline
    from hqanogan_core.scores import HQAnoGANScorer

    pipe = load_pipeline(shipped["enc"])
    percep = PerceptualDistance()
    x = to_model_input(load_split(shipped["data"], "train").images, pipe.resolution)
    probe = to_model_input(load_split(shipped["data"], "valid").images, pipe.resolution)
    folder = tmp_path / "scorers"

    first = fit_scorer(pipe, x, percep=percep, cache=folder)
    files = sorted(folder.glob("scorer-*.safetensors"))
    assert len(files) == 1

    def no_fit(*_a, **_k):
        raise AssertionError("the second call fitted again instead of loading the cache")

    with monkeypatch.context() as mp:
        mp.setattr(HQAnoGANScorer, "fit", no_fit)
        second = fit_scorer(pipe, x, percep=percep, cache=folder)
    assert sorted(folder.glob("scorer-*.safetensors")) == files
    a, b = first.score(probe), second.score(probe)
    assert sorted(a) == sorted(b)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert np.array_equal(first.held_out_scores(), second.held_out_scores())
    assert second.config == first.config

    other = fit_scorer(pipe, x, ScoreConfig(held_out_fraction=0.2), percep=percep, cache=folder)
    assert len(list(folder.glob("scorer-*.safetensors"))) == 2            # a different split, a different file
    fit_scorer(pipe, x, ScoreConfig(terms=("latent",)), percep=percep, cache=folder)
    assert len(list(folder.glob("scorer-*.safetensors"))) == 3            # other terms, another file
    assert len(other.held_out_slots) == 6 and len(first.held_out_slots) == 3   # 20 % / 10 % of 30 normals

    # state() / load_state() alone, into an unfitted scorer
    tensors, meta = first.state()
    fresh = HQAnoGANScorer(pipe.G, pipe.E, pipe.D, percep).load_state(tensors, json.loads(json.dumps(meta)))
    for name in ("means", "precisions", "shrinkage"):
        assert np.array_equal(getattr(fresh.gaussians, name), getattr(first.gaussians, name)), name
    assert np.array_equal(fresh.held_out_slots, first.held_out_slots)
    assert np.array_equal(fresh.code_bank, first.code_bank)
    assert sorted(fresh.held_out_raw) == sorted(first.held_out_raw)
    for k, v in first.held_out_raw.items():
        assert np.array_equal(fresh.held_out_raw[k], v), k
    assert fresh.stats == first.stats


# ----------------------------------------------------------------------------- latent view


def test_latent_view_shapes_and_no_repair(fitted):
    method, valid = fitted
    n, r, slots = len(valid), method.pipe.resolution, method.pipe.G.num_ws
    view = latent_view(method, valid.images)
    for key in ("input", "restored", "repaired", "map", "map_repaired"):
        assert view[key].shape == (n, r, r), key
    for key in ("d2", "d2_repaired", "flagged"):
        assert view[key].shape == (n, slots), key
    assert view["band"].shape == (2, slots) and (view["band"][0] <= view["band"][1]).all()
    assert view["threshold"].shape == (slots,)
    assert np.array_equal(view["flagged"], view["d2"] > view["threshold"][None])          # the rule
    assert 0 <= view["restored"].min() and view["restored"].max() <= 1

    none = latent_view(method, valid.images, repair_slots=np.zeros(slots, bool))
    assert not none["flagged"].any()
    assert np.array_equal(none["repaired"], none["restored"])
    assert np.array_equal(none["map_repaired"], none["map"])
    assert np.array_equal(none["d2_repaired"], none["d2"])
    assert np.array_equal(none["restored"], view["restored"]) and np.array_equal(none["d2"], view["d2"])


def test_latent_view_repairs_exactly_the_chosen_slots(fitted):
    from hqanogan_core.explore import CHOSEN_TARGET_QUANTILE
    from hqanogan_core.repair import slot_thresholds

    method, valid = fitted
    slots = method.pipe.G.num_ws
    chosen = np.zeros(slots, bool)
    chosen[[0, 3, slots - 1]] = True
    view = latent_view(method, valid.images, repair_slots=chosen)
    assert np.array_equal(view["flagged"], np.broadcast_to(chosen, view["flagged"].shape))
    # shrink: a chosen slot farther than the normals' median lands on it, everything else is kept
    assert np.array_equal(view["target"], slot_thresholds(method.scorer.held_out_slots, CHOSEN_TARGET_QUANTILE))
    moved = view["flagged"] & (view["d2"] > view["target"][None])
    assert moved.any(), "no chosen slot is beyond the target on the tiny valid split: the check would be vacuous"
    np.testing.assert_allclose(view["d2_repaired"][moved], np.broadcast_to(view["target"], moved.shape)[moved],
                               rtol=1e-3)
    assert np.array_equal(view["d2_repaired"][~moved], view["d2"][~moved])
    untouched = ~moved.any(axis=1)                                     # images none of whose slots moved
    assert untouched.any() and (~untouched).any()
    assert np.array_equal(view["repaired"][untouched], view["restored"][untouched])
    assert all(not np.array_equal(view["repaired"][i], view["restored"][i]) for i in np.flatnonzero(~untouched))

    per_image = np.zeros((len(valid), slots), bool)
    per_image[ABNORMAL, 1] = True
    assert np.array_equal(latent_view(method, valid.images, repair_slots=per_image)["flagged"], per_image)


@pytest.mark.parametrize("num_ws, sizes", [(None, None), (6, (3, 3, 0)), (8, (3, 4, 1)), (10, (3, 4, 3)),
                                           (18, (3, 4, 11))])
def test_slot_groups_cover_every_slot_once(fitted, num_ws, sizes):
    if num_ws is None:                                                   # the tiny generator's own
        num_ws = fitted[0].pipe.G.num_ws
    groups = slot_groups(num_ws)
    stacked = np.stack(list(groups.values()))
    assert stacked.shape[1] == num_ws and (stacked.sum(axis=0) == 1).all()
    assert list(groups) == [g for g in ("coarse", "middle", "fine") if g in groups]
    if sizes is not None:
        assert [int(m.sum()) for m in groups.values()] == [s for s in sizes if s]
    start = 0
    for mask in groups.values():                                         # contiguous, in slot order
        idx = np.flatnonzero(mask)
        assert idx[0] == start and np.array_equal(idx, np.arange(start, start + len(idx)))
        start += len(idx)
    assert list(repair_choices(num_ws))[:2] == ["no repair", "unusual slots"]
    assert len(repair_choices(num_ws)) == 2 + len(groups)


def test_score_percentile_by_hand():
    normals = np.array([1.0, 2.0, 3.0, 4.0])
    assert score_percentile(0.0, normals) == 0.0
    assert score_percentile(2.0, normals) == 25.0            # strictly below: a tie does not count
    assert score_percentile(2.5, normals) == 50.0
    assert score_percentile(4.0, normals) == 75.0
    assert score_percentile(9.0, normals) == 100.0
    assert score_percentile(3.5, [3.0]) == 100.0


# ----------------------------------------------------------------------------- explorers


def _all_children(w):
    yield w
    for c in getattr(w, "children", ()):
        yield from _all_children(c)


def test_static_explorer_structure_and_states(fitted, monkeypatch):
    method, valid = fitted
    pick = [NORMAL, ABNORMAL]
    images, masks = valid.images[pick], valid.masks[pick]
    plain = latent_view(method, images)["map"][1]                  # thresholds in the map's own units
    thresholds = [float(np.quantile(plain, 0.9)), float(np.quantile(plain, 0.98))]
    states = explorer_states(method, images, masks, ["normal", "abnormal"], thresholds)
    choices = repair_choices(method.pipe.G.num_ws)
    n_img, n_choice, n_t = len(pick), len(choices), len(thresholds)
    assert states["choices"] == list(choices) and states["thresholds"] == thresholds
    assert [len(p) for p in states["panels"]] == [n_choice] * n_img
    assert np.array(states["binary"], dtype=object).shape == (n_img, n_choice, n_t)

    # each binary PNG is the map of its choice thresholded, and its Dice that of the same map
    from hqanogan_core.localisation import dice

    for c, (label, slots) in enumerate(choices.items()):
        view = latent_view(method, images, repair_slots=None if slots is None or isinstance(slots, str) else slots)
        amaps = view["map" if slots is None else "map_repaired"]
        for t, level in enumerate(thresholds):
            assert states["dice"][0][c][t] is None                               # the normal image: no finding
            d = states["dice"][1][c][t]
            assert 0.0 <= d <= 1.0
            assert d == pytest.approx(float(dice(amaps[1][None], masks[1][None], level)[0]))
            for i in range(n_img):
                expect = figure_png(plots.binary_panel(amaps[i], masks[i], level, states["dice"][i][c][t]))
                assert states["binary"][i][c][t] == expect, (i, label, level)
    # the abnormal image: repairing its unusual slots changes the thresholded map (not only the panel title)
    flagged = latent_view(method, images[1:])["flagged"][0]
    assert flagged.any()
    rule = states["choices"].index("unusual slots")
    assert states["binary"][1][0] != states["binary"][1][rule]
    assert len({bytes(p) for p in states["panels"][1]}) == n_choice

    links = []
    real = ipywidgets.jslink
    monkeypatch.setattr(ipywidgets, "jslink", lambda a, b: links.append((a, b)) or real(a, b))
    box = static_latent_explorer(states)
    # level -> every per-choice stack of binaries; repair -> every per-image stack; image menu -> the view
    assert len(links) == n_img * n_choice + n_img + 1
    tree = list(_all_children(box))
    assert EXPLORER_CLASS in box._dom_classes
    controls = [w for w in tree if CONTROL_CLASS in w._dom_classes]
    views = [w for w in tree if VIEW_CLASS in w._dom_classes]
    assert len(controls) == 3 and len(views) == 1
    assert {type(w) for w in controls} == {ipywidgets.Dropdown, ipywidgets.ToggleButtons, ipywidgets.SelectionSlider}
    view = views[0]
    assert isinstance(view, ipywidgets.Stack) and len(view.children) == n_img
    binaries = [w for w in tree if isinstance(w, ipywidgets.Stack) and w is not view
                and all(isinstance(c, ipywidgets.Image) for c in w.children)]
    assert len(binaries) == n_img * n_choice and sum(len(s.children) for s in binaries) == n_img * n_choice * n_t
    targets = {id(b[0]) for _, b in links}
    assert {id(s) for s in binaries} | {id(s) for s in view.children} | {id(view)} == targets
    # the images in the stacks are the states' PNGs, in [image][choice][threshold] order
    flat = [c.value for s in binaries for c in s.children]
    assert flat == [png for per_img in states["binary"] for per_c in per_img for png in per_c]


def test_live_explorer_reacts_to_slots_slider_and_rule(fitted):
    method, valid = fitted
    num_ws = method.pipe.G.num_ws
    box = latent_explorer(method, valid, picks=[NORMAL, ABNORMAL])
    pick, upload = box.children[0].children
    boxes, rule = box.children[1].children[:num_ws], box.children[1].children[num_ws]
    level, (panel, binary), status = box.children[2], box.children[3].children, box.children[4]
    assert all(isinstance(b, ipywidgets.Checkbox) and not b.value for b in boxes)
    assert panel.value and binary.value and "repairing slots none" in status.value

    pick.value = ABNORMAL
    view = latent_view(method, valid.images[[ABNORMAL]])
    suggest = np.flatnonzero(view["flagged"][0]).tolist()
    assert suggest and f"unusual for normals: {suggest}" in status.value
    slot = suggest[0]                                         # an unusual slot: repairing it moves the code
    before_panel = panel.value
    boxes[slot].value = True
    assert status.value == f"repairing slots [{slot}]"
    assert panel.value != before_panel          # the binary may look the same: at a low threshold it is all white
    chosen = np.zeros(num_ws, bool)
    chosen[slot] = True
    mine = latent_view(method, valid.images[[ABNORMAL]], repair_slots=chosen)
    assert binary.value == figure_png(plots.binary_panel(mine["map_repaired"][0], valid.masks[ABNORMAL], level.value,
                                                         _dice(mine["map_repaired"][0], valid.masks[ABNORMAL],
                                                               level.value)))

    panel_now, binary_now = panel.value, binary.value
    level.value = 0.2 if level.value != 0.2 else 0.3
    assert binary.value != binary_now and panel.value == panel_now       # the slider binarises, nothing else

    rule.click()
    assert [b.value for b in boxes] == view["flagged"][0].tolist()
    assert status.value == f"repairing slots {suggest}"

    pick.value = NORMAL                                     # a new image clears the ticks
    assert not any(b.value for b in boxes) and status.value.startswith("repairing slots none")


def _dice(amap, mask, t):
    from hqanogan_core.localisation import dice

    return float(dice(amap[None], mask[None], t)[0])


# ----------------------------------------------------------------------------- report


def test_youden_threshold_by_hand():
    from hqanogan_core.report import youden_threshold

    scores = np.array([0.1, 0.2, 0.3, 0.5, 0.4, 0.6, 0.7])
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    # t=0.7: J 1/3; 0.6: 2/3; 0.5: 2/3 - 1/4; 0.4: 1 - 1/4 = 0.75 (best); 0.3: 1 - 1/2
    assert youden_threshold(scores, labels) == pytest.approx({"threshold": 0.4, "sensitivity": 1.0,
                                                              "specificity": 0.75})
    perfect = youden_threshold(np.array([0.0, 1.0, 2.0, 3.0]), np.array([0, 0, 1, 1]))
    assert perfect == pytest.approx({"threshold": 2.0, "sensitivity": 1.0, "specificity": 1.0})


def test_read_query_image_errors_name_the_file(tmp_path):
    from hqanogan_core.report import read_query_image

    folder = tmp_path / "folder.png"
    folder.mkdir()
    text = tmp_path / "x.png"
    text.write_text("not a png")
    rgb = _png(tmp_path / "rgb.png", np.zeros((32, 32, 3)), mode="RGB")
    small = _png(tmp_path / "small.png", np.zeros((16, 16)))
    for path, words in ((folder, "folder"), (text, "not an image"), (rgb, "colour"), (small, "16x16")):
        with pytest.raises(ValueError) as err:
            read_query_image(path, 32)
        assert str(path) in str(err.value) and words in str(err.value)
    good = _png(tmp_path / "good.png", np.full((32, 32), 255))
    image = read_query_image(good, 32)
    assert image.shape == (32, 32) and np.allclose(image, 1.0)


def _test_image(shipped, kind="good"):
    return sorted((shipped["data"] / "test" / kind).glob("*.png"))[0]


def test_explain_writes_a_self_contained_report(shipped, tmp_path, cache):
    from hqanogan_core.data.folder import read_grayscale
    from hqanogan_core.methods.hqanogan import DEFAULT_SCORE, HQAnoGAN
    from hqanogan_core.report import explain, youden_threshold

    image = _test_image(shipped, "good")
    out = tmp_path / "sub" / "report.html"
    facts = explain(image, out, run=shipped["enc"], data=shipped["data"])
    page = out.read_text()
    assert "data:image/png;base64," in page
    assert not re.search(r"""src\s*=\s*["']?https?://""", page) and "http://" not in page
    assert not re.search(r"<(script|link)\b", page)                        # nothing fetched, nothing run
    assert len(re.findall(r'class="verdict ', page)) == 1
    verdict = "ABNORMAL" if facts["abnormal"] else "normal"
    assert re.search(rf'class="verdict (abnormal|normal)">{verdict}</p>', page)
    assert 0.0 <= facts["percentile"] <= 100.0
    assert facts["abnormal"] == (facts["score"] >= facts["threshold"])
    assert facts["n_valid"] == shipped["n_valid"] and facts["image"] == str(image)
    assert set(facts["terms"]) == {t for name in DEFAULT_SCORE.terms for t in (name, f"z_{name}")}   # no pred_score

    # the same numbers from the pieces (the fit is the cached one)
    method = HQAnoGAN(run=shipped["enc"]).fit(load_split(shipped["data"], "train").images)
    valid = load_split(shipped["data"], "valid")
    rule = youden_threshold(method.score(valid.images)["pred_score"], valid.labels)
    assert facts["threshold"] == pytest.approx(rule["threshold"])
    score = float(method.score(read_grayscale(image)[None])["pred_score"][0])
    assert facts["score"] == pytest.approx(score, rel=1e-5)
    assert facts["percentile"] == score_percentile(facts["score"], method.scorer.held_out_scores())
    assert len(list((cache / "scorers").glob("scorer-*.safetensors"))) == 1


def test_cli_explain_errors_and_success(shipped, tmp_path, cache, capsys):
    from hqanogan_core.cli import main

    out = tmp_path / "r.html"
    common = ["--out", str(out), "--run", str(shipped["enc"]), "--data", str(shipped["data"])]
    missing = tmp_path / "missing.png"
    text = tmp_path / "notes.png"
    text.write_text("hello")
    cases = [([str(missing), *common], missing),
             ([str(text), *common], text),
             ([str(_test_image(shipped)), "--out", str(out), "--run", str(tmp_path / "norun")], tmp_path / "norun")]
    for argv, named in cases:
        assert main(["explain", *argv]) == 2
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(named) in lines[0], captured.err
    assert not out.exists()

    assert main(["explain", str(_test_image(shipped)), *common]) == 0
    stdout = capsys.readouterr().out
    assert re.match(r"(ABNORMAL|normal): score -?\d", stdout) and str(out.resolve()) in stdout
    assert out.is_file() and "data:image/png;base64," in out.read_text()


# ----------------------------------------------------------------------------- inversion study, repair sweep


def test_inversion_study_is_cached_by_its_key(shipped, tmp_path):
    from hqanogan_core.ablation import inversion_images, inversion_study
    from hqanogan_core.nets.perceptual import PerceptualDistance
    from hqanogan_core.pipeline import load_pipeline

    pipe = load_pipeline(shipped["enc"])
    images = inversion_images(shipped["data"], pipe.resolution, n_normals=3)
    assert images["normals"].shape == (3, 1, 32, 32) and len(images["abnormal"]) == len(images["kinds"])
    percep = PerceptualDistance()
    out, nowhere = tmp_path / "inv", tmp_path / "not_shipped"
    kw = dict(seed=0, shipped=nowhere, out=out, log=lambda *_: None)

    first = inversion_study(pipe.G, pipe.E, percep, images["normals"], images["abnormal"], steps=2, **kw)
    assert first["loaded_from"] is None
    assert (out / "results.json").is_file() and (out / "reconstructions.safetensors").is_file()
    assert set(first["compare"]) == {"encoder", "projector_w+"}
    assert first["abnormal_projection"].shape == images["abnormal"].shape
    doc = json.loads((out / "results.json").read_text())
    assert doc["key"]["steps"] == 2

    second = inversion_study(pipe.G, pipe.E, percep, images["normals"], images["abnormal"], steps=2, **kw)
    assert second["loaded_from"] == str(out / "results.json")
    assert torch.equal(second["abnormal_projection"], first["abnormal_projection"])
    for name, r in first["compare"].items():
        s = second["compare"][name]
        assert s["seconds_per_image"] == r["seconds_per_image"]
        assert torch.equal(s["reconstructions"], r["reconstructions"]), name
        assert sorted(s["metrics"]) == sorted(r["metrics"])
        for metric, values in r["metrics"].items():
            assert np.array_equal(s["metrics"][metric], np.asarray(values)), (name, metric)

    third = inversion_study(pipe.G, pipe.E, percep, images["normals"], images["abnormal"], steps=3, **kw)
    assert third["loaded_from"] is None and json.loads((out / "results.json").read_text())["key"]["steps"] == 3
    other_images = inversion_study(pipe.G, pipe.E, percep, images["normals"][:2], images["abnormal"], steps=3, **kw)
    assert other_images["loaded_from"] is None and len(other_images["compare"]["encoder"]["reconstructions"]) == 2


def test_repair_sweep_rows(fitted):
    from hqanogan_core.ablation import repair_sweep
    from hqanogan_core.metrics import aupro

    method, valid = fitted
    configs = [{"mode": "shrink", "quantile": 0.5, "target_quantile": None},
               {"mode": "shrink", "quantile": 0.9, "target_quantile": None}]
    rows = repair_sweep(method, valid, configs)
    assert len(rows) == 3 and rows[0]["config"] is None and [r["config"] for r in rows[1:]] == configs
    plain = latent_view(method, valid.images, repair_slots=np.zeros(method.pipe.G.num_ws, bool))["map"]
    assert rows[0]["aupro"] == pytest.approx(aupro(plain, valid.masks, 0.3))
    for r in rows:
        assert 0.0 <= r["aupro"] <= 1.0 and 0.0 <= r["pixel_auroc"] <= 1.0
        assert 0.0 <= r["flagged_normal"] <= 1.0 and 0.0 <= r["flagged_abnormal"] <= 1.0
        assert 0.0 <= r["latent_kept"] <= 1.0                  # shrink never moves a slot outwards
    # a lower quantile flags at least as many slots, and keeps no more of the latent term
    assert rows[1]["flagged_normal"] >= rows[2]["flagged_normal"]
    assert rows[1]["flagged_abnormal"] >= rows[2]["flagged_abnormal"] > 0
    assert rows[1]["latent_kept"] <= rows[2]["latent_kept"] < 1.0


def test_live_explorer_takes_an_uploaded_png(fitted):
    import io
    from datetime import datetime, timezone

    method, valid = fitted
    box = latent_explorer(method, valid, picks=[ABNORMAL])
    _, upload = box.children[0].children
    panel, binary = box.children[3].children
    before = panel.value
    big = np.kron(np.asarray(valid.images[NORMAL] * 255, np.uint8), np.ones((2, 2), np.uint8))   # 64 px
    buffer = io.BytesIO()
    Image.fromarray(big, mode="L").save(buffer, format="PNG")
    upload.value = ({"name": "mine.png", "type": "image/png", "size": len(buffer.getvalue()),
                     "content": memoryview(buffer.getvalue()),
                     "last_modified": datetime(2024, 1, 1, tzinfo=timezone.utc)},)
    assert panel.value != before and box.children[4].value == "repairing slots none"
    # drawn at the model's size, with no finding outlined (an upload has no mask)
    from hqanogan_core.data.splits import resize_batch

    image = resize_batch(big[None].astype(np.float32) / 255, 32)[0]
    view = latent_view(method, image[None], repair_slots=np.zeros(method.pipe.G.num_ws, bool))
    assert panel.value == figure_png(plots.latent_panel(view, 0, repaired=False, mask=None))

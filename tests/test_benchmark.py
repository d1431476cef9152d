"""Floors, the benchmark harness and the `benchmark` CLI on a tiny hand-made dataset."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from hqanogan_core.methods import floors
from hqanogan_core.benchmark import load_scores, run_benchmark
from hqanogan_core.cli import main


def _smooth_normals(rng, n, size=16):
    """Normal images live on a 3-dim subspace: sums of fixed smooth patterns + tiny noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    basis = np.stack([np.sin(np.pi * xx), np.cos(np.pi * yy), xx * yy])  # [3, H, W]
    coef = rng.uniform(0.1, 0.3, size=(n, 3))
    return np.clip(0.2 + np.einsum("nk,khw->nhw", coef, basis) + 0.005 * rng.normal(size=(n, size, size)), 0, 1)


def test_floors_detect_what_they_should():
    rng = np.random.default_rng(0)
    train = _smooth_normals(rng, 200)
    test_normal = _smooth_normals(rng, 50)
    square = _smooth_normals(rng, 50)
    square[:, 4:8, 4:8] = 1.0  # local bright square: off the normal subspace
    test = np.concatenate([test_normal, square])
    y = np.r_[np.zeros(50), np.ones(50)]
    from hqanogan_core.metrics import auroc

    pca = floors.PCAReconstruction().fit(train)
    assert pca.n_components <= 10
    assert auroc(pca.score(test)["pred_score"], y) > 0.99
    maps = pca.anomaly_map(test)
    assert maps.shape == test.shape
    # the residual map peaks inside the square for the abnormal images
    assert maps[50:, 4:8, 4:8].mean() > 10 * maps[50:, 10:, 10:].mean()
    # a small local square hides inside the normal spread of mean intensity ...
    assert auroc(floors.MeanIntensity().fit(train).score(test)["pred_score"], y) < 0.8
    # ... a global brightening does not
    brighter = np.concatenate([test_normal, test_normal + 0.2])
    assert auroc(floors.MeanIntensity().fit(train).score(brighter)["pred_score"], y) > 0.99
    assert auroc(floors.PixelIsolationForest(seed=0).fit(train).score(brighter)["pred_score"], y) > 0.9
    # deterministic given the seed
    a = floors.PixelIsolationForest(seed=1).fit(train).score(test)["pred_score"]
    b = floors.PixelIsolationForest(seed=1).fit(train).score(test)["pred_score"]
    np.testing.assert_array_equal(a, b)


@pytest.fixture
def tiny_dataset(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "tiny"

    def save(arr, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(arr * 255).astype(np.uint8)).save(path)

    for i, img in enumerate(_smooth_normals(rng, 60)):
        save(img, root / "train" / "good" / f"{i:03d}.png")
    for i, img in enumerate(_smooth_normals(rng, 20)):
        save(img, root / "test" / "good" / f"{i:03d}.png")
    for kind, (r, c) in {"spot": (3, 3), "bar": (10, 2)}.items():
        for i, img in enumerate(_smooth_normals(rng, 10)):
            mask = np.zeros_like(img, dtype=bool)
            mask[r : r + 4, c : c + 4] = True
            img[mask] = 1.0
            save(img, root / "test" / kind / f"{kind}{i:03d}.png")
            save(mask.astype(float), root / "ground_truth" / kind / f"{kind}{i:03d}_mask.png")
    return root


def test_run_benchmark_report(tiny_dataset, tmp_path):
    report = run_benchmark(tiny_dataset, ["mean", "pca"], out=tmp_path / "out", n_boot=100, seed=0)
    assert report["n_train"] == 60 and report["n_test"] == 40 and report["n_test_abnormal"] == 20
    assert report["device"].startswith(("cpu", "cuda"))
    for name in ("mean", "pca"):
        r = report["methods"][name]
        for metric in ("auroc", "ap", "sens_at_95spec"):
            value, (lo, hi) = r["image"][metric]["value"], r["image"][metric]["ci95"]
            assert 0.0 <= lo <= value <= hi <= 1.0
        assert set(r["per_type"]) == {"spot", "bar"}
        assert r["per_type"]["spot"]["n"] == 10
        assert r["train_seconds"] >= 0 and r["score_seconds"] >= 0 and r["peak_traced_mb"] > 0
    assert report["methods"]["mean"]["pixel_auroc"] is None
    assert report["methods"]["pca"]["pixel_auroc"] > 0.9
    assert report["methods"]["pca"]["image"]["auroc"]["value"] > 0.95
    # the report is JSON and matches what was written; scores CSVs read back
    assert json.loads((tmp_path / "out" / "benchmark.json").read_text()) == json.loads(json.dumps(report))
    labels, types, scores = load_scores(tmp_path / "out", ["mean", "pca"])
    assert labels.sum() == 20 and set(types) == {"good", "spot", "bar"} and scores["pca"].shape == (40,)


def test_cli_benchmark_json(tiny_dataset, capsys):
    code = main(["benchmark", "--data", str(tiny_dataset), "--methods", "mean,iforest", "--json", "--n-boot", "50"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)  # stdout is exactly one JSON object
    assert set(report["methods"]) == {"mean", "iforest"}


def test_cli_errors_are_clear(tiny_dataset, tmp_path, capsys):
    assert main(["benchmark", "--data", str(tiny_dataset), "--methods", "mean,nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["benchmark", "--data", str(tmp_path / "missing"), "--methods", "mean"]) == 2
    assert "missing" in capsys.readouterr().err


def test_cli_score_any_method_with_options(tiny_dataset, tmp_path, capsys):
    import csv

    out, maps = tmp_path / "pca.csv", tmp_path / "maps"
    assert main(["score", "--method", "pca", "--set", "pca.variance=0.9", "--data", str(tiny_dataset),
                 "--out", str(out), "--maps", str(maps)]) == 0
    assert "with pca" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["image", "anomaly_type", "gt_label", "pred_score"] and len(rows) == 40
    assert len(list(maps.rglob("*.png"))) == 40 and json.loads((maps / "maps.json").read_text())["method"] == "pca"
    # a method without maps, an unknown option, and a missing run folder: exit 2, named
    assert main(["score", "--method", "mean", "--data", str(tiny_dataset), "--out", str(out), "--maps", str(maps)]) == 2
    assert "gives no anomaly maps" in capsys.readouterr().err
    assert main(["score", "--method", "pca", "--set", "pca.bogus=1", "--data", str(tiny_dataset),
                 "--out", str(out)]) == 2
    assert "bogus" in capsys.readouterr().err
    missing = tmp_path / "no_such_run"
    assert main(["score", "--method", "ae", "--set", f"ae.run={missing}", "--data", str(tiny_dataset),
                 "--out", str(out)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_benchmark_cache_reuses_stored_results(tiny_dataset, tmp_path):
    kw = dict(n_boot=50, seed=0, cache=tmp_path / "cache", log=open(os.devnull, "w"))
    first = run_benchmark(tiny_dataset, ["pca"], out=tmp_path / "a", **kw)["methods"]["pca"]
    assert "cached_from" not in first and (tmp_path / "cache" / "pca" / "result.json").is_file()
    second = run_benchmark(tiny_dataset, ["pca"], out=tmp_path / "b", **kw)["methods"]["pca"]
    assert second["cached_from"].endswith("pca/result.json")
    assert second["image"] == first["image"] and second["aupro"] == first["aupro"]
    assert (load_scores(tmp_path / "b", ["pca"])[2]["pca"]
            == pytest.approx(load_scores(tmp_path / "a", ["pca"])[2]["pca"]))
    # other options: not the stored result
    third = run_benchmark(tiny_dataset, ["pca"], method_options={"pca": {"variance": 0.5}}, **kw)["methods"]["pca"]
    assert "cached_from" not in third

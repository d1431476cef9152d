"""The shipped baselines (data/pretrained/<name>) load, are small, and reproduce their manifest's
validation AUROC from the shipped weights through the method interface."""
import json

import numpy as np
import pytest
import torch

from hqanogan_core.benchmark import _cached_run, naturalness_normals
from hqanogan_core.data.default import phantom_dataset
from hqanogan_core.data.splits import load_split
from hqanogan_core.methods import METHODS
from hqanogan_core.methods.learned import images_digest, load_baseline_nets, shipped_path
from hqanogan_core.metrics import auroc
from hqanogan_core.paths import REPO_ROOT, data_dir
from hqanogan_core.ship import read_baseline_manifest, shipped_baselines

# (folder under data/pretrained, method, constructor options that must select that folder)
SHIPPED = [("ae", "ae", {}), ("vae", "vae", {}), ("fanogan", "fanogan", {}), ("ganomaly", "ganomaly", {}),
           ("deepsvdd", "deepsvdd", {}), ("cutpaste", "cutpaste", {}), ("anatpaste", "anatpaste", {}),
           ("deepsad/k5", "deepsad", {"n_labelled": 5}), ("deepsad/k20", "deepsad", {"n_labelled": 20}),
           ("deepsad/k50", "deepsad", {"n_labelled": 50})]
IDS = [folder for folder, _, _ in SHIPPED]
TOLERANCE = 1e-6      # same weights, same images, same code: deterministic on the CPU up to float summation order
ALL_SHIPPED_LIMIT = 40_000_000


@pytest.fixture(scope="module")
def splits():
    data = phantom_dataset()          # the default 64 px phantom the manifests were computed on (cached)
    return data, load_split(data, "train"), load_split(data, "valid")


def test_shipped_weights_serve_only_their_training_images(splits):
    data, train, _ = splits
    method, folder = METHODS["ae"](), shipped_path("ae")
    assert method._shipped_fits(folder, train.images, images_digest(train.images))
    other = train.images[:-1]                 # any other images (here one fewer): fit() would train instead
    assert not method._shipped_fits(folder, other, images_digest(other))
    assert not METHODS["ae"](steps=3)._shipped_fits(folder, train.images, images_digest(train.images))   # a budget


@pytest.mark.parametrize("folder,name,options", SHIPPED, ids=IDS)
def test_shipped_baseline_folder_is_complete(folder, name, options):
    path = shipped_path(folder)
    m = read_baseline_manifest(path)
    on_disk = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    assert m["total_bytes"] == on_disk < 10_000_000
    assert m["method"] == name and m["training"]["steps"] > 0 and m["training"]["step_seconds"] > 0
    assert m["command"].startswith("python -m hqanogan_core train-baseline " + name)
    assert m["data"].get("n_labelled", 0) == options.get("n_labelled", 0) == m["config"].get("n_labelled", 0)
    assert str(REPO_ROOT) not in json.dumps(m), "a manifest must not record this machine's paths"
    nets, meta = load_baseline_nets(path, name)
    assert meta["arch"]["resolution"] == 64 and all(not p.requires_grad for n in nets.values() for p in n.parameters())


@pytest.mark.parametrize("folder,name,options", SHIPPED, ids=IDS)
def test_shipped_baseline_reproduces_validation_auroc(folder, name, options, splits):
    data, train, split = splits
    m = read_baseline_manifest(shipped_path(folder))
    if m["data"]["fingerprint"] != (data / "fingerprint.txt").read_text().strip():
        pytest.fail(f"{folder} was validated on another phantom ({m['data']['fingerprint']}); re-export it")
    method = METHODS[name](**options)         # no budget: must pick the shipped weights, which serve
    method.fit(train.images, valid=split)     # exactly the images they were trained on (fit only loads)
    assert method.info()["weights"] == f"data/pretrained/{folder}"
    if hasattr(method, "labelled_indices"):   # Deep SAD: judged without the validation images it trained on
        seen = method.labelled_indices(split)
        assert len(seen) == options["n_labelled"] == m["validation"]["excluded_labelled"]
        assert (split.labels[seen] == 1).all()
        split = split.take(np.setdiff1d(np.arange(len(split)), seen))
    scores = method.score(split.images)["pred_score"]
    assert np.isfinite(scores).all()
    assert abs(auroc(scores, split.labels) - m["validation"]["auroc"]) <= TOLERANCE


def test_all_shipped_baselines_together_are_small():
    sizes = shipped_baselines()
    assert set(sizes) == set(IDS), "every shipped baseline folder is listed (and tested) here"
    assert sum(sizes.values()) < ALL_SHIPPED_LIMIT


# data/pretrained/results64/<name>
STORED = ["anogan", "hqanogan", "hqanogan_repair", "gaussian_ad", "padim", "patchcore", "supervised"]


def test_every_stored_result_is_listed():
    root = data_dir() / "pretrained" / "results64"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(STORED)


@pytest.mark.parametrize("name", STORED)
def test_stored_result_still_matches_its_key(name, splits):
    """A stored result (data/pretrained/results64) is used by the book only while its key (the code the
    method imports, weights, images, options) matches; a stale one makes the book recompute it (minutes).
    Re-ship with: python -m hqanogan_core benchmark --data data/cache/phantom64 --methods NAME
    --cache data/pretrained/results64 (after removing data/pretrained/results64/NAME)."""
    data, train, _ = splits
    test = load_split(data, "test")
    valid = load_split(data, "valid")
    run, result, _ = _cached_run(name, train, test, 0, None, valid, [data_dir() / "pretrained" / "results64"], 1000,
                                 naturalness_normals(test))
    assert run is not None, f"data/pretrained/results64/{name} is stale: re-ship it (see this test's docstring)"
    assert result["cached_from"] == f"data/pretrained/results64/{name}/result.json"
    assert len(run.scores) == result["n_test"] == len(run.test)
    assert result["test_subset"] == getattr(run.method, "test_subset", None)
    stored = (data_dir() / "pretrained" / "results64" / name / "result.json").read_text()
    assert str(REPO_ROOT) not in stored, "a stored result must not record this machine's paths"


def test_other_seed_results_were_computed_like_the_book_result():
    """Chapter 4 loads the default score's results on phantoms of other seeds (data/pretrained/results64_seed<s>)
    without drawing those phantoms in this test: their keys must equal the book phantom's stored key (which
    the test above checks against today's code and weights) in everything but the images. Re-ship with
    python -m hqanogan_core benchmark --data data/cache/phantom64_seed<s> --methods hqanogan
    --cache data/pretrained/results64_seed<s>."""
    from hqanogan_core.data.default import ROBUSTNESS_SEEDS

    images = {"train_signature", "test_signature", "valid_signature", "reference_signature"}
    book = json.loads((data_dir() / "pretrained" / "results64" / "hqanogan" / "result.json").read_text())["key"]
    for s in ROBUSTNESS_SEEDS:
        file = data_dir() / "pretrained" / f"results64_seed{s}" / "hqanogan" / "result.json"
        assert file.is_file(), f"{file} is not shipped (see this test's docstring)"
        key = json.loads(file.read_text())["key"]
        stale = sorted(k for k in book.keys() | key.keys() if k not in images and book.get(k) != key.get(k))
        assert not stale, f"{file} differs from the book's result in {stale}: re-ship it"
        assert key["test_signature"] != book["test_signature"]            # other patients


def test_shipped_inversion_study_matches_and_reproduces(splits, tmp_path):
    """Chapter 3's encoder-vs-projector numbers are shipped (data/pretrained/inversion64, written by
    `python -m hqanogan_core compare-inversions`): the book loads them only while their key matches, and
    the encoder's stored reconstructions are what the encoder computes now."""
    from hqanogan_core.ablation import inversion_images, inversion_study
    from hqanogan_core.nets.perceptual import PerceptualDistance
    from hqanogan_core.pipeline import load_pipeline
    from hqanogan_core.recon import encode_images, reconstruction_metrics

    data = splits[0]
    pipe = load_pipeline()
    images = inversion_images(data, pipe.resolution)
    study = inversion_study(pipe.G, pipe.E, PerceptualDistance(), images["normals"], images["abnormal"], steps=300,
                            out=tmp_path)
    assert study["loaded_from"] == "data/pretrained/inversion64/results.json", "stale: re-run compare-inversions"
    _, rec = encode_images(pipe.G, pipe.E, images["normals"])
    torch.testing.assert_close(rec, study["compare"]["encoder"]["reconstructions"], atol=1e-4, rtol=0)
    stored = study["compare"]["encoder"]["metrics"]["psnr"]
    np.testing.assert_allclose(reconstruction_metrics(images["normals"], rec)["psnr"], stored, atol=1e-3)
    assert study["abnormal_projection"].shape == images["abnormal"].shape

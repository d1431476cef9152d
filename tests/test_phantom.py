"""The chest-radiograph phantom: shapes, determinism, same patient, masks, dataset layout."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from hqanogan_core.data.phantom import (
    ANOMALY_TYPES,
    PhantomConfig,
    describe_case,
    render_case,
    split_plan,
    write_phantom_dataset,
)

CFG64 = PhantomConfig(size=64)


@pytest.mark.parametrize("size", [32, 64, 100, 256])
def test_shape_dtype_range(size):
    cfg = PhantomConfig(size=size)
    for anomaly in (None, "nodule"):
        img, mask = render_case(0, 3, anomaly, cfg)
        assert img.shape == (size, size) and img.dtype == np.float32
        assert mask.shape == (size, size) and mask.dtype == bool
        assert 0.0 <= img.min() and img.max() <= 1.0
        assert np.isfinite(img).all()
        assert img.std() > 0.05  # not a flat image
    assert not render_case(0, 3, None, cfg)[1].any()


def test_looks_like_a_chest_film():
    """Dark background at the upper corners, dark lungs, bright mediastinum and abdomen."""
    img, _ = render_case(0, 1, None, PhantomConfig(size=64, variation=0.0))
    corner, lungs = img[:6, :4].mean(), img[26:34, [14, 15, 48, 49]].mean()
    mediastinum, abdomen = img[20:44, 30:34].mean(), img[58:, 24:40].mean()
    assert corner < lungs < mediastinum
    assert lungs < abdomen
    assert mediastinum - lungs > 0.2


def test_deterministic():
    a = render_case(7, 11, "consolidation", CFG64)
    b = render_case(7, 11, "consolidation", CFG64)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = render_case(7, 12, "consolidation", CFG64)
    d = render_case(8, 11, "consolidation", CFG64)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], d[0])
    train = render_case(7, 11, None, CFG64, split="train")[0]
    test = render_case(7, 11, None, CFG64, split="test")[0]
    assert not np.array_equal(train, test)  # split streams are independent


@pytest.mark.parametrize("anomaly", ANOMALY_TYPES)
def test_same_patient_mask_and_change(anomaly):
    normal, empty = render_case(1, 5, None, CFG64)
    img, mask = render_case(1, 5, anomaly, CFG64)
    assert not empty.any()
    assert mask.sum() >= 4, f"{anomaly}: mask too small ({mask.sum()} px)"
    assert mask.mean() < 0.25, f"{anomaly}: mask too large"
    # visibly different inside the mask ...
    assert np.abs(img - normal)[mask].mean() > 0.04, anomaly
    # ... and the same patient far from it
    far = ~ndimage.binary_dilation(mask, iterations=4)
    assert np.abs(img - normal)[far].max() < 0.03, anomaly


@pytest.mark.parametrize("anomaly", ANOMALY_TYPES)
def test_severity_zero_is_normal(anomaly):
    normal, _ = render_case(2, 9, None, CFG64)
    img, mask = render_case(2, 9, anomaly, CFG64, severity=0.0)
    assert np.array_equal(img, normal) and not mask.any()
    zero_cfg = PhantomConfig(size=64, severity=0.0)
    assert np.array_equal(render_case(2, 9, anomaly, zero_cfg)[0], normal)


def test_severity_grows_the_lesion():
    areas = [render_case(3, 4, "nodule", CFG64, severity=s)[1].sum() for s in (0.5, 1.0, 2.0)]
    assert areas[0] < areas[1] < areas[2]


def test_every_type_nonempty_over_patients():
    for anomaly in ANOMALY_TYPES:
        sizes = [render_case(0, i, anomaly, PhantomConfig(size=32))[1].sum() for i in range(6)]
        assert min(sizes) > 0, (anomaly, sizes)


def test_cardiomegaly_raises_ctr():
    for i in range(5):
        normal = describe_case(4, i, None, CFG64)["ctr"]
        big = describe_case(4, i, "cardiomegaly", CFG64)["ctr"]
        assert 0.36 <= normal <= 0.52
        assert big > 0.55 and big > normal + 0.05
    # the image itself: more bright (heart) pixels across the lower chest
    normal, _ = render_case(4, 0, None, CFG64)
    big, mask = render_case(4, 0, "cardiomegaly", CFG64)
    rows = np.nonzero(mask.any(axis=1))[0]
    assert (big[rows] > normal[rows] + 0.05).sum() >= 0.8 * mask.sum()


def test_unknown_anomaly():
    with pytest.raises(ValueError) as err:
        render_case(0, 0, "tumour", CFG64)
    assert all(name in str(err.value) for name in ANOMALY_TYPES)


def test_split_plan():
    plan = split_plan("test", 10, 0.5)
    assert plan[:5] == [None] * 5
    assert plan[5:] == list(ANOMALY_TYPES)
    plan = split_plan("test", 1000, 0.5)
    assert plan.count(None) == 500
    assert all(plan.count(t) == 100 for t in ANOMALY_TYPES)
    assert split_plan("train", 7, 0.0) == [None] * 7
    assert split_plan("valid", 3, 1 / 3) == [None, None, "nodule"]
    with pytest.raises(ValueError):
        split_plan("holdout", 3, 0.5)


def test_write_dataset(tmp_path):
    cfg = PhantomConfig(size=32)
    summary = write_phantom_dataset(tmp_path, n_train=6, n_test=10, n_valid=4, seed=3, config=cfg,
                                    workers=1, progress=False)
    pngs = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    train = [f"train/good/{i:05d}.png" for i in range(6)]
    test = ([f"test/good/{i:05d}.png" for i in range(5)]
            + [f"test/{t}/{i + 5:05d}.png" for i, t in enumerate(ANOMALY_TYPES)])
    test_masks = [f"ground_truth/{t}/{i + 5:05d}_mask.png" for i, t in enumerate(ANOMALY_TYPES)]
    valid = [f"valid/good/{i:05d}.png" for i in range(2)] + ["valid/nodule/00002.png", "valid/consolidation/00003.png"]
    valid_masks = ["valid_ground_truth/nodule/00002_mask.png", "valid_ground_truth/consolidation/00003_mask.png"]
    assert pngs == sorted(train + test + test_masks + valid + valid_masks)

    for rel in pngs:
        im = Image.open(tmp_path / rel)
        assert im.mode == "L" and im.size == (32, 32)
    for rel in test_masks + valid_masks:
        m = np.asarray(Image.open(tmp_path / rel))
        assert set(np.unique(m)) <= {0, 255} and (m == 255).any()

    # the files are exactly render_case with the split's stream
    img, mask = render_case(3, 7, "effusion", cfg, split="test")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "test/effusion/00007.png")),
                          np.round(img * 255).astype(np.uint8))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ground_truth/effusion/00007_mask.png")) > 0, mask)

    meta = json.loads((tmp_path / "phantom.json").read_text())
    assert meta["seed"] == 3 and meta["config"]["size"] == 32
    assert meta["counts"] == {"train": 6, "valid": 4, "test": 10}
    assert (meta["n_train"], meta["n_valid"], meta["n_test"]) == (6, 4, 10)
    assert meta["files"]["test"] == {"good": 5, **{t: 1 for t in ANOMALY_TYPES}}
    assert meta["files"]["train"] == {"good": 6}
    assert summary["seconds"] >= 0 and meta["seconds"] == summary["seconds"]

"""Tests for hqanogan_core.data.folder: robust image reading and the MVTec layout."""
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hqanogan_core.data.folder import (
    DatasetLayoutError, ImageFileError, MVTecDataset, Sample, load_splits, read_grayscale,
    read_mask, scan_split, split_valid_from_test, stratified_assign,
)
from hqanogan_core.data.preprocess import Preprocess


def _png_bytes(arr, mode=None):
    buf = io.BytesIO()
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    im.save(buf, format="PNG")
    return buf.getvalue()


def _mode(path):
    with Image.open(path) as im:
        return im.mode


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


NOISE_PNG = _png_bytes(np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# ------------------------------------------------------------ property test

@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _check_contract(path):
    """read_grayscale returns a float32 [H, W] array in [0, 1] or raises ImageFileError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = read_grayscale(path)
    except ImageFileError as err:
        assert str(path) in str(err)
        return None
    assert arr.dtype == np.float32 and arr.ndim == 2 and min(arr.shape) >= 1
    assert np.all(np.isfinite(arr)) and arr.min() >= 0.0 and arr.max() <= 1.0
    return arr


@st.composite
def odd_images(draw):
    mode = draw(st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B"]))
    height = draw(st.integers(1, 9))
    width = draw(st.sampled_from([1, 2, 7, 33]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if mode.startswith("I;16"):
        im = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
        if mode == "I;16B":
            im = Image.frombytes("I;16B", (width, height), np.asarray(im).astype(">u2").tobytes())
    else:
        im = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA").convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue(), (height, width)


file_bytes = st.one_of(
    st.binary(max_size=300),  # random junk, including 0 bytes
    st.binary(max_size=300).map(lambda b: PNG_SIGNATURE + b),  # junk after a PNG signature
    st.integers(0, len(NOISE_PNG)).map(lambda n: NOISE_PNG[:n]),  # truncations
    st.tuples(st.integers(0, len(NOISE_PNG) - 1), st.integers(0, 255)).map(  # one corrupted byte
        lambda t: NOISE_PNG[:t[0]] + bytes([t[1]]) + NOISE_PNG[t[0] + 1:]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=file_bytes)
def test_read_grayscale_never_leaks_other_errors(scratch, data):
    path = scratch / "fuzz.png"
    path.write_bytes(data)
    _check_contract(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image=odd_images())
def test_read_grayscale_reads_odd_modes_and_sizes(scratch, image):
    data, shape = image
    path = scratch / "odd.png"
    path.write_bytes(data)
    arr = _check_contract(path)
    assert arr is not None and arr.shape == shape


# ------------------------------------------------------------ error messages

def test_error_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageFileError, match=r"empty\.png is empty \(0 bytes\)"):
        read_grayscale(path)


def test_error_truncated(tmp_path):
    path = tmp_path / "cut.png"
    path.write_bytes(NOISE_PNG[: len(NOISE_PNG) // 2])
    with pytest.raises(ImageFileError, match=r"cut\.png is truncated"):
        read_grayscale(path)


def test_error_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels")
    with pytest.raises(ImageFileError, match=r"notes\.png is not an image PIL can read"):
        read_grayscale(path)


def test_error_missing_file(tmp_path):
    with pytest.raises(ImageFileError, match=r"nothere\.png cannot be read"):
        read_grayscale(tmp_path / "nothere.png")


def test_error_zero_size(tmp_path, monkeypatch):
    # PIL refuses to write or identify a 0x0 PNG, so feed read_grayscale an empty image
    path = tmp_path / "zero.png"
    path.write_bytes(NOISE_PNG)
    monkeypatch.setattr(Image, "open", lambda p: Image.new("L", (0, 0)))
    with pytest.raises(ImageFileError, match=r"zero\.png has 0x0 size"):
        read_grayscale(path)


def test_error_header_says_zero_size(tmp_path):
    header = struct.pack(">IIBBBBB", 0, 0, 8, 0, 0, 0, 0)
    path = tmp_path / "zeroheader.png"
    path.write_bytes(PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IEND", b""))
    with pytest.raises(ImageFileError, match=r"zeroheader\.png"):
        read_grayscale(path)


def test_mask_size_mismatch(tmp_path):
    path = _save(tmp_path / "a_mask.png", np.zeros((30, 30), np.uint8))
    with pytest.raises(ImageFileError, match=r"mask .*a_mask\.png size 30x30 does not match image 64x64"):
        read_mask(path, (64, 64))
    assert read_mask(path, (30, 30)).dtype == bool


# ------------------------------------------------------------ bit depths, colour

def test_16bit_round_trip(tmp_path):
    values = np.array([[0, 1, 255, 256], [4095, 32768, 65534, 65535]], dtype=np.uint16)
    path = _save(tmp_path / "deep.png", values)
    assert _mode(path) == "I;16"
    arr = read_grayscale(path)
    np.testing.assert_array_equal(np.rint(arr.astype(np.float64) * 65535).astype(np.uint16), values)


def test_8bit_and_palette(tmp_path):
    values = np.array([[0, 128, 255]], dtype=np.uint8)
    np.testing.assert_allclose(read_grayscale(_save(tmp_path / "l.png", values)), values / 255, atol=1e-7)
    pal = tmp_path / "p.png"
    Image.fromarray(values).convert("P").save(pal)
    assert _mode(pal) == "P"
    np.testing.assert_allclose(read_grayscale(pal), values / 255, atol=1 / 255)


def test_mode_i_is_scaled_by_65535(tmp_path):
    path = tmp_path / "wide.tif"  # PNG cannot hold mode I; TIFF can
    Image.fromarray(np.array([[0, 300, 65535, 70000]], dtype=np.int32)).save(path)
    np.testing.assert_allclose(read_grayscale(path), [[0, 300 / 65535, 1, 1]], atol=1e-6)


def test_rgb_warns_and_converts(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 1] = 200
    path = _save(tmp_path / "colour.png", rgb)
    with pytest.warns(UserWarning, match=r"colour\.png.*luminance"):
        arr = read_grayscale(path)
    assert arr.shape == (2, 2) and 0.4 < arr[0, 0] < 0.7  # green luminance ~ 0.587 * 200 / 255


# ------------------------------------------------------------ layout

def make_dataset(root, size=32, n_train=3, n_good=2, types=("nodule", "effusion"), n_bad=2, masks=True):
    """Tiny MVTec dataset: abnormal images have a bright square that the mask marks."""
    rng = np.random.default_rng(0)
    for i in range(n_train):
        _save(root / "train" / "good" / f"{i:03d}.png", rng.integers(0, 100, (size, size), dtype=np.uint8))
    for i in range(n_good):
        _save(root / "test" / "good" / f"{i:03d}.png", rng.integers(0, 100, (size, size), dtype=np.uint8))
    for kind in types:
        for i in range(n_bad):
            img = rng.integers(0, 100, (size, size), dtype=np.uint8)
            img[4:12, 20:28] = 255
            _save(root / "test" / kind / f"{i:03d}.png", img)
            if masks:
                mask = np.zeros((size, size), np.uint8)
                mask[4:12, 20:28] = 255
                _save(root / "ground_truth" / kind / f"{i:03d}_mask.png", mask)
    return root


def test_scan_split_labels_masks_and_order(tmp_path):
    root = make_dataset(tmp_path / "ds")
    (root / "test" / "good" / "readme.txt").write_text("ignored")
    _save(root / "test" / "good" / "UPPER.PNG", np.zeros((32, 32), np.uint8))
    train = scan_split(root, "train")
    assert [s.path.name for s in train] == ["000.png", "001.png", "002.png"]
    assert all(s.gt_label == 0 and s.anomaly_type == "good" and s.mask_path is None for s in train)
    test = scan_split(root, "test")
    assert [s.anomaly_type for s in test] == ["good"] * 3 + ["effusion"] * 2 + ["nodule"] * 2
    assert [s.gt_label for s in test] == [0] * 3 + [1] * 4
    assert all(s.mask_path.name == s.path.stem + "_mask.png" for s in test if s.gt_label)
    assert scan_split(root, "test") == test  # deterministic


def test_missing_mask_is_allowed(tmp_path):
    root = make_dataset(tmp_path / "ds", masks=False)
    assert all(s.mask_path is None for s in scan_split(root, "test"))


def test_layout_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        scan_split(tmp_path / "nowhere", "train")
    (tmp_path / "bare").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"no train/good folder under .*bare; expected the MVTec AD layout"):
        scan_split(tmp_path / "bare", "train")

    root = make_dataset(tmp_path / "ds")
    with pytest.raises(DatasetLayoutError, match=r"no valid/ folder"):
        scan_split(root, "valid")

    (root / "test" / "fracture").mkdir()
    (root / "test" / "fracture" / "notes.txt").write_text("x")
    with pytest.raises(DatasetLayoutError, match=r"image folder .*fracture contains no \.png files"):
        scan_split(root, "test")
    (root / "test" / "fracture" / "notes.txt").unlink()
    (root / "test" / "fracture").rmdir()

    _save(root / "ground_truth" / "nodule" / "999_mask.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(DatasetLayoutError, match=r"mask .*999_mask\.png has no image"):
        scan_split(root, "test")
    (root / "ground_truth" / "nodule" / "999_mask.png").unlink()

    _save(root / "ground_truth" / "ghost" / "000_mask.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(DatasetLayoutError, match=r"mask folder .*ghost has no image folder"):
        scan_split(root, "test")
    (root / "ground_truth" / "ghost" / "000_mask.png").unlink()

    _save(root / "ground_truth" / "nodule" / "000.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(DatasetLayoutError, match=r"mask .*nodule/000\.png is not named <image stem>_mask\.png"):
        scan_split(root, "test")
    (root / "ground_truth" / "nodule" / "000.png").unlink()

    _save(root / "train" / "nodule" / "000.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(DatasetLayoutError, match=r"train/ must contain only good/"):
        scan_split(root, "train")


def test_valid_split_folder_with_masks(tmp_path):
    root = make_dataset(tmp_path / "ds")
    _save(root / "valid" / "good" / "v0.png", np.zeros((32, 32), np.uint8))
    _save(root / "valid" / "nodule" / "v1.png", np.zeros((32, 32), np.uint8))
    _save(root / "valid_ground_truth" / "nodule" / "v1_mask.png", np.zeros((32, 32), np.uint8))
    valid = scan_split(root, "valid")
    assert [(s.path.name, s.gt_label, s.mask_path is not None) for s in valid] == [
        ("v0.png", 0, False), ("v1.png", 1, True)]
    splits = load_splits(root)
    assert splits["valid"] == valid and len(splits["test"]) == 6


def test_split_valid_from_test_is_stratified_and_seeded(tmp_path):
    samples = [Sample(tmp_path / f"{t}{i}.png", int(t != "good"), t, None)
               for t, n in (("good", 20), ("nodule", 10), ("mass", 5)) for i in range(n)]
    valid, test = split_valid_from_test(samples, fraction=0.2, seed=3)
    assert sorted(map(str, (s.path for s in valid + test))) == sorted(str(s.path) for s in samples)
    assert not {s.path for s in valid} & {s.path for s in test}
    count = lambda xs, t: sum(s.anomaly_type == t for s in xs)  # noqa: E731
    assert (count(valid, "good"), count(valid, "nodule"), count(valid, "mass")) == (4, 2, 1)
    assert split_valid_from_test(samples, 0.2, seed=3) == (valid, test)
    assert split_valid_from_test(list(reversed(samples)), 0.2, seed=3) == (valid, test)
    assert split_valid_from_test(samples, 0.2, seed=4)[0] != valid


def test_stratified_assign_keeps_strata_independent():
    a = stratified_assign(["x"] * 10 + ["y"] * 10, (0.5, 0.5), seed=1)
    b = stratified_assign(["x"] * 10 + ["y"] * 10 + ["z"] * 4, (0.5, 0.5), seed=1)
    np.testing.assert_array_equal(a, b[:20])
    assert np.bincount(a[:10]).tolist() == [5, 5]


def test_load_splits_carves_valid_from_test(tmp_path):
    root = make_dataset(tmp_path / "ds", n_good=5, n_bad=5)
    splits = load_splits(root, valid_fraction=0.2, seed=0)
    assert len(splits["valid"]) == 3 and len(splits["test"]) == 12
    assert {s.anomaly_type for s in splits["valid"]} == {"good", "nodule", "effusion"}


# ------------------------------------------------------------ torch dataset

def test_dataset_items(tmp_path):
    root = make_dataset(tmp_path / "ds", size=32)
    ds = MVTecDataset(root, "test", size=16)
    assert len(ds) == 6 and ds.labels.tolist() == [0, 0, 1, 1, 1, 1]
    for item in ds:
        assert item["image"].shape == (1, 16, 16) and item["image"].dtype == torch.float32
        assert -1.0 <= item["image"].min() and item["image"].max() <= 1.0
        assert item["gt_mask"].shape == (1, 16, 16) and item["gt_mask"].dtype == torch.float32
        assert set(item["gt_mask"].unique().tolist()) <= {0.0, 1.0}
        assert isinstance(item["gt_label"], int) and isinstance(item["path"], str)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 1, 16, 16) and batch["gt_label"].tolist() == [0, 0, 1, 1]
    assert MVTecDataset(root, "train", size=8)[0]["gt_mask"].sum() == 0


def test_mask_stays_aligned_after_resize(tmp_path):
    root = make_dataset(tmp_path / "ds", size=32)
    item = MVTecDataset(root, "test", size=16)[2]  # abnormal: square at rows 4:12, cols 20:28
    expected = torch.zeros(1, 16, 16)
    expected[0, 2:6, 10:14] = 1
    torch.testing.assert_close(item["gt_mask"], expected)
    bright = item["image"][0] > 0.5  # the bright square, found from the image itself
    assert bright[2:6, 10:14].all() and bright.sum() == 16


def test_mask_follows_preprocess_crop(tmp_path):
    root = tmp_path / "ds"
    _save(root / "train" / "good" / "0.png", np.zeros((20, 40), np.uint8))
    img = np.zeros((20, 40), np.uint8)
    img[0:10, 10:20] = 255  # top-left quarter of the 20x20 centre crop (cols 10:30)
    _save(root / "test" / "mass" / "0.png", img)
    _save(root / "ground_truth" / "mass" / "0_mask.png", img)
    item = MVTecDataset(root, "test", size=10, preprocess=Preprocess(crop=True))[0]
    expected = torch.zeros(1, 10, 10)
    expected[0, :5, :5] = 1
    torch.testing.assert_close(item["gt_mask"], expected)
    assert (item["image"][0] > 0).sum() == 25

    with pytest.raises(ValueError, match="no .mask"):
        MVTecDataset(root, "test", size=10, preprocess=lambda x: x[:10, :10])[0]


def test_dataset_names_broken_file(tmp_path):
    root = make_dataset(tmp_path / "ds")
    (root / "train" / "good" / "001.png").write_bytes(NOISE_PNG[:50])
    ds = MVTecDataset(root, "train", size=8)
    with pytest.raises(ImageFileError, match=r"001\.png"):
        ds[1]

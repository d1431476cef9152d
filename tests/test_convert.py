"""Tests for hqanogan_core.data.convert on tiny fixtures in the datasets' own formats."""
import csv
import io
import json

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation, binary_erosion

from hqanogan_core.data.convert import (
    CHEXPERT_PATHOLOGIES, CONVERTERS, convert_chexpert, convert_oct2017, convert_rsna, convert_zhanglab,
)
from hqanogan_core.data.folder import MVTecDataset, read_grayscale, scan_split

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import (  # noqa: E402
    ExplicitVRLittleEndian, JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid,
)


# ------------------------------------------------------------------ helpers

def write_dicom(path, pixels, photometric="MONOCHROME2", jpeg=False, bits_stored=8):
    """A minimal but valid DICOM file (Part 10 header) holding one grayscale frame."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = path.stem
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if jpeg:
        buf = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buf, format="JPEG", quality=95)
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
    else:
        dtype = np.uint8 if bits_stored <= 8 else np.uint16
        ds.PixelData = pixels.astype(dtype).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def save_jpeg(path, arr, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).convert(mode).save(path, format="JPEG", quality=95)


def noise(shape, seed, high=100):
    return np.random.default_rng(seed).integers(0, high, shape)


def _opened(path):
    with Image.open(path) as im:
        return im.mode, im.size


def output_files(out):
    """{split: {relative path under the split}} of every PNG written."""
    return {split: {p.relative_to(out / split).as_posix() for p in (out / split).rglob("*.png")}
            for split in ("train", "valid", "test") if (out / split).is_dir()}


def check_common(out, manifest):
    """Layout loads, train is normal-only, no stem in two splits, manifest counts match disk."""
    files = output_files(out)
    assert set(files["train"]) == {f for f in files["train"] if f.startswith("good/")}
    stems = {split: {f.split("/", 1)[1] for f in fs} for split, fs in files.items()}
    for a in stems:
        for b in stems:
            if a < b:
                assert not stems[a] & stems[b], (a, b)
    for split, per_type in manifest["counts"].items():
        for kind, n in per_type.items():
            assert len(list((out / split / kind).glob("*.png"))) == n
    assert sum(sum(c.values()) for c in manifest["counts"].values()) == len(manifest["files"])
    sources = list(manifest["files"].values())
    assert len(sources) == len(set(sources))  # each source used once
    assert json.loads((out / "convert.json").read_text()) == manifest
    for split in files:
        samples = scan_split(out, split)
        assert len(samples) == sum(manifest["counts"][split].values())
    return files


# ------------------------------------------------------------------ RSNA

RSNA_HEADER = ["patientId", "x", "y", "width", "height", "Target"]
BOXES = {  # 64x64 images except "pwide" (64 rows x 96 columns)
    "p0": [(8, 16, 16, 24), (40, 8, 16, 16)],
    "p1": [(0, 0, 32, 32)],
    "p2": [(32, 32, 32, 32)],
    "p3": [(16, 16, 16, 16)],
    "p4": [(8, 8, 8, 8)],
    "pwide": [(40, 8, 16, 16)],
}


@pytest.fixture
def rsna_src(tmp_path):
    src = tmp_path / "rsna"
    rows = []
    for i in range(12):
        pid = f"n{i:02d}"
        write_dicom(src / "stage_2_train_images" / f"{pid}.dcm", noise((64, 64), i), jpeg=(i == 0))
        rows.append([pid, "", "", "", "", "0"])
    for pid, boxes in BOXES.items():
        shape = (64, 96) if pid == "pwide" else (64, 64)
        img = noise(shape, hash(pid) % 1000)
        for x, y, w, h in boxes:
            img[y:y + h, x:x + w] = 255
        photometric = "MONOCHROME1" if pid == "p3" else "MONOCHROME2"
        write_dicom(src / "stage_2_train_images" / f"{pid}.dcm",
                    255 - img if photometric == "MONOCHROME1" else img, photometric)
        rows += [[pid, x, y, w, h, "1"] for x, y, w, h in boxes]
    with open(src / "stage_2_train_labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(RSNA_HEADER)
        writer.writerows(rows)
    return src


def test_rsna_layout_masks_and_manifest(rsna_src, tmp_path):
    out = tmp_path / "out"
    manifest = convert_rsna(rsna_src, out, size=32, seed=0)
    files = check_common(out, manifest)
    assert manifest["counts"] == {"train": {"good": 9}, "valid": {"good": 1, "pneumonia": 2},
                                  "test": {"good": 2, "pneumonia": 4}}
    assert manifest["args"]["size"] == 32 and manifest["dataset"] == "rsna"
    assert all(f.startswith("good/n") for f in files["train"])
    # every pneumonia image has its mask, where the boxes were (64 -> 32: halve)
    for split, mask_dir in (("valid", "valid_ground_truth"), ("test", "ground_truth")):
        for sample in scan_split(out, split):
            if sample.gt_label == 0:
                assert sample.mask_path is None
                continue
            pid = sample.path.stem
            assert sample.mask_path == out / mask_dir / "pneumonia" / f"{pid}_mask.png"
            mask = read_grayscale(sample.mask_path) > 0.5
            expected = np.zeros((32, 32), bool)
            for x, y, w, h in BOXES[pid]:
                if pid == "pwide":
                    x -= 16  # centre crop of 96 columns starts at column 16
                expected[y // 2:(y + h) // 2, x // 2:(x + w) // 2] = True
            np.testing.assert_array_equal(mask, expected, err_msg=pid)
            image = read_grayscale(sample.path)
            inside = binary_erosion(expected)  # box edges are blended by the antialiased resize
            assert image[inside].min() > 0.9  # the bright box is under the mask, MONOCHROME1 inverted
            assert image[~binary_dilation(expected)].max() < 100 / 255 + 0.01
            assert image.shape == (32, 32)
    item = MVTecDataset(out, "test", size=16)[len(scan_split(out, "test")) - 1]
    assert item["gt_mask"].sum() > 0


def test_rsna_split_is_seeded(rsna_src, tmp_path):
    a = convert_rsna(rsna_src, tmp_path / "a", size=16, seed=1)
    b = convert_rsna(rsna_src, tmp_path / "b", size=16, seed=1)
    c = convert_rsna(rsna_src, tmp_path / "c", size=16, seed=2)
    assert a["files"] == b["files"]
    assert a["files"] != c["files"]
    assert output_files(tmp_path / "a") == output_files(tmp_path / "b")


def test_rsna_detailed_class_info_excludes_not_normal(rsna_src, tmp_path):
    with open(rsna_src / "stage_2_detailed_class_info.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patientId", "class"])
        writer.writerows([[f"n{i:02d}", "No Lung Opacity / Not Normal" if i < 4 else "Normal"] for i in range(12)])
        writer.writerows([[pid, "Lung Opacity"] for pid in BOXES])
    manifest = convert_rsna(rsna_src, tmp_path / "out", size=16)
    used = {src.split("/")[-1] for src in manifest["files"].values()}
    assert not used & {f"n{i:02d}.dcm" for i in range(4)}
    assert sum(c.get("good", 0) for c in manifest["counts"].values()) == 8
    assert manifest["excluded"]["'No Lung Opacity / Not Normal' (detailed class info)"] == 4


def test_rsna_limit_equalize_and_16bit(rsna_src, tmp_path):
    write_dicom(rsna_src / "stage_2_train_images" / "n05.dcm", noise((64, 64), 5, high=4096), bits_stored=12)
    manifest = convert_rsna(rsna_src, tmp_path / "out", size=16, limit=3, equalize="he")
    assert sum(c.get("good", 0) for c in manifest["counts"].values()) == 3
    assert sum(c.get("pneumonia", 0) for c in manifest["counts"].values()) == 3
    written = next((tmp_path / "out" / "train" / "good").glob("*.png"))
    assert _opened(written)[0] in ("L", "I;16")
    manifest = convert_rsna(rsna_src, tmp_path / "full", size=16)
    n05 = next(k for k, v in manifest["files"].items() if v.endswith("n05.dcm"))
    assert _opened(tmp_path / "full" / n05)[0] == "I;16"  # 12-bit source -> 16-bit PNG


def test_rsna_missing_inputs_are_named(rsna_src, tmp_path):
    (rsna_src / "stage_2_train_images" / "p1.dcm").unlink()
    with pytest.raises(FileNotFoundError, match=r"p1\.dcm"):
        convert_rsna(rsna_src, tmp_path / "o1", size=16)
    (rsna_src / "stage_2_train_labels.csv").rename(rsna_src / "labels.csv")
    with pytest.raises(FileNotFoundError, match=r"stage_2_train_labels\.csv"):
        convert_rsna(rsna_src, tmp_path / "o2", size=16)
    (rsna_src / "labels.csv").rename(rsna_src / "stage_2_train_labels.csv")
    (rsna_src / "stage_2_train_images").rename(rsna_src / "images")
    with pytest.raises(FileNotFoundError, match=r"stage_2_train_images"):
        convert_rsna(rsna_src, tmp_path / "o3", size=16)


def test_refuses_to_overwrite(rsna_src, tmp_path):
    convert_rsna(rsna_src, tmp_path / "out", size=16, limit=2)
    with pytest.raises(FileExistsError, match="already exists"):
        convert_rsna(rsna_src, tmp_path / "out", size=16, limit=2)
    manifest = convert_rsna(rsna_src, tmp_path / "out", size=16, limit=3, overwrite=True)
    assert sum(len(v) for v in output_files(tmp_path / "out").values()) == len(manifest["files"])


# ------------------------------------------------------------------ CheXpert

CHEXPERT_HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", *CHEXPERT_PATHOLOGIES,
                   "Support Devices"]


def _chexpert_row(path, view, no_finding="", **findings):
    labels = [findings.get(c.replace(" ", "_"), "") for c in CHEXPERT_PATHOLOGIES]
    return [path, "Female", "60", view, "PA" if view == "Frontal" else "", no_finding, *labels,
            findings.get("Support_Devices", "")]


@pytest.fixture
def chexpert_src(tmp_path):
    src = tmp_path / "CheXpert-v1.0-small"
    rows = []

    def add(patient, study, view, seed, **labels):
        kind = "frontal" if view == "Frontal" else "lateral"
        rel = f"CheXpert-v1.0-small/train/patient{patient:05d}/study{study}/view1_{kind}.jpg"
        save_jpeg(src / rel.split("/", 1)[1], noise((48, 40), seed))
        rows.append(_chexpert_row(rel, view, **labels))

    for p in range(1, 11):  # normal patients, two studies for some
        add(p, 1, "Frontal", p, no_finding="1.0", Support_Devices="1.0" if p == 1 else "")
        if p % 3 == 0:
            add(p, 2, "Frontal", 100 + p, no_finding="1.0")
        add(p, 1, "Lateral", 200 + p, no_finding="1.0")
    for p in range(11, 17):  # abnormal patients
        add(p, 1, "Frontal", p, Cardiomegaly="1.0", Edema="-1.0")
    add(17, 1, "Frontal", 17, Edema="-1.0")  # uncertain only -> excluded
    add(18, 1, "Frontal", 18, Support_Devices="1.0", Lung_Opacity="0.0")  # devices only -> excluded
    add(19, 1, "Frontal", 19, no_finding="1.0")  # mixed patient: one normal, one abnormal study
    add(19, 2, "Frontal", 119, Pleural_Effusion="1.0")
    with open(src / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CHEXPERT_HEADER)
        writer.writerows(rows)
    return src


def test_chexpert(chexpert_src, tmp_path):
    out = tmp_path / "out"
    manifest = convert_chexpert(chexpert_src, out, size=16, seed=0)
    files = check_common(out, manifest)
    assert manifest["excluded"]["lateral view"] == 10
    assert manifest["excluded"]["no positive finding (uncertain or blank only)"] == 2
    total = {k: sum(c.get(k, 0) for c in manifest["counts"].values()) for k in ("good", "abnormal")}
    assert total["abnormal"] <= 7 and total["good"] == 14
    # no patient in two splits
    patients = {split: {f.split("/")[1].split("_")[0] for f in fs} for split, fs in files.items()}
    assert not patients["train"] & patients["test"] and not patients["train"] & patients["valid"]
    assert not patients["valid"] & patients["test"]
    assert all("lateral" not in f for fs in files.values() for f in fs)
    assert _opened(next((out / "train" / "good").glob("*.png")))[1] == (16, 16)


def test_chexpert_paths_relative_to_src(chexpert_src, tmp_path):
    # some copies list paths without the release folder prefix
    text = (chexpert_src / "train.csv").read_text().replace("CheXpert-v1.0-small/", "")
    (chexpert_src / "train.csv").write_text(text)
    manifest = convert_chexpert(chexpert_src, tmp_path / "out", size=16)
    assert len(manifest["files"]) > 0


def test_chexpert_missing_inputs_are_named(chexpert_src, tmp_path):
    (chexpert_src / "train" / "patient00011" / "study1" / "view1_frontal.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"patient00011/study1/view1_frontal\.jpg"):
        convert_chexpert(chexpert_src, tmp_path / "out", size=16)
    (chexpert_src / "train.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"train\.csv"):
        convert_chexpert(chexpert_src, tmp_path / "out", size=16)


# ------------------------------------------------------------------ ZhangLab and OCT2017

@pytest.fixture
def zhanglab_src(tmp_path):
    root = tmp_path / "zhanglab" / "chest_xray"
    seed = 0
    for split, n_normal, n_pneu in (("train", 10, 10), ("val", 2, 2), ("test", 3, 4)):
        for i in range(n_normal):
            seed += 1
            save_jpeg(root / split / "NORMAL" / f"IM-{i // 2:04d}-{i % 2 + 1:04d}.jpeg", noise((40, 52), seed))
        for i in range(n_pneu):
            seed += 1
            kind = "bacteria" if i % 2 else "virus"
            save_jpeg(root / split / "PNEUMONIA" / f"person{i // 2}_{kind}_{i}.jpeg", noise((52, 40), seed),
                      mode="RGB" if i == 0 else "L")
    (root / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\0\0junk")
    (root / "train" / "NORMAL" / "._IM-0000-0001.jpeg").write_bytes(b"\0\5\x16\7 resource fork")
    return tmp_path / "zhanglab"


def test_zhanglab(zhanglab_src, tmp_path):
    out = tmp_path / "out"
    manifest = convert_zhanglab(zhanglab_src, out, size=16, seed=0, valid_fraction=0.2)
    files = check_common(out, manifest)
    assert manifest["counts"]["test"] == {"good": 3, "pneumonia": 4}  # official test kept whole
    assert all(f.split("/")[1].startswith("test_") for f in files["test"])
    assert not any(f.split("/")[1].startswith("test_") for f in files["train"] | files["valid"])
    assert manifest["counts"]["train"]["good"] + manifest["counts"]["valid"]["good"] == 12  # val folded in
    assert manifest["counts"]["valid"]["pneumonia"] >= 1
    # valid and train share no patient (IM-0003-0001 and IM-0003-0002 are one patient)
    patient = lambda f: f.split("/")[1].rsplit("-", 1)[0].split("_", 1)[1]  # noqa: E731
    assert not {patient(f) for f in files["train"]} & {patient(f) for f in files["valid"] if f.startswith("good")}
    same = convert_zhanglab(zhanglab_src / "chest_xray", tmp_path / "again", size=16, valid_fraction=0.2)
    assert same["files"] == manifest["files"]


def test_zhanglab_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train/ folder in .*nothing"):
        convert_zhanglab(tmp_path / "nothing", tmp_path / "out")


@pytest.fixture
def oct_src(tmp_path):
    root = tmp_path / "kermany" / "OCT2017"
    seed = 0
    for split, n in (("train", 6), ("test", 2)):
        for folder in ("NORMAL", "CNV", "DME", "DRUSEN"):
            for i in range(n):
                seed += 1
                save_jpeg(root / split / folder / f"{folder}-{1000 + i}-{split == 'test' and 9 or 1}.jpeg",
                          noise((36, 50), seed))
    return root


def test_oct2017(oct_src, tmp_path):
    out = tmp_path / "out"
    manifest = convert_oct2017(oct_src.parent, out, size=16, valid_fraction=0.2)
    check_common(out, manifest)
    assert manifest["counts"]["test"] == {"cnv": 2, "dme": 2, "drusen": 2, "good": 2}
    assert set(manifest["counts"]["valid"]) == {"cnv", "dme", "drusen", "good"}
    assert set(manifest["counts"]["train"]) == {"good"}
    assert convert_oct2017(oct_src, tmp_path / "again", size=16, valid_fraction=0.2)["files"] == manifest["files"]
    (oct_src / "test" / "DME").rename(oct_src / "test" / "dme_moved")
    with pytest.raises(FileNotFoundError, match=r"test/DME"):
        convert_oct2017(oct_src, tmp_path / "broken", size=16)


def test_converter_registry():
    assert set(CONVERTERS) == {"rsna", "chexpert", "zhanglab", "oct2017"}
    for fn in CONVERTERS.values():
        params = fn.__code__.co_varnames[:fn.__code__.co_argcount]
        for name in ("src", "out", "size", "seed", "valid_fraction", "limit", "equalize"):
            assert name in params


def test_cli_convert_prints_counts_not_file_map(rsna_src, tmp_path, capsys):
    from hqanogan_core.cli import main

    out = tmp_path / "rsna_cli"
    assert main(["convert", "rsna", "--src", str(rsna_src), "--out", str(out), "--size", "32"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "files" not in printed and printed["counts"]
    assert (out / "convert.json").exists()
    # a second run refuses to overwrite, with a clear message and exit code 2
    assert main(["convert", "rsna", "--src", str(rsna_src), "--out", str(out), "--size", "32"]) == 2
    assert str(out) in capsys.readouterr().err

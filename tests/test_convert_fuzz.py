"""Bad input for the converters (hqanogan_core.data.convert): fuzzed DICOMs, broken label CSVs, empty or missing
class folders, unreadable pictures, and failures midway.

Rules under test:
  * every failure is ONE line naming the offending file or folder (and CSV line) and the problem; the Python
    API raises ValueError / FileNotFoundError (ImageFileError is a ValueError), the CLI prints `error: <the same
    line>` on stderr and exits 2;
  * nothing half-written looks complete: a failed or interrupted conversion leaves no OUT (or, with
    overwrite, the previous dataset untouched) and no staging folder, so it can be rerun without --overwrite;
  * skip_bad=True (API) leaves unreadable image files out and lists them under "skipped" in convert.json;
    label and folder errors are never skipped.

Fixtures (tiny datasets in each source's own format) come from test_convert.py.
"""
import csv
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_convert import check_common, noise, save_jpeg, write_dicom

from hqanogan_core.cli import main
from hqanogan_core.data import convert as convert_module
from hqanogan_core.data.convert import CONVERTERS, convert_rsna, convert_zhanglab, read_dicom, staging_folder
from hqanogan_core.data.folder import ImageFileError

pydicom = pytest.importorskip("pydicom")
from test_convert import chexpert_src, oct_src, rsna_src, zhanglab_src  # noqa: E402,F401  (fixtures)

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------ helpers


def assert_no_dataset(out):
    """After a failure: no OUT at all, and no staging folder beside it."""
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    assert not staging_folder(out).exists()


def fails_everywhere(dataset, src, out, capsys, match, exc=(ValueError, FileNotFoundError), **kwargs):
    """The API raises `exc` matching `match` on one line; the CLI prints that same line and exits 2; neither
    leaves anything at `out`. Returns the message."""
    with pytest.raises(exc, match=match) as info:
        CONVERTERS[dataset](src, out, size=16, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message, message
    assert_no_dataset(out)
    assert main(["convert", dataset, "--src", str(src), "--out", str(out), "--size", "16"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {message}\n"
    assert_no_dataset(out)
    return message


def fixed_dicom(path, pixels, **kwargs):
    """write_dicom with fixed UIDs, so the file's bytes (and every cut offset) are the same on every run."""
    write_dicom(path, pixels, **kwargs)
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


DICOM_KINDS = {
    "8-bit": dict(pixels=noise((16, 16), 0), bits_stored=8),
    "12-bit": dict(pixels=noise((12, 20), 1, high=4096), bits_stored=12),
    "jpeg": dict(pixels=noise((16, 16), 2), jpeg=True),
}


@pytest.fixture(scope="module")
def good_dicoms(tmp_path_factory):
    """{kind: bytes of a valid DICOM} for the kinds in DICOM_KINDS."""
    root = tmp_path_factory.mktemp("dicoms")
    return {kind: fixed_dicom(root / f"{kind.replace('-', '')}.dcm", **spec) for kind, spec in DICOM_KINDS.items()}


def pixel_data_offset(data: bytes) -> int:
    """Where the PixelData element's value starts in a DICOM file's bytes."""
    from pydicom.filebase import DicomBytesIO

    ds = pydicom.dcmread(DicomBytesIO(data))
    return ds.get_item("PixelData").value_tell


def assert_read_or_named_error(path):
    """read_dicom either gives a valid [H, W] image in [0, 1] or raises ImageFileError "<path>: ..." on one line."""
    try:
        img, bits = read_dicom(path)
    except ImageFileError as err:
        message = str(err)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        return message
    assert img.ndim == 2 and img.dtype == np.float32 and bits in (8, 16)
    assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0
    return None


# ------------------------------------------------------------------ DICOM: the reader, fuzzed


@pytest.mark.parametrize("kind", sorted(DICOM_KINDS))
@FUZZ
@given(fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_dicom_at_any_offset_is_named(good_dicoms, tmp_path, kind, fraction):
    data = good_dicoms[kind]
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: int(fraction * len(data))])
    with pytest.raises(ImageFileError) as info:
        read_dicom(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert any(w in message for w in ("truncated", "empty file", "no pixel data")), message


@pytest.mark.parametrize("kind", sorted(DICOM_KINDS))
def test_truncated_dicom_at_landmarks(good_dicoms, tmp_path, kind):
    """Cuts in the preamble, the file meta, the dataset, the pixel data and 1 byte before the end."""
    data = good_dicoms[kind]
    pixels = pixel_data_offset(data)
    cuts = {1: "truncated DICOM or not DICOM", 131: "truncated DICOM or not DICOM",
            132: "truncated or corrupt DICOM header", 200: "truncated DICOM", pixels - 3: "truncated DICOM",
            pixels: "truncated DICOM", pixels + 5: "truncated DICOM", len(data) - 1: "truncated DICOM"}
    for cut, expected in cuts.items():
        path = tmp_path / f"cut{cut}.dcm"
        path.write_bytes(data[:cut])
        with pytest.raises(ImageFileError, match="^" + str(path).replace("\\", "\\\\") + ": ") as info:
            read_dicom(path)
        assert expected in str(info.value), (cut, str(info.value))
    whole = tmp_path / "whole.dcm"
    whole.write_bytes(data)
    assert read_dicom(whole)[0].shape == DICOM_KINDS[kind]["pixels"].shape


@FUZZ
@given(edits=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), min_size=1,
                      max_size=6))
def test_dicom_with_random_byte_edits_reads_or_is_named(good_dicoms, tmp_path, edits):
    """Corrupted bytes anywhere: a valid image or ImageFileError naming the file -- never another exception."""
    for kind in ("8-bit", "jpeg"):
        data = bytearray(good_dicoms[kind])
        for where, value in edits:
            data[int(where * len(data))] = value
        path = tmp_path / f"edited_{kind}.dcm"
        path.write_bytes(bytes(data))
        assert_read_or_named_error(path)


@FUZZ
@given(body=st.binary(max_size=400), with_marker=st.booleans())
def test_arbitrary_bytes_as_dicom_are_named(tmp_path, body, with_marker):
    path = tmp_path / "junk.dcm"
    path.write_bytes((b"\0" * 128 + b"DICM" if with_marker else b"") + body)
    assert assert_read_or_named_error(path) is not None


def _rewrite_dicom(path, **attrs):
    ds = pydicom.dcmread(path)
    for name, value in attrs.items():
        if value is None:
            delattr(ds, name)
        else:
            setattr(ds, name, value)
    ds.save_as(path, enforce_file_format=True)


def _colour(path, photometric):
    """A 3-sample colour DICOM (RGB / YBR_FULL) in place of `path`."""
    rgb = np.repeat(noise((16, 16), 3)[..., None], 3, axis=2).astype(np.uint8)
    _rewrite_dicom(path, Rows=16, Columns=16, SamplesPerPixel=3, PlanarConfiguration=0,
                   PhotometricInterpretation=photometric, PixelData=rgb.tobytes())


BAD_DICOMS = {  # case -> (how to break p2.dcm, fragment of the message)
    "zero-size": (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "JPEG bytes": (lambda p: save_jpeg(p, noise((16, 16), 4)), "not a DICOM file (no 'DICM' marker"),
    "text bytes": (lambda p: p.write_text("patientId,Target\n" * 40), "not a DICOM file"),
    "short junk": (lambda p: p.write_bytes(b"DICM\0\1"), "6 bytes"),
    "no pixel data": (lambda p: _rewrite_dicom(p, PixelData=None), "holds no pixel data"),
    "RGB": (lambda p: _colour(p, "RGB"), "PhotometricInterpretation 'RGB'"),
    "YBR_FULL": (lambda p: _colour(p, "YBR_FULL"), "PhotometricInterpretation 'YBR_FULL'"),
    "PALETTE COLOR": (lambda p: write_dicom(p, noise((16, 16), 5), photometric="PALETTE COLOR"),
                      "PhotometricInterpretation 'PALETTE COLOR'"),
    "two frames": (lambda p: _rewrite_dicom(p, NumberOfFrames=2, Rows=32, Columns=32,
                                            PixelData=noise((2, 32, 32), 6).astype(np.uint8).tobytes()),
                   "pixel array shape (2, 32, 32)"),
    "RescaleSlope inf": (lambda p: _rewrite_dicom(p, RescaleSlope="1e999"), "RescaleSlope"),
    "truncated in pixel data": (lambda p: p.write_bytes(p.read_bytes()[:-100]),
                                "truncated DICOM (element (7FE0,0010) PixelData holds"),
    "truncated in header": (lambda p: p.write_bytes(p.read_bytes()[:300]), "truncated DICOM"),
}


@pytest.mark.parametrize("case", sorted(BAD_DICOMS))
def test_bad_dicom_fails_the_conversion_naming_it(rsna_src, tmp_path, capsys, case):
    break_it, fragment = BAD_DICOMS[case]
    bad = rsna_src / "stage_2_train_images" / "p2.dcm"
    break_it(bad)
    message = fails_everywhere("rsna", rsna_src, tmp_path / "out", capsys, match="p2.dcm", exc=ImageFileError)
    assert message.startswith(f"{bad}: ") and fragment in message, message


def test_monochrome1_is_read_inverted(tmp_path):
    pixels = noise((20, 24), 7, high=4096)
    write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1", bits_stored=12)
    write_dicom(tmp_path / "m2.dcm", pixels, photometric="MONOCHROME2", bits_stored=12)
    m1, bits1 = read_dicom(tmp_path / "m1.dcm")
    m2, bits2 = read_dicom(tmp_path / "m2.dcm")
    assert bits1 == bits2 == 16
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    assert m2[pixels == pixels.max()].min() == 1.0 and m1[pixels == pixels.max()].max() == 0.0


def test_monochrome1_converts(rsna_src, tmp_path):
    """p3 in the fixture is MONOCHROME1; give a normal patient MONOCHROME1 too: both convert, bright = dense."""
    write_dicom(rsna_src / "stage_2_train_images" / "n03.dcm", 255 - noise((64, 64), 3), "MONOCHROME1")
    manifest = convert_rsna(rsna_src, tmp_path / "out", size=16)
    used = set(manifest["files"].values())
    assert {"stage_2_train_images/n03.dcm", "stage_2_train_images/p3.dcm"} <= used
    check_common(tmp_path / "out", manifest)


# ------------------------------------------------------------------ label CSVs


def _table(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def _write_table(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)


def _break_rsna(labels, case):
    header, rows = _table(labels)
    first_box = next(i for i, r in enumerate(rows) if r[-1] == "1")
    if case == "missing column":
        _write_table(labels, header[:-1], [r[:-1] for r in rows])
    elif case == "Target 2":
        rows[3][-1] = "2"
    elif case == "Target blank":
        rows[0][-1] = ""
    elif case == "zero-byte file":
        labels.write_bytes(b"")
    elif case == "header only":
        rows.clear()
    elif case == "short row":
        rows[2] = rows[2][:4]
    elif case == "long row":
        rows[2] = rows[2] + ["extra"]
    elif case == "not UTF-8":
        labels.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 8)
    elif case == "malformed CSV":
        rows[1][0] = "x" * 200_000
    elif case == "box not a number":
        rows[first_box][1] = "left"
    elif case == "box NaN":
        rows[first_box][2] = "nan"
    elif case == "box negative width":
        rows[first_box][3] = "-16"
    elif case == "empty patientId":
        rows[5][0] = " "
    elif case == "conflicting Target":
        rows.append([rows[first_box][0], "", "", "", "", "0"])
    elif case == "image not there":
        rows.append(["ghost", "", "", "", "", "0"])
    if case not in ("missing column", "zero-byte file", "not UTF-8"):
        _write_table(labels, header, rows)


BAD_RSNA_CSVS = {  # case -> (exception, message regex)
    "missing column": (ValueError, r"stage_2_train_labels\.csv lacks column\(s\) \['Target'\]"),
    "Target 2": (ValueError, r"stage_2_train_labels\.csv line 5: Target is '2'; expected one of"),
    "Target blank": (ValueError, r"line 2: Target is ''"),
    "zero-byte file": (ValueError, r"stage_2_train_labels\.csv is empty \(no header row\)"),
    "header only": (ValueError, r"stage_2_train_labels\.csv holds no rows"),
    "short row": (ValueError, r"line 4: 4 fields where the header has 6"),
    "long row": (ValueError, r"line 4: 7 fields where the header has 6"),
    "not UTF-8": (ValueError, r"stage_2_train_labels\.csv is not UTF-8 text"),
    "malformed CSV": (ValueError, r"line 3: malformed CSV \(field larger than field limit"),
    "box not a number": (ValueError, r"line \d+: box \['left', .*\] is not four numbers"),
    "box NaN": (ValueError, r"line \d+: box .*'nan'.* is not four numbers"),
    "box negative width": (ValueError, r"line \d+: box .*'-16'.* with positive width and height"),
    "empty patientId": (ValueError, r"line 7: patientId is empty"),
    "conflicting Target": (ValueError, r"line \d+: patientId p0 has Target 0, but line \d+ gave Target 1"),
    "image not there": (FileNotFoundError, r"RSNA image .*ghost\.dcm not found \(1 listed"),
}


@pytest.mark.parametrize("case", sorted(BAD_RSNA_CSVS))
def test_bad_rsna_labels(rsna_src, tmp_path, capsys, case):
    exc, pattern = BAD_RSNA_CSVS[case]
    _break_rsna(rsna_src / "stage_2_train_labels.csv", case)
    fails_everywhere("rsna", rsna_src, tmp_path / "out", capsys, match=pattern, exc=exc)


def test_missing_rsna_label_file(rsna_src, tmp_path, capsys):
    (rsna_src / "stage_2_train_labels.csv").unlink()
    fails_everywhere("rsna", rsna_src, tmp_path / "out", capsys, exc=FileNotFoundError,
                     match=r"label file .*stage_2_train_labels\.csv not found")


@pytest.mark.parametrize("rows, pattern", [
    ([["n00", "Maybe"]], r"stage_2_detailed_class_info\.csv line 2: class is 'Maybe'"),
    (None, r"stage_2_detailed_class_info\.csv lacks column\(s\) \['class'\]"),
])
def test_bad_rsna_detailed_class_info(rsna_src, tmp_path, capsys, rows, pattern):
    detail = rsna_src / "stage_2_detailed_class_info.csv"
    _write_table(detail, ["patientId", "class"] if rows else ["patientId", "klass"], rows or [["n00", "Normal"]])
    fails_everywhere("rsna", rsna_src, tmp_path / "out", capsys, match=pattern)


def _break_chexpert(labels, case):
    header, rows = _table(labels)
    col = header.index
    normal = next(i for i, r in enumerate(rows) if r[col("No Finding")] == "1.0" and r[col("Frontal/Lateral")]
                  == "Frontal")
    if case == "No Finding maybe":
        rows[4][col("No Finding")] = "maybe"
    elif case == "unknown value in a normal row":
        rows[normal][col("Edema")] = "2"
    elif case == "unknown view":
        rows[normal][col("Frontal/Lateral")] = "frontal"
    elif case == "missing column":
        keep = [i for i, c in enumerate(header) if c != "Path"]
        header, rows = [header[i] for i in keep], [[r[i] for i in keep] for r in rows]
    elif case == "zero-byte file":
        labels.write_bytes(b"")
        return
    elif case == "header only":
        rows.clear()
    elif case == "image not there":
        rows.append(["CheXpert-v1.0-small/train/patient99999/study1/view1_frontal.jpg",
                     *rows[normal][1:]])
    elif case == "empty Path":
        rows[normal][col("Path")] = ""
    elif case == "same image twice":
        rows.append(list(rows[normal]))
    _write_table(labels, header, rows)


BAD_CHEXPERT_CSVS = {
    "No Finding maybe": (ValueError, r"train\.csv line 6: No Finding is 'maybe'; expected one of"),
    "unknown value in a normal row": (ValueError, r"train\.csv line 2: Edema is '2'"),
    "unknown view": (ValueError, r"train\.csv line 2: Frontal/Lateral is 'frontal'; expected one of 'Frontal'"),
    "missing column": (ValueError, r"train\.csv lacks column\(s\) \['Path'\]"),
    "zero-byte file": (ValueError, r"train\.csv is empty \(no header row\)"),
    "header only": (ValueError, r"train\.csv holds no rows"),
    "image not there": (FileNotFoundError, r"CheXpert image .*patient99999/study1/view1_frontal\.jpg not found"),
    "empty Path": (ValueError, r"train\.csv line 2: Path is empty"),
    "same image twice": (ValueError, r"patient00001/study1/view1_frontal\.jpg is listed twice \(output name "),
}


@pytest.mark.parametrize("case", sorted(BAD_CHEXPERT_CSVS))
def test_bad_chexpert_labels(chexpert_src, tmp_path, capsys, case):
    exc, pattern = BAD_CHEXPERT_CSVS[case]
    _break_chexpert(chexpert_src / "train.csv", case)
    fails_everywhere("chexpert", chexpert_src, tmp_path / "out", capsys, match=pattern, exc=exc)


# ------------------------------------------------------------------ class folders and pictures

KERMANY = {  # dataset -> (fixture, root below the fixture's src, a normal folder, an abnormal folder)
    "zhanglab": ("zhanglab_src", "chest_xray", "NORMAL", "PNEUMONIA"),
    "oct2017": ("oct_src", "", "NORMAL", "DRUSEN"),
}


@pytest.fixture(params=sorted(KERMANY))
def kermany(request):
    """(dataset, src, root, normal class, abnormal class) for ZhangLab and OCT2017."""
    fixture, below, normal, abnormal = KERMANY[request.param]
    src = request.getfixturevalue(fixture)
    return request.param, src, src / below if below else src, normal, abnormal


def _empty(folder):
    for path in folder.iterdir():
        path.unlink()


@pytest.mark.parametrize("case", ["empty", "debris only", "missing", "a file", "no test folder", "no train folder"])
def test_bad_class_folders(kermany, tmp_path, capsys, case):
    dataset, src, root, normal, abnormal = kermany
    folder = root / "train" / normal
    if case == "empty":
        _empty(folder)
        pattern = rf"class folder .*train/{normal} holds no images \(\.jpeg, \.jpg, \.png\)"
    elif case == "debris only":
        _empty(folder)
        (folder / ".DS_Store").write_bytes(b"\0junk")
        (folder / "notes.txt").write_text("scanned in 2017")
        (folder / "sub.jpeg").mkdir()
        pattern = rf"class folder .*train/{normal} holds no images"
    elif case == "missing":
        folder = root / "test" / abnormal
        _empty(folder)
        folder.rmdir()
        pattern = rf"class folder .*test/{abnormal} not found"
    elif case == "a file":
        _empty(folder)
        folder.rmdir()
        folder.write_bytes(b"not a folder")
        pattern = rf"class folder .*train/{normal} is not a folder"
    elif case == "no test folder":
        for sub in (root / "test").iterdir():
            _empty(sub)
            sub.rmdir()
        (root / "test").rmdir()
        pattern = r"official test folder .*test not found"
    else:
        (root / "train").rename(root / "training")
        pattern = r"no .*train/ folder in "
    fails_everywhere(dataset, src, tmp_path / "out", capsys, match=pattern, exc=FileNotFoundError)


BAD_PICTURES = {  # case -> (bytes from the good JPEG's bytes, message fragment)
    "garbage bytes": (lambda good: b"\x00\x01 definitely not a JPEG \xfe" * 10, "is not an image PIL can read"),
    "JPEG header then garbage": (lambda good: b"\xff\xd8\xff\xe0 garbage", ""),
    "zero-size": (lambda good: b"", "is empty (0 bytes)"),
    "truncated": (lambda good: good[: len(good) // 3], "truncated"),
    "DICOM bytes": (lambda good: None, "is not an image PIL can read"),
}


@pytest.mark.parametrize("case", sorted(BAD_PICTURES))
def test_unreadable_picture_fails_naming_it(kermany, tmp_path, capsys, case):
    dataset, src, root, normal, _ = kermany
    bad = sorted((root / "test" / normal).glob("*.jpeg"))[-1]
    make, fragment = BAD_PICTURES[case]
    data = make(bad.read_bytes())
    if data is None:
        write_dicom(bad, noise((16, 16), 8))
    else:
        bad.write_bytes(data)
    message = fails_everywhere(dataset, src, tmp_path / "out", capsys, match=bad.name, exc=ImageFileError)
    assert message.startswith(str(bad)) and fragment in message, message


def test_empty_optional_val_folder_is_fine(zhanglab_src, tmp_path):
    _empty(zhanglab_src / "chest_xray" / "val" / "NORMAL")
    manifest = convert_zhanglab(zhanglab_src, tmp_path / "out", size=16, valid_fraction=0.2)
    check_common(tmp_path / "out", manifest)


# ------------------------------------------------------------------ nothing half-written looks complete


@pytest.fixture
def write_counter(monkeypatch):
    """Counts write_png calls in the converter; `fail_after` makes the n-th one raise KeyboardInterrupt."""
    state = {"n": 0, "fail_after": None}
    real = convert_module.write_png

    def counting(path, img, bits=8):
        state["n"] += 1
        if state["fail_after"] is not None and state["n"] > state["fail_after"]:
            raise KeyboardInterrupt("simulated Ctrl-C")
        real(path, img, bits)

    monkeypatch.setattr(convert_module, "write_png", counting)
    return state


def test_failure_midway_leaves_nothing_and_the_fixed_input_reruns(zhanglab_src, tmp_path, capsys, write_counter):
    bad = zhanglab_src / "chest_xray" / "val" / "NORMAL" / "IM-0000-0002.jpeg"  # read late: items go by name
    good = bad.read_bytes()
    bad.write_bytes(b"GIF89a but not really")
    out = tmp_path / "out"
    with pytest.raises(ImageFileError, match="IM-0000-0002.jpeg"):
        convert_zhanglab(zhanglab_src, out, size=16, valid_fraction=0.2)
    assert write_counter["n"] > 10  # it really failed midway, after writing most images
    assert_no_dataset(out)
    bad.write_bytes(good)
    assert main(["convert", "zhanglab", "--src", str(zhanglab_src), "--out", str(out), "--size", "16"]) == 0
    manifest = json.loads((out / "convert.json").read_text())
    check_common(out, manifest)
    assert not staging_folder(out).exists()


def test_interrupted_conversion_leaves_nothing(rsna_src, tmp_path, write_counter):
    write_counter["fail_after"] = 5
    with pytest.raises(KeyboardInterrupt):
        convert_rsna(rsna_src, tmp_path / "out", size=16)
    assert_no_dataset(tmp_path / "out")


def test_failed_overwrite_keeps_the_previous_dataset(rsna_src, tmp_path, capsys):
    out = tmp_path / "out"
    manifest = convert_rsna(rsna_src, out, size=16)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (rsna_src / "stage_2_train_images" / "p4.dcm").write_bytes(b"")
    argv = ["convert", "rsna", "--src", str(rsna_src), "--out", str(out), "--size", "16", "--overwrite"]
    assert main(argv) == 2
    assert "p4.dcm: empty file" in capsys.readouterr().err
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and json.loads((out / "convert.json").read_text()) == manifest
    assert not staging_folder(out).exists()


def test_staging_left_by_a_killed_run_is_cleared(rsna_src, tmp_path):
    out = tmp_path / "out"
    staging = staging_folder(out)
    (staging / "train" / "good").mkdir(parents=True)
    (staging / "train" / "good" / "stale.png").write_bytes(b"half")
    manifest = convert_rsna(rsna_src, out, size=16)
    assert not staging.exists() and not (out / "train" / "good" / "stale.png").exists()
    check_common(out, manifest)


def test_folder_without_convert_json_is_refused_as_unfinished(rsna_src, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "train" / "good").mkdir(parents=True)
    (out / "train" / "good" / "a.png").write_bytes(b"half")
    assert main(["convert", "rsna", "--src", str(rsna_src), "--out", str(out), "--size", "16"]) == 2
    err = capsys.readouterr().err
    assert "no convert.json" in err and str(out / "train") in err and err.count("\n") == 1
    manifest = convert_rsna(rsna_src, out, size=16, overwrite=True)
    check_common(out, manifest)
    assert not (out / "train" / "good" / "a.png").exists()


def test_out_with_other_files_gets_convert_json_last(rsna_src, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.txt").write_text("mine")
    moved = []
    real_replace = convert_module.os.replace

    def recording(a, b):
        moved.append(str(b))
        real_replace(a, b)

    monkeypatch.setattr(convert_module.os, "replace", recording)
    manifest = convert_rsna(rsna_src, out, size=16)
    monkeypatch.undo()
    assert moved[-1] == str(out / "convert.json") and len(moved) > 1
    assert (out / "README.txt").read_text() == "mine"
    check_common(out, manifest)


def test_out_that_is_a_file_is_refused(rsna_src, tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a folder")
    assert main(["convert", "rsna", "--src", str(rsna_src), "--out", str(out), "--size", "16"]) == 2
    assert capsys.readouterr().err == f"error: {out} exists and is not a folder\n"


# ------------------------------------------------------------------ skip_bad


def test_skip_bad_leaves_unreadable_files_out_and_lists_them(zhanglab_src, tmp_path):
    root = zhanglab_src / "chest_xray"
    garbage = root / "test" / "NORMAL" / "IM-0000-0001.jpeg"
    garbage.write_bytes(b"not a picture")
    empty = root / "train" / "PNEUMONIA" / "person0_virus_0.jpeg"
    empty.write_bytes(b"")
    manifest = convert_zhanglab(zhanglab_src, tmp_path / "out", size=16, valid_fraction=0.2, skip_bad=True)
    assert set(manifest["skipped"]) <= {"test/NORMAL/IM-0000-0001.jpeg", "train/PNEUMONIA/person0_virus_0.jpeg"}
    assert "test/NORMAL/IM-0000-0001.jpeg" in manifest["skipped"]  # official test: always assigned, always read
    assert manifest["skipped"]["test/NORMAL/IM-0000-0001.jpeg"].startswith(f"{garbage} is not an image")
    assert manifest["counts"]["test"] == {"good": 2, "pneumonia": 4}
    assert manifest["args"]["skip_bad"] is True
    check_common(tmp_path / "out", manifest)


def test_skip_bad_skips_bad_dicoms_but_not_bad_labels(rsna_src, tmp_path):
    (rsna_src / "stage_2_train_images" / "p2.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 10)
    manifest = convert_rsna(rsna_src, tmp_path / "out", size=16, skip_bad=True)
    assert list(manifest["skipped"]) == ["stage_2_train_images/p2.dcm"]
    assert "truncated" in manifest["skipped"]["stage_2_train_images/p2.dcm"]
    assert "stage_2_train_images/p2.dcm" not in manifest["files"].values()
    check_common(tmp_path / "out", manifest)
    _break_rsna(rsna_src / "stage_2_train_labels.csv", "Target 2")
    with pytest.raises(ValueError, match="Target is '2'"):
        convert_rsna(rsna_src, tmp_path / "again", size=16, skip_bad=True)


def test_skip_bad_with_nothing_readable_fails(oct_src, tmp_path):
    for path in oct_src.rglob("*.jpeg"):
        path.write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"none of the \d+ selected images of .* could be read; first: .*\.jpeg"):
        CONVERTERS["oct2017"](oct_src, tmp_path / "out", size=16, skip_bad=True)
    assert_no_dataset(tmp_path / "out")


def test_without_skip_bad_the_manifest_lists_nothing_skipped(oct_src, tmp_path):
    manifest = CONVERTERS["oct2017"](oct_src, tmp_path / "out", size=16, valid_fraction=0.2)
    assert manifest["skipped"] == {} and manifest["args"]["skip_bad"] is False

"""Real data arrives messy: every converter failure is one line that names the file and the problem, the CLI
exits 2, and nothing half-written is left that a later step could take for a converted dataset.

Fixtures (tiny datasets in each source's own format) come from test_convert.py.
"""
import csv

import numpy as np
import pytest
from test_convert import RSNA_HEADER, noise, save_jpeg, write_dicom

from hqanogan_core.cli import main
from hqanogan_core.data.convert import convert_chexpert, convert_rsna, convert_zhanglab
from hqanogan_core.data.folder import ImageFileError

pydicom = pytest.importorskip("pydicom")
from test_convert import chexpert_src, rsna_src, zhanglab_src  # noqa: E402,F401  (fixtures)


def assert_nothing_left(out):
    """No output that looks like a dataset, and no staging folder beside it."""
    assert not (out / "convert.json").exists()
    assert not any((out / s).exists() for s in ("train", "valid", "test", "ground_truth"))
    assert not (out.parent / f".{out.name}.converting").exists()


def cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def rsna_cli(src, out):
    return ["convert", "rsna", "--src", str(src), "--out", str(out), "--size", "16"]


# ------------------------------------------------------------------ DICOM files


def _bad_dicom(path, how):
    good = path.read_bytes()
    if how.startswith("truncated"):
        path.write_bytes(good[: int(how.split("@")[1]) if "@" in how else len(good) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "not dicom":
        path.write_bytes(b"this is a PNG, honestly" * 20)
    elif how == "no pixel data":
        ds = pydicom.dcmread(path)
        del ds.PixelData
        ds.save_as(path, enforce_file_format=True)
    elif how in ("RGB", "PALETTE COLOR", "YBR_FULL"):
        pixels = noise((64, 64), 1)
        if how == "RGB" or how == "YBR_FULL":
            ds = pydicom.dcmread(path)
            ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
            ds.PhotometricInterpretation = how
            ds.PixelData = np.repeat(pixels[..., None], 3, axis=2).astype(np.uint8).tobytes()
            ds.save_as(path, enforce_file_format=True)
        else:
            write_dicom(path, pixels, photometric="PALETTE COLOR")


BAD_DICOMS = ["truncated", "truncated@10", "truncated@140", "truncated@400", "empty", "not dicom", "no pixel data",
              "RGB", "PALETTE COLOR", "YBR_FULL"]


@pytest.mark.parametrize("how", BAD_DICOMS)
def test_bad_dicom_is_named_and_nothing_is_left(rsna_src, tmp_path, capsys, how):
    bad = rsna_src / "stage_2_train_images" / "p2.dcm"
    _bad_dicom(bad, how)
    out = tmp_path / "out"
    with pytest.raises(ImageFileError, match="p2.dcm"):
        convert_rsna(rsna_src, out, size=16)
    assert_nothing_left(out)
    err = cli_error(capsys, rsna_cli(rsna_src, out))
    assert "p2.dcm" in err
    if how in ("RGB", "PALETTE COLOR", "YBR_FULL"):
        assert "PhotometricInterpretation" in err or "shape" in err
    assert_nothing_left(out)


def test_after_a_failure_the_fixed_input_converts_without_overwrite(rsna_src, tmp_path):
    dicom = rsna_src / "stage_2_train_images" / "p2.dcm"
    good = dicom.read_bytes()
    dicom.write_bytes(good[:200])
    out = tmp_path / "out"
    with pytest.raises(ImageFileError):
        convert_rsna(rsna_src, out, size=16)
    dicom.write_bytes(good)
    manifest = convert_rsna(rsna_src, out, size=16)      # no overwrite needed: nothing was left
    assert (out / "convert.json").is_file() and sum(manifest["counts"]["test"].values()) > 0


def test_monochrome1_is_inverted_not_rejected(rsna_src, tmp_path):
    """p3 is stored MONOCHROME1 (bone dark): it converts, with the finding bright as in the MONOCHROME2 files."""
    manifest = convert_rsna(rsna_src, tmp_path / "out", size=64)
    rel = next(k for k, v in manifest["files"].items() if v.endswith("p3.dcm"))
    from hqanogan_core.data.folder import read_grayscale

    img = read_grayscale(tmp_path / "out" / rel)
    assert img[16:32, 16:32].mean() > img.mean() + 0.2       # the box was drawn at 255 before inversion


# ------------------------------------------------------------------ label files


def _rewrite_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))[1:]


@pytest.mark.parametrize("case, message", [
    ("missing column", r"lacks column\(s\) \['Target'\]"),
    ("unknown label", r"line \d+: Target is '2'"),
    ("not a number", r"line \d+: Target is 'yes'"),
    ("empty", r"holds no rows"),
    ("bad box", r"line \d+: box .* is not four numbers"),
    ("missing image", r"RSNA image .*ghost\.dcm not found"),
])
def test_bad_rsna_csv(rsna_src, tmp_path, capsys, case, message):
    labels = rsna_src / "stage_2_train_labels.csv"
    rows = _rows(labels)
    if case == "missing column":
        _rewrite_csv(labels, RSNA_HEADER[:-1], [r[:-1] for r in rows])
    elif case == "unknown label":
        _rewrite_csv(labels, RSNA_HEADER, rows[:3] + [[*rows[3][:-1], "2"]] + rows[4:])
    elif case == "not a number":
        _rewrite_csv(labels, RSNA_HEADER, [[*rows[0][:-1], "yes"]] + rows[1:])
    elif case == "empty":
        _rewrite_csv(labels, RSNA_HEADER, [])
    elif case == "bad box":
        bad = next(i for i, r in enumerate(rows) if r[-1] == "1")
        rows[bad][1] = "left"
        _rewrite_csv(labels, RSNA_HEADER, rows)
    else:
        _rewrite_csv(labels, RSNA_HEADER, rows + [["ghost", "", "", "", "", "0"]])
    out = tmp_path / "out"
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        convert_rsna(rsna_src, out, size=16)
    err = cli_error(capsys, rsna_cli(rsna_src, out))
    assert "stage_2_train_labels.csv" in err or "ghost.dcm" in err
    assert_nothing_left(out)


def test_unknown_chexpert_label_names_line_and_column(chexpert_src, tmp_path, capsys):
    labels = chexpert_src / "train.csv"
    with open(labels, newline="") as handle:
        table = list(csv.reader(handle))
    header, rows = table[0], table[1:]
    rows[4][header.index("No Finding")] = "maybe"
    _rewrite_csv(labels, header, rows)
    with pytest.raises(ValueError, match=r"train\.csv line 6: No Finding is 'maybe'"):
        convert_chexpert(chexpert_src, tmp_path / "out", size=16)
    err = cli_error(capsys, ["convert", "chexpert", "--src", str(chexpert_src), "--out", str(tmp_path / "out")])
    assert "line 6" in err
    assert_nothing_left(tmp_path / "out")


# ------------------------------------------------------------------ class folders


def test_empty_class_folder_is_named(zhanglab_src, tmp_path, capsys):
    folder = zhanglab_src / "chest_xray" / "test" / "PNEUMONIA"
    for f in folder.iterdir():
        f.unlink()
    with pytest.raises(FileNotFoundError, match=r"test/PNEUMONIA holds no images"):
        convert_zhanglab(zhanglab_src, tmp_path / "out", size=16)
    err = cli_error(capsys, ["convert", "zhanglab", "--src", str(zhanglab_src), "--out", str(tmp_path / "out")])
    assert "PNEUMONIA" in err
    assert_nothing_left(tmp_path / "out")


def test_unreadable_picture_is_named_and_nothing_is_left(zhanglab_src, tmp_path, capsys):
    bad = zhanglab_src / "chest_xray" / "test" / "NORMAL" / "IM-0000-0001.jpeg"
    bad.write_bytes(b"\xff\xd8\xff garbage, not a JPEG")
    out = tmp_path / "out"
    with pytest.raises(ImageFileError, match="IM-0000-0001.jpeg"):
        convert_zhanglab(zhanglab_src, out, size=16)
    assert_nothing_left(out)
    assert "IM-0000-0001.jpeg" in cli_error(capsys, ["convert", "zhanglab", "--src", str(zhanglab_src),
                                                     "--out", str(out)])


def test_truncated_jpeg_is_named(zhanglab_src, tmp_path):
    path = zhanglab_src / "chest_xray" / "train" / "NORMAL" / "IM-0001-0001.jpeg"
    save_jpeg(path, noise((40, 52), 7))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ImageFileError, match="IM-0001-0001.jpeg"):
        convert_zhanglab(zhanglab_src, tmp_path / "out", size=16)
    assert_nothing_left(tmp_path / "out")

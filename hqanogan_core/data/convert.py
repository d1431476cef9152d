"""Convert public chest X-ray / OCT datasets from their own files to the MVTec layout.

Every converter
  * reads the dataset exactly as distributed (see data/README.md),
  * centre-crops each image to a square, resizes it to ``size`` and optionally
    equalises it (``equalize`` = "none" | "he" | "bbhe"),
  * writes grayscale PNG (8-bit; 16-bit when the source has more than 8 bits),
  * splits by *patient* (no patient in two splits), seeded and stratified:
      - datasets without an official test split (RSNA, CheXpert): patients with
        normal images go to train / valid / test with fractions
        (1 - valid - test, valid, test); patients with only abnormal images go
        to valid / test in the ratio valid : test, so valid and test share the
        same class mix;
      - datasets with an official test split (ZhangLab, OCT2017): the official
        test is kept as is; the official train (plus any official val) gives
        train normals, and ``valid_fraction`` of its normal and of its abnormal
        patients becomes valid/; the rest of the train abnormals is unused.
    train/ only ever holds normals; abnormal images of a train patient are dropped.
  * writes ``convert.json``: source, arguments, counts per split and type,
    exclusions, skipped files, and the source file of every output file.

Bad input fails fast, with one line naming the file (and CSV line) and the problem
(ValueError, FileNotFoundError; ImageFileError is a ValueError): a label CSV that is
missing, empty, not UTF-8, short of a column or of fields in a row, holds a label the
dataset does not define or names an image that is not there; a class folder that is
missing or holds no image; an image that is not one complete grayscale picture or
DICOM (empty, truncated, not DICOM, no pixel data, colour). With ``skip_bad``,
unreadable image files -- and only those -- are left out and listed under
"skipped" in convert.json instead.

Nothing half-written looks complete: the dataset is written to a hidden staging
folder beside ``out`` (``.<name>.converting``) and moved into place only when it is
complete, convert.json -- the completion record -- last. A failed run removes the
staging folder and leaves no ``out`` (with ``overwrite``: the previous dataset,
untouched), so it can simply be rerun; a killed run's staging folder is removed by
the next run. A folder with train/ etc. but no convert.json is refused as unfinished.

``limit`` keeps at most that many images per class (per official split where
there is one), chosen by the seed before splitting -- for quick runs.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import struct
import warnings
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from hqanogan_core.data.folder import ImageFileError, read_grayscale, stratified_assign
from hqanogan_core.data.preprocess import Preprocess

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
OUTPUT_ENTRIES = ("train", "valid", "test", "ground_truth", "valid_ground_truth", "convert.json")
CHEXPERT_NO_FINDING = "No Finding"
# the 12 pathology columns of CheXpert; "Support Devices" is not a pathology
# (CheXpert's own "No Finding" label ignores it), so it never makes an image abnormal.
CHEXPERT_PATHOLOGIES = (
    "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture",
)
RSNA_NOT_NORMAL = "No Lung Opacity / Not Normal"


@dataclass
class Item:
    """One source image to convert."""

    source: Path
    name: str  # output file stem, unique within the dataset
    anomaly_type: str  # "good" or the anomaly type
    group: str  # patient id: the unit of splitting
    official: str | None = None  # "train"/"test" where the dataset has an official split
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # (x, y, w, h) px


# ------------------------------------------------------------------ reading

DICOM_HEADER_BYTES = 132  # 128-byte preamble + b"DICM"
UNDEFINED_LENGTH = 0xFFFFFFFF


def _one_line(text: object, limit: int = 300) -> str:
    """A third-party message squeezed onto one line (the CLI prints `error: <message>`)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _cause(err: BaseException) -> str:
    return _one_line(f"{type(err).__name__}: {err}")


def read_dicom(path: str | Path) -> tuple[np.ndarray, int]:
    """DICOM -> (float32 [H, W] in [0, 1], bits stored).

    Applies RescaleSlope/Intercept, windows to the image's min/max and inverts
    MONOCHROME1 so that bone is always bright. Any file that is not one complete
    grayscale DICOM image (empty, not DICOM, truncated, no pixel data, colour)
    raises ImageFileError "<path>: <problem>", on one line.
    """
    path = Path(path)
    size = _check_dicom_preamble(path)
    try:
        return _dicom_pixels(_parse_dicom(path, size), path)
    except ImageFileError:
        raise
    except Exception as err:  # a corrupt element value met while converting it
        raise ImageFileError(f"{path}: corrupt DICOM ({_cause(err)})") from err


def _check_dicom_preamble(path: Path) -> int:
    """The file's size; rejects missing, empty, short and non-Part-10 files before pydicom sees them."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(DICOM_HEADER_BYTES)
    except OSError as err:
        raise ImageFileError(f"{path}: cannot be read ({err.strerror or err})") from err
    if size == 0:
        raise ImageFileError(f"{path}: empty file (0 bytes), not a DICOM image")
    if size < DICOM_HEADER_BYTES:
        raise ImageFileError(f"{path}: truncated DICOM or not DICOM at all ({size} bytes, fewer than the "
                             f"{DICOM_HEADER_BYTES} of the preamble and 'DICM' marker)")
    if head[128:132] != b"DICM":
        raise ImageFileError(f"{path}: not a DICOM file (no 'DICM' marker at byte 128)")
    return size


def _parse_dicom(path: Path, size: int):
    """pydicom.dcmread, with its silent partial reads of a cut file turned into "truncated DICOM" errors."""
    import pydicom  # only the RSNA converter needs it

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path)
        except (EOFError, struct.error) as err:  # a read came back short: the file ends too early
            raise ImageFileError(f"{path}: truncated DICOM ({_cause(err)})") from err
        except Exception as err:
            raise ImageFileError(f"{path}: truncated or corrupt DICOM ({_cause(err)})") from err
    eof = [str(w.message) for w in caught if "end of file" in str(w.message).lower()]
    if eof:
        raise ImageFileError(f"{path}: truncated DICOM ({_one_line(eof[0], 200)})")
    meta_length = ds.file_meta.get("FileMetaInformationGroupLength")
    if isinstance(meta_length, int) and size < DICOM_HEADER_BYTES + 12 + meta_length:
        raise ImageFileError(f"{path}: truncated DICOM (the file ends at byte {size}, inside its file meta header)")
    if "TransferSyntaxUID" not in ds.file_meta:
        raise ImageFileError(f"{path}: truncated or corrupt DICOM header (no Transfer Syntax UID in the file meta)")
    for dataset in (ds.file_meta, ds):
        _check_elements_complete(dataset, path, size)
    return ds


def _check_elements_complete(ds, path: Path, size: int) -> None:
    """Every not-yet-decoded element holds all the bytes its length promises, and the file does not end
    inside an element header (pydicom stops quietly in both cases)."""
    from pydicom.datadict import keyword_for_tag
    from pydicom.dataelem import RawDataElement

    end = 0
    for tag in ds.keys():
        elem = ds.get_item(tag)  # raw (undecoded) unless something read it already
        if not isinstance(elem, RawDataElement):
            continue
        got = len(elem.value or b"")
        if elem.length == UNDEFINED_LENGTH:  # encapsulated pixel data: fragments, then an 8-byte delimiter
            end = max(end, elem.value_tell + got + 8)
        elif got < elem.length:
            name = f"{tag} {keyword_for_tag(tag)}".strip()
            raise ImageFileError(f"{path}: truncated DICOM (element {name} holds {got} of its {elem.length} bytes; "
                                 f"the file ends at byte {size})")
        else:
            end = max(end, elem.value_tell + elem.length)
    if end > size:
        raise ImageFileError(f"{path}: truncated DICOM (the file ends at byte {size}, inside an element "
                             f"that ends at byte {end})")
    if 0 < size - end < 8:
        raise ImageFileError(f"{path}: truncated DICOM (the file ends at byte {size}, inside the 8-byte header "
                             f"of the element after byte {end})")


def _dicom_pixels(ds, path: Path) -> tuple[np.ndarray, int]:
    """The decoded, rescaled, windowed grayscale frame of a complete DICOM dataset."""
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageFileError(f"{path}: DICOM holds no pixel data (no PixelData element: not an image, or cut short)")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageFileError(f"{path}: PhotometricInterpretation {photometric!r} is not a grayscale radiograph "
                             f"(expected MONOCHROME1 or MONOCHROME2)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pixels = ds.pixel_array.astype(np.float64)
        except Exception as err:
            raise ImageFileError(f"{path}: DICOM pixel data cannot be decoded ({_cause(err)})") from err
    if pixels.ndim != 2 or pixels.size == 0:
        raise ImageFileError(f"{path}: pixel array shape {pixels.shape}; expected one grayscale frame [H, W]")
    slope = _dicom_number(ds, "RescaleSlope", 1.0, path) or 1.0
    pixels = pixels * slope + _dicom_number(ds, "RescaleIntercept", 0.0, path)
    if not np.all(np.isfinite(pixels)):
        raise ImageFileError(f"{path}: pixel data holds NaN or infinite values")
    low, high = pixels.min(), pixels.max()
    img = (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)
    if photometric == "MONOCHROME1":
        img = 1.0 - img
    return img.astype(np.float32), 16 if _dicom_number(ds, "BitsStored", 8, path) > 8 else 8


def _dicom_number(ds, keyword: str, default: float, path: Path) -> float:
    """A numeric DICOM attribute (``default`` when absent or blank); anything else names file and attribute."""
    value = ds.get(keyword, None)
    if value is None or str(value).strip() == "":
        return float(default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ImageFileError(f"{path}: {keyword} {_one_line(repr(value), 80)} is not a number") from None
    if not np.isfinite(number):
        raise ImageFileError(f"{path}: {keyword} is {number}")
    return number


def _read_picture(path: Path) -> tuple[np.ndarray, int]:
    """JPEG/PNG -> (float32 [H, W] in [0, 1], bits). Colour files (a few ZhangLab
    JPEGs are stored as RGB) are converted to luminance quietly. Unreadable
    files raise ImageFileError naming the path, on one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            img = read_grayscale(path)
            with Image.open(path) as im:
                bits = 16 if im.mode.startswith("I") else 8
        except ImageFileError as err:
            raise ImageFileError(_one_line(err, 400)) from err
    return img, bits


def write_png(path: Path, img: np.ndarray, bits: int = 8) -> None:
    """float [H, W] in [0, 1] -> 8- or 16-bit grayscale PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.clip(img, 0.0, 1.0)
    if bits == 16:
        Image.fromarray(np.rint(img * 65535).astype(np.uint16)).save(path)
    else:
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(path)


def boxes_to_mask(shape: tuple[int, int], boxes) -> np.ndarray:
    """bool [H, W], True where a pixel centre lies inside any (x, y, w, h) box."""
    mask = np.zeros(shape, dtype=bool)
    for x, y, w, h in boxes:
        top, bottom = int(np.clip(round(y), 0, shape[0])), int(np.clip(round(y + h), 0, shape[0]))
        left, right = int(np.clip(round(x), 0, shape[1])), int(np.clip(round(x + w), 0, shape[1]))
        mask[top:bottom, left:right] = True
    return mask


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """The rows of a label CSV as (line number, row). Missing file or columns, an empty file, text that is not
    UTF-8, malformed CSV and rows with the wrong number of fields all raise, naming the file (and line)."""
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} not found")
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames
            if not header:
                raise ValueError(f"{path} is empty (no header row)")
            missing = [c for c in required if c not in header]
            if missing:
                raise ValueError(f"{path} lacks column(s) {missing}; header is {_one_line(header, 200)}")
            for row in reader:
                extra, short = row.get(None) or [], sum(v is None for v in row.values())
                if extra or short:
                    raise ValueError(f"{path} line {reader.line_num}: {len(header) + len(extra) - short} fields "
                                     f"where the header has {len(header)}")
                rows.append((reader.line_num, row))
        except UnicodeDecodeError as err:
            raise ValueError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
        except csv.Error as err:
            raise ValueError(f"{path} line {reader.line_num + 1}: malformed CSV ({_one_line(err)})") from None
    return rows


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder {path} not found")
    return path


# ------------------------------------------------------------------ splitting


def _apply_limit(items: list[Item], limit: int | None, seed: int) -> list[Item]:
    """At most ``limit`` items per (official split, type), chosen by the seed."""
    if limit is None:
        return items
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    classes = [f"{it.official}/{it.anomaly_type}" for it in items]
    keep = []
    for cls in sorted(set(classes)):
        members = [i for i, c in enumerate(classes) if c == cls]
        if len(members) > limit:
            rng = np.random.default_rng([seed, zlib.crc32(cls.encode("utf-8"))])
            members = sorted(rng.choice(members, size=limit, replace=False).tolist())
        keep += members
    return [items[i] for i in sorted(keep)]


def assign_splits(items: list[Item], seed: int, valid_fraction: float,
                  test_fraction: float) -> list[str | None]:
    """Split per item ("train" / "valid" / "test" or None = unused), by patient group.

    See the module docstring for the rules. Deterministic for a given seed.
    """
    official = any(it.official is not None for it in items)
    test = 0.0 if official else test_fraction
    if valid_fraction < 0 or test < 0 or valid_fraction + test >= 1:
        raise ValueError(f"need valid_fraction >= 0, test_fraction >= 0 and their sum < 1, "
                         f"got {valid_fraction}, {test}")

    pool: dict[str, list[int]] = defaultdict(list)  # patient -> item indices
    result: list[str | None] = [None] * len(items)
    for i, it in enumerate(items):
        if it.official == "test":
            result[i] = "test"
        else:
            pool[it.group].append(i)
    groups = sorted(pool)
    strata = ["+".join(sorted({items[i].anomaly_type for i in pool[g]})) for g in groups]

    def fractions(stratum: str) -> tuple[float, float, float]:  # (train, valid, test)
        if "good" in stratum.split("+"):
            return (1.0 - valid_fraction - test, valid_fraction, test)
        if test > 0:
            return (0.0, valid_fraction / (valid_fraction + test), test / (valid_fraction + test))
        return (1.0 - valid_fraction, valid_fraction, 0.0)  # official test: leftovers unused

    parts = stratified_assign(strata, fractions, seed)
    for group, stratum, part in zip(groups, strata, parts):
        split = ("train", "valid", "test")[part]
        for i in pool[group]:
            if split == "train" and (items[i].anomaly_type != "good" or "good" not in stratum):
                continue  # train holds normals only
            result[i] = split
    return result


# ------------------------------------------------------------------ writing


def staging_folder(out: Path) -> Path:
    """Where a conversion to ``out`` is written until it is complete: a hidden sibling of ``out``."""
    out = Path(os.path.abspath(out))  # "." and "a/.." have a usable name and parent this way
    return out.parent / f".{out.name}.converting"


def _refuse_existing(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an ``out`` that already holds a dataset (unless ``overwrite``) or is a file."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    existing = [out / name for name in OUTPUT_ENTRIES if (out / name).exists()]
    if not existing or overwrite:
        return
    if not (out / "convert.json").exists():
        raise FileExistsError(f"{existing[0]} already exists but {out} has no convert.json (an unfinished "
                              f"conversion or another dataset); choose an empty --out or pass overwrite=True")
    raise FileExistsError(f"{existing[0]} already exists; choose an empty --out or pass overwrite=True")


def _publish(staging: Path, out: Path) -> None:
    """Put the finished conversion in ``staging`` at ``out``.

    An older conversion there is removed first, its convert.json before anything else. When ``out`` is then
    absent or empty, the staging folder is renamed to it in one step; otherwise (``out`` holds other files)
    the entries are moved one by one, convert.json last. Either way a folder with convert.json is complete.
    """
    for name in sorted(OUTPUT_ENTRIES, key=lambda n: n != "convert.json"):  # convert.json first
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    if out.is_dir() and not any(out.iterdir()):
        try:
            out.rmdir()
        except OSError:  # e.g. the current directory: fill it entry by entry instead
            pass
    if not out.exists():
        os.replace(staging, out)
        return
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == "convert.json"):  # convert.json last
        os.replace(entry, out / entry.name)
    staging.rmdir()


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


def write_dataset(items: list[Item], out: str | Path, *, dataset: str, src: Path, args: dict,
                  reader: Callable[[Path], tuple[np.ndarray, int]], excluded: dict[str, int],
                  seed: int, valid_fraction: float, test_fraction: float,
                  limit: int | None, equalize: str, size: int, overwrite: bool = False,
                  log: Callable[[str], None] | None = None, skip_bad: bool = False) -> dict:
    """Split ``items``, convert and write them to ``out`` in the MVTec layout; return the manifest.

    The dataset is written to ``staging_folder(out)`` and moved to ``out`` only when complete, so a
    failed or interrupted conversion leaves no ``out`` (or the previous one, untouched); convert.json,
    the completion record, is always the last entry to arrive. An image file that cannot be read stops
    the conversion (ImageFileError naming it), unless ``skip_bad``: then it is left out and listed, with
    the reason, under "skipped" in convert.json. Splits are assigned before reading, so skipping does not
    move any other image to another split.
    """
    out = Path(out)
    pre = Preprocess(crop=True, equalize=equalize, size=int(size))  # validates equalize/size
    items = _apply_limit(sorted(items, key=lambda it: it.name), limit, seed)
    if not items:
        raise ValueError(f"no usable images found in {src}")
    by_name: dict[str, list[Path]] = defaultdict(list)
    for it in items:
        by_name[it.name].append(it.source)
    clash = next(((n, s) for n, s in by_name.items() if len(s) > 1), None)
    if clash:
        name, (first, second) = clash[0], clash[1][:2]
        if first == second:
            raise ValueError(f"{first} is listed twice (output name {name!r})")
        raise ValueError(f"{first} and {second} map to the same output name {name!r}")
    splits = assign_splits(items, seed, valid_fraction, test_fraction)
    _refuse_existing(out, overwrite)                       # before any work is done
    staging = staging_folder(out)
    staging.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)             # left by a conversion that was killed
    try:
        manifest = _write_all(items, splits, staging, dataset, src, args, reader, excluded, seed, valid_fraction,
                              test_fraction, limit, equalize, size, pre, log, skip_bad)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)         # nothing half-written is left behind
        raise
    if log:
        log(f"{dataset}: wrote {sum(sum(c.values()) for c in manifest['counts'].values())} images to {out}")
    return manifest


def _write_all(items, splits, out: Path, dataset, src, args, reader, excluded, seed, valid_fraction, test_fraction,
               limit, equalize, size, pre, log, skip_bad) -> dict:
    """Convert every assigned item into `out` (a staging folder) and write convert.json there."""
    out.mkdir(parents=True)

    counts: dict[str, Counter] = defaultdict(Counter)
    mask_counts: dict[str, Counter] = defaultdict(Counter)
    files: dict[str, str] = {}
    skipped: dict[str, str] = {}  # source -> why it could not be read (skip_bad only)
    todo = [(it, sp) for it, sp in zip(items, splits) if sp is not None]
    unused = len(items) - len(todo)
    for k, (item, split) in enumerate(todo):
        if log and k % 500 == 0:
            log(f"{dataset}: {k}/{len(todo)} images written")
        try:
            img, bits = reader(item.source)  # [H, W] in [0, 1]
        except ImageFileError as err:
            if not skip_bad:
                raise
            skipped[_relative(item.source, src)] = str(err)
            continue
        rel = f"{split}/{item.anomaly_type}/{item.name}.png"
        write_png(out / rel, pre(img), bits)  # [size, size]
        files[rel] = _relative(item.source, src)
        counts[split][item.anomaly_type] += 1
        if item.boxes and split != "train":
            mask_dir = "ground_truth" if split == "test" else "valid_ground_truth"
            mask = pre.mask(boxes_to_mask(img.shape, item.boxes))  # bool [size, size]
            write_png(out / mask_dir / item.anomaly_type / f"{item.name}_mask.png", mask.astype(np.float32))
            mask_counts[split][item.anomaly_type] += 1

    if skipped and not files:
        raise ValueError(f"none of the {len(todo)} selected images of {src} could be read; "
                         f"first: {next(iter(skipped.values()))}")
    manifest = {
        "dataset": dataset,
        "source": str(Path(src).resolve()),
        "format": "MVTec AD layout, grayscale PNG",
        "args": {"size": int(size), "seed": seed, "valid_fraction": valid_fraction,
                 "test_fraction": test_fraction, "limit": limit, "equalize": equalize, "skip_bad": skip_bad,
                 **args},
        "counts": {sp: dict(sorted(counts[sp].items())) for sp in ("train", "valid", "test") if counts[sp]},
        "masks": {sp: dict(sorted(c.items())) for sp, c in mask_counts.items()},
        "excluded": {**excluded, "not assigned (abnormal images from the train pool)": unused},
        "skipped": dict(sorted(skipped.items())),
        "files": dict(sorted(files.items())),
    }
    (out / "convert.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


# ------------------------------------------------------------------ RSNA


RSNA_TARGETS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
RSNA_CLASSES = ("Lung Opacity", "Normal", RSNA_NOT_NORMAL)  # stage_2_detailed_class_info.csv


def _rsna_box(labels_csv: Path, line: int, row: dict) -> tuple[float, float, float, float]:
    """(x, y, w, h) of one Target 1 row: four finite numbers, positive width and height."""
    cells = [row[c] for c in ("x", "y", "width", "height")]
    try:
        box = tuple(float(c) for c in cells)
    except ValueError:
        box = None
    if box is None or not all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"{labels_csv} line {line}: box {cells} is not four numbers with positive width and height")
    return box


def _rsna_labels(labels_csv: Path) -> tuple[dict[str, int], dict[str, list]]:
    """stage_2_train_labels.csv -> ({patientId: Target}, {patientId: boxes}); one patient, one Target."""
    rows = _read_csv(labels_csv, ("patientId", "x", "y", "width", "height", "Target"))
    if not rows:
        raise ValueError(f"{labels_csv} holds no rows")
    target: dict[str, int] = {}
    first_line: dict[str, int] = {}
    boxes: dict[str, list] = defaultdict(list)
    for line, row in rows:
        pid = row["patientId"].strip()
        if not pid:
            raise ValueError(f"{labels_csv} line {line}: patientId is empty")
        value = _csv_label(labels_csv, line, "Target", row["Target"], RSNA_TARGETS)
        if target.setdefault(pid, value) != value:
            raise ValueError(f"{labels_csv} line {line}: patientId {pid} has Target {value}, but line "
                             f"{first_line[pid]} gave Target {target[pid]}")
        first_line.setdefault(pid, line)
        if value == 1 and row["x"].strip():
            boxes[pid].append(_rsna_box(labels_csv, line, row))
    return target, boxes


def _rsna_not_normal(detail_path: Path) -> set[str]:
    """Patients of class "No Lung Opacity / Not Normal" in stage_2_detailed_class_info.csv."""
    not_normal = set()
    for line, row in _read_csv(detail_path, ("patientId", "class")):
        if _csv_label(detail_path, line, "class", row["class"], {c: c for c in RSNA_CLASSES}) == RSNA_NOT_NORMAL:
            not_normal.add(row["patientId"].strip())
    return not_normal


def convert_rsna(src: str | Path, out: str | Path, size: int = 256, seed: int = 0,
                 valid_fraction: float = 0.1, test_fraction: float = 0.2, limit: int | None = None,
                 equalize: str = "none", overwrite: bool = False, log=None, skip_bad: bool = False) -> dict:
    """RSNA Pneumonia Detection Challenge (Kaggle) -> MVTec layout.

    src holds stage_2_train_labels.csv and stage_2_train_images/<patientId>.dcm.
    Normal = Target 0; pneumonia = Target 1, its boxes become masks. When
    stage_2_detailed_class_info.csv is present, "No Lung Opacity / Not Normal"
    patients (Target 0 but not normal) are excluded altogether.
    """
    src = Path(src)
    target, boxes = _rsna_labels(src / "stage_2_train_labels.csv")
    image_dir = _require_dir(src / "stage_2_train_images", "RSNA image")
    detail_path = src / "stage_2_detailed_class_info.csv"
    not_normal = _rsna_not_normal(detail_path) if detail_path.is_file() else set()
    excluded = Counter()
    items = []
    for pid in sorted(target):
        if target[pid] == 0 and pid in not_normal:
            excluded[f"'{RSNA_NOT_NORMAL}' (detailed class info)"] += 1
            continue
        kind = "pneumonia" if target[pid] == 1 else "good"
        items.append(Item(image_dir / f"{pid}.dcm", pid, kind, pid, boxes=boxes.get(pid, [])))
    items = _apply_limit(items, limit, seed)
    missing = [str(it.source) for it in items if not it.source.is_file()]
    if missing:
        raise FileNotFoundError(f"RSNA image {missing[0]} not found ({len(missing)} listed in the CSV are missing)")
    return write_dataset(items, out, dataset="rsna", src=src, reader=read_dicom, excluded=dict(excluded),
                         args={"detailed_class_info": detail_path.is_file()}, seed=seed,
                         valid_fraction=valid_fraction, test_fraction=test_fraction, limit=limit,
                         equalize=equalize, size=size, overwrite=overwrite, log=log, skip_bad=skip_bad)


# ------------------------------------------------------------------ CheXpert


def _chexpert_file(src: Path, rel: str) -> Path:
    """CSV paths start with the release folder name: try src.parent/rel, src/rel, src/rel-minus-first-part."""
    rel_path = Path(rel)
    candidates = [src.parent / rel_path, src / rel_path, src / Path(*rel_path.parts[1:])]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"CheXpert image {rel} not found (tried {', '.join(map(str, candidates))})")


CHEXPERT_LABELS = {"": None, "1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0, "-1": -1.0, "-1.0": -1.0}


def _csv_label(path: Path, line: int, column: str, value: str, allowed: dict):
    """A label cell checked against the values the dataset defines; anything else names file, line and column."""
    key = (value or "").strip()
    if key not in allowed:
        known = ", ".join(repr(k) for k in allowed)
        raise ValueError(f"{path} line {line}: {column} is {value!r}; expected one of {known}")
    return allowed[key]


CHEXPERT_VIEWS = {"Frontal": "Frontal", "Lateral": "Lateral"}


def _chexpert_kind(labels_csv: Path, line: int, row: dict) -> str | None:
    """"good", "abnormal", or None (no positive finding). Every label column is checked, not just the deciding one."""
    labels = {c: _csv_label(labels_csv, line, c, row[c], CHEXPERT_LABELS)
              for c in (CHEXPERT_NO_FINDING, *CHEXPERT_PATHOLOGIES)}
    if labels[CHEXPERT_NO_FINDING] == 1.0:
        return "good"
    return "abnormal" if any(labels[c] == 1.0 for c in CHEXPERT_PATHOLOGIES) else None


def _chexpert_item(labels_csv: Path, line: int, row: dict, kind: str) -> Item:
    """The item of one frontal row; patient = the patientNNNNN part of Path."""
    rel = row["Path"].strip()
    if not rel:
        raise ValueError(f"{labels_csv} line {line}: Path is empty")
    parts = Path(rel).parts
    patient = next((p for p in parts if re.fullmatch(r"patient\d+", p)), parts[-3] if len(parts) >= 3 else parts[0])
    name = "_".join(Path(*parts[-3:]).with_suffix("").parts)  # patient_study_view
    return Item(Path(rel), name, kind, patient)


def convert_chexpert(src: str | Path, out: str | Path, size: int = 256, seed: int = 0,
                     valid_fraction: float = 0.1, test_fraction: float = 0.2, limit: int | None = None,
                     equalize: str = "none", overwrite: bool = False, log=None, skip_bad: bool = False) -> dict:
    """CheXpert-v1.0(-small) train.csv -> MVTec layout (frontal views only).

    Normal = "No Finding" == 1. Abnormal (type "abnormal") = No Finding != 1
    and at least one of the 12 pathology columns == 1. Images with only
    uncertain (-1) or blank findings are excluded. Split by patient.
    """
    src = Path(src)
    labels_csv = src / "train.csv"
    rows = _read_csv(labels_csv, ("Path", "Frontal/Lateral", CHEXPERT_NO_FINDING, *CHEXPERT_PATHOLOGIES))
    if not rows:
        raise ValueError(f"{labels_csv} holds no rows")
    excluded = Counter()
    items = []
    for line, row in rows:
        if _csv_label(labels_csv, line, "Frontal/Lateral", row["Frontal/Lateral"], CHEXPERT_VIEWS) != "Frontal":
            excluded["lateral view"] += 1
            continue
        kind = _chexpert_kind(labels_csv, line, row)
        if kind is None:
            excluded["no positive finding (uncertain or blank only)"] += 1
            continue
        items.append(_chexpert_item(labels_csv, line, row, kind))
    items = _apply_limit(sorted(items, key=lambda it: it.name), limit, seed)
    for it in items:
        it.source = _chexpert_file(src, str(it.source))
    return write_dataset(items, out, dataset="chexpert", src=src, reader=_read_picture,
                         excluded=dict(excluded), args={}, seed=seed, valid_fraction=valid_fraction,
                         test_fraction=test_fraction, limit=limit, equalize=equalize, size=size,
                         overwrite=overwrite, log=log, skip_bad=skip_bad)


# ------------------------------------------------------------------ Kermany (ZhangLab, OCT2017)


def _find_root(src: Path, child: str, what: str) -> Path:
    """src itself when it has train/, else src/<child> when that has train/."""
    for root in (src, src / child):
        if (root / "train").is_dir():
            return root
    raise FileNotFoundError(f"no {what} train/ folder in {src} or {src / child}")


def _kermany_items(root: Path, classes: dict[str, str], patient: Callable[[str], str]) -> list[Item]:
    """root/{train,val,test}/<CLASS>/*.jpeg -> items; val is folded into train.

    Every class folder of train/ and test/ must exist and hold at least one image; val/ is optional.
    """
    _require_dir(root / "test", "official test")
    items = []
    for official in ("train", "val", "test"):
        for folder_name, kind in classes.items():
            folder = root / official / folder_name
            if not folder.is_dir():
                if official == "val" and not folder.exists():
                    continue
                what = "is not a folder" if folder.exists() else "not found"
                raise FileNotFoundError(f"class folder {folder} {what}")
            images = _class_images(folder)
            if not images and official != "val":
                raise FileNotFoundError(f"class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            items += [Item(path, f"{official}_{path.stem}", kind, patient(path.stem),
                           official="test" if official == "test" else "train") for path in images]
    return items


def _class_images(folder: Path) -> list[Path]:
    """The image files of one class folder, sorted; macOS ._ files, folders and other debris are ignored."""
    return [path for path in sorted(folder.iterdir())
            if not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()]


def _zhanglab_patient(stem: str) -> str:
    """person12_bacteria_48 -> person12; IM-0115-0001 -> IM-0115; NORMAL2-IM-1427-0001 -> NORMAL2-IM-1427."""
    match = re.match(r"(person\d+)_", stem)
    if match:
        return match.group(1)
    match = re.match(r"(.+)-\d+$", stem)
    return match.group(1) if match else stem


def _oct_patient(stem: str) -> str:
    """CNV-1016042-1 -> 1016042 (the same patient may appear under several classes)."""
    match = re.match(r"[A-Za-z]+-(\d+)-\d+$", stem)
    return match.group(1) if match else stem


def convert_zhanglab(src: str | Path, out: str | Path, size: int = 256, seed: int = 0,
                     valid_fraction: float = 0.1, test_fraction: float = 0.2, limit: int | None = None,
                     equalize: str = "none", overwrite: bool = False, log=None, skip_bad: bool = False) -> dict:
    """Kermany et al. 2018 pediatric chest X-ray (chest_xray/{train,test}/{NORMAL,PNEUMONIA}).

    Official test -> test/good, test/pneumonia. test_fraction is ignored.
    """
    root = _find_root(Path(src), "chest_xray", "ZhangLab chest_xray")
    items = _kermany_items(root, {"NORMAL": "good", "PNEUMONIA": "pneumonia"}, _zhanglab_patient)
    return write_dataset(items, out, dataset="zhanglab", src=root, reader=_read_picture, excluded={},
                         args={"official_test": True}, seed=seed, valid_fraction=valid_fraction,
                         test_fraction=0.0, limit=limit, equalize=equalize, size=size,
                         overwrite=overwrite, log=log, skip_bad=skip_bad)


def convert_oct2017(src: str | Path, out: str | Path, size: int = 256, seed: int = 0,
                    valid_fraction: float = 0.1, test_fraction: float = 0.2, limit: int | None = None,
                    equalize: str = "none", overwrite: bool = False, log=None, skip_bad: bool = False) -> dict:
    """Kermany et al. 2018 retinal OCT (OCT2017/{train,test}/{NORMAL,CNV,DME,DRUSEN}).

    Types cnv, dme, drusen. Official test kept; test_fraction is ignored.
    """
    root = _find_root(Path(src), "OCT2017", "OCT2017")
    classes = {"NORMAL": "good", "CNV": "cnv", "DME": "dme", "DRUSEN": "drusen"}
    items = _kermany_items(root, classes, _oct_patient)
    return write_dataset(items, out, dataset="oct2017", src=root, reader=_read_picture, excluded={},
                         args={"official_test": True}, seed=seed, valid_fraction=valid_fraction,
                         test_fraction=0.0, limit=limit, equalize=equalize, size=size,
                         overwrite=overwrite, log=log, skip_bad=skip_bad)


CONVERTERS: dict[str, Callable[..., dict]] = {
    "rsna": convert_rsna,
    "chexpert": convert_chexpert,
    "zhanglab": convert_zhanglab,
    "oct2017": convert_oct2017,
}

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
    exclusions, and the source file of every output file.

``limit`` keeps at most that many images per class (per official split where
there is one), chosen by the seed before splitting -- for quick runs.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
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


def read_dicom(path: str | Path) -> tuple[np.ndarray, int]:
    """DICOM -> (float32 [H, W] in [0, 1], bits stored).

    Applies RescaleSlope/Intercept, windows to the image's min/max and inverts
    MONOCHROME1 so that bone is always bright.
    """
    import pydicom  # only the RSNA converter needs it

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array.astype(np.float64)
    except Exception as err:
        raise ImageFileError(f"{path} is not a DICOM image pydicom can decode ({type(err).__name__}: {err})") from err
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageFileError(f"{path}: PhotometricInterpretation {photometric!r} is not a grayscale radiograph "
                             f"(expected MONOCHROME1 or MONOCHROME2)")
    if pixels.ndim != 2:
        raise ImageFileError(f"{path} has pixel array shape {pixels.shape}; expected one grayscale frame [H, W]")
    pixels = pixels * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    low, high = pixels.min(), pixels.max()
    img = (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)
    if photometric == "MONOCHROME1":
        img = 1.0 - img
    return img.astype(np.float32), 16 if int(ds.get("BitsStored", 8)) > 8 else 8


def _read_picture(path: Path) -> tuple[np.ndarray, int]:
    """JPEG/PNG -> (float32 [H, W] in [0, 1], bits). Colour files (a few ZhangLab
    JPEGs are stored as RGB) are converted to luminance quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = read_grayscale(path)
    with Image.open(path) as im:
        bits = 16 if im.mode.startswith("I") else 8
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


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} not found")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} lacks column(s) {missing}; header is {reader.fieldnames}")
        return list(reader)


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


def _prepare_out(out: Path, overwrite: bool) -> None:
    existing = [out / name for name in OUTPUT_ENTRIES if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists; choose an empty --out or pass overwrite=True")
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


def write_dataset(items: list[Item], out: str | Path, *, dataset: str, src: Path, args: dict,
                  reader: Callable[[Path], tuple[np.ndarray, int]], excluded: dict[str, int],
                  seed: int, valid_fraction: float, test_fraction: float,
                  limit: int | None, equalize: str, size: int, overwrite: bool = False,
                  log: Callable[[str], None] | None = None) -> dict:
    """Split ``items``, convert and write them to ``out`` in the MVTec layout; return the manifest."""
    out = Path(out)
    pre = Preprocess(crop=True, equalize=equalize, size=int(size))  # validates equalize/size
    items = _apply_limit(sorted(items, key=lambda it: it.name), limit, seed)
    if not items:
        raise ValueError(f"no usable images found in {src}")
    names = Counter(it.name for it in items)
    clash = [n for n, c in names.items() if c > 1]
    if clash:
        raise ValueError(f"two source images map to the output name {clash[0]!r}")
    splits = assign_splits(items, seed, valid_fraction, test_fraction)
    _prepare_out(out, overwrite)                 # refuses an existing dataset before any work is done
    staging = out.parent / f".{out.name}.converting"      # written here, moved into `out` only when complete
    shutil.rmtree(staging, ignore_errors=True)             # left by a conversion that was killed
    try:
        manifest = _write_all(items, splits, staging, dataset, src, args, reader, excluded, seed, valid_fraction,
                              test_fraction, limit, equalize, size, pre, log)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)         # nothing half-written is left behind
        raise
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == "convert.json"):   # convert.json last
        os.replace(entry, out / entry.name)
    staging.rmdir()
    if log:
        log(f"{dataset}: wrote {sum(sum(c.values()) for c in manifest['counts'].values())} images to {out}")
    return manifest


def _write_all(items, splits, out: Path, dataset, src, args, reader, excluded, seed, valid_fraction, test_fraction,
               limit, equalize, size, pre, log) -> dict:
    """Convert every assigned item into `out` (a staging folder) and write convert.json there."""
    out.mkdir(parents=True)

    counts: dict[str, Counter] = defaultdict(Counter)
    mask_counts: dict[str, Counter] = defaultdict(Counter)
    files: dict[str, str] = {}
    todo = [(it, sp) for it, sp in zip(items, splits) if sp is not None]
    unused = len(items) - len(todo)
    for k, (item, split) in enumerate(todo):
        if log and k % 500 == 0:
            log(f"{dataset}: {k}/{len(todo)} images written")
        img, bits = reader(item.source)  # [H, W] in [0, 1]
        rel = f"{split}/{item.anomaly_type}/{item.name}.png"
        write_png(out / rel, pre(img), bits)  # [size, size]
        files[rel] = _relative(item.source, src)
        counts[split][item.anomaly_type] += 1
        if item.boxes and split != "train":
            mask_dir = "ground_truth" if split == "test" else "valid_ground_truth"
            mask = pre.mask(boxes_to_mask(img.shape, item.boxes))  # bool [size, size]
            write_png(out / mask_dir / item.anomaly_type / f"{item.name}_mask.png", mask.astype(np.float32))
            mask_counts[split][item.anomaly_type] += 1

    manifest = {
        "dataset": dataset,
        "source": str(Path(src).resolve()),
        "format": "MVTec AD layout, grayscale PNG",
        "args": {"size": int(size), "seed": seed, "valid_fraction": valid_fraction,
                 "test_fraction": test_fraction, "limit": limit, "equalize": equalize, **args},
        "counts": {sp: dict(sorted(counts[sp].items())) for sp in ("train", "valid", "test") if counts[sp]},
        "masks": {sp: dict(sorted(c.items())) for sp, c in mask_counts.items()},
        "excluded": {**excluded, "not assigned (abnormal images from the train pool)": unused},
        "files": dict(sorted(files.items())),
    }
    (out / "convert.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


# ------------------------------------------------------------------ RSNA


def convert_rsna(src: str | Path, out: str | Path, size: int = 256, seed: int = 0,
                 valid_fraction: float = 0.1, test_fraction: float = 0.2, limit: int | None = None,
                 equalize: str = "none", overwrite: bool = False, log=None) -> dict:
    """RSNA Pneumonia Detection Challenge (Kaggle) -> MVTec layout.

    src holds stage_2_train_labels.csv and stage_2_train_images/<patientId>.dcm.
    Normal = Target 0; pneumonia = Target 1, its boxes become masks. When
    stage_2_detailed_class_info.csv is present, "No Lung Opacity / Not Normal"
    patients (Target 0 but not normal) are excluded altogether.
    """
    src = Path(src)
    rows = _read_csv(src / "stage_2_train_labels.csv", ("patientId", "x", "y", "width", "height", "Target"))
    image_dir = _require_dir(src / "stage_2_train_images", "RSNA image")

    labels_csv = src / "stage_2_train_labels.csv"
    if not rows:
        raise ValueError(f"{labels_csv} holds no rows")
    target: dict[str, int] = {}
    boxes: dict[str, list] = defaultdict(list)
    for line, row in enumerate(rows, start=2):                 # line 1 is the header
        pid = row["patientId"].strip()
        value = _csv_label(labels_csv, line, "Target", row["Target"], {"0": 0, "1": 1, "0.0": 0, "1.0": 1})
        target[pid] = max(target.get(pid, 0), value)
        if value == 1 and row["x"].strip():
            try:
                boxes[pid].append(tuple(float(row[c]) for c in ("x", "y", "width", "height")))
            except ValueError:
                raise ValueError(f"{labels_csv} line {line}: box {[row[c] for c in ('x', 'y', 'width', 'height')]} "
                                 f"is not four numbers") from None

    excluded = Counter()
    detail_path = src / "stage_2_detailed_class_info.csv"
    not_normal = set()
    if detail_path.is_file():
        not_normal = {r["patientId"].strip() for r in _read_csv(detail_path, ("patientId", "class"))
                      if r["class"].strip() == RSNA_NOT_NORMAL}
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
                         equalize=equalize, size=size, overwrite=overwrite, log=log)


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


def convert_chexpert(src: str | Path, out: str | Path, size: int = 256, seed: int = 0,
                     valid_fraction: float = 0.1, test_fraction: float = 0.2, limit: int | None = None,
                     equalize: str = "none", overwrite: bool = False, log=None) -> dict:
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
    for line, row in enumerate(rows, start=2):

        def _label(column, row=row, line=line):
            return _csv_label(labels_csv, line, column, row[column], CHEXPERT_LABELS)

        if row["Frontal/Lateral"].strip() != "Frontal":
            excluded["lateral view"] += 1
            continue
        if _label(CHEXPERT_NO_FINDING) == 1.0:
            kind = "good"
        elif any(_label(c) == 1.0 for c in CHEXPERT_PATHOLOGIES):
            kind = "abnormal"
        else:
            excluded["no positive finding (uncertain or blank only)"] += 1
            continue
        parts = Path(row["Path"]).parts
        patient = next((p for p in parts if re.fullmatch(r"patient\d+", p)), parts[-3] if len(parts) >= 3 else parts[0])
        name = "_".join(Path(*parts[-3:]).with_suffix("").parts)  # patient_study_view
        items.append(Item(Path(row["Path"]), name, kind, patient))
    items = _apply_limit(sorted(items, key=lambda it: it.name), limit, seed)
    for it in items:
        it.source = _chexpert_file(src, str(it.source))
    return write_dataset(items, out, dataset="chexpert", src=src, reader=_read_picture,
                         excluded=dict(excluded), args={}, seed=seed, valid_fraction=valid_fraction,
                         test_fraction=test_fraction, limit=limit, equalize=equalize, size=size,
                         overwrite=overwrite, log=log)


# ------------------------------------------------------------------ Kermany (ZhangLab, OCT2017)


def _find_root(src: Path, child: str, what: str) -> Path:
    """src itself when it has train/, else src/<child> when that has train/."""
    for root in (src, src / child):
        if (root / "train").is_dir():
            return root
    raise FileNotFoundError(f"no {what} train/ folder in {src} or {src / child}")


def _kermany_items(root: Path, classes: dict[str, str], patient: Callable[[str], str]) -> list[Item]:
    """root/{train,val,test}/<CLASS>/*.jpeg -> items; val is folded into train."""
    _require_dir(root / "test", "official test")
    items = []
    for official in ("train", "val", "test"):
        for folder_name, kind in classes.items():
            folder = root / official / folder_name
            if not folder.is_dir():
                if official == "val":
                    continue
                raise FileNotFoundError(f"class folder {folder} not found")
            found = 0
            for path in sorted(folder.iterdir()):
                if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue  # macOS ._ files and other debris
                items.append(Item(path, f"{official}_{path.stem}", kind, patient(path.stem),
                                  official="test" if official == "test" else "train"))
                found += 1
            if not found and official != "val":
                raise FileNotFoundError(f"class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return items


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
                     equalize: str = "none", overwrite: bool = False, log=None) -> dict:
    """Kermany et al. 2018 pediatric chest X-ray (chest_xray/{train,test}/{NORMAL,PNEUMONIA}).

    Official test -> test/good, test/pneumonia. test_fraction is ignored.
    """
    root = _find_root(Path(src), "chest_xray", "ZhangLab chest_xray")
    items = _kermany_items(root, {"NORMAL": "good", "PNEUMONIA": "pneumonia"}, _zhanglab_patient)
    return write_dataset(items, out, dataset="zhanglab", src=root, reader=_read_picture, excluded={},
                         args={"official_test": True}, seed=seed, valid_fraction=valid_fraction,
                         test_fraction=0.0, limit=limit, equalize=equalize, size=size,
                         overwrite=overwrite, log=log)


def convert_oct2017(src: str | Path, out: str | Path, size: int = 256, seed: int = 0,
                    valid_fraction: float = 0.1, test_fraction: float = 0.2, limit: int | None = None,
                    equalize: str = "none", overwrite: bool = False, log=None) -> dict:
    """Kermany et al. 2018 retinal OCT (OCT2017/{train,test}/{NORMAL,CNV,DME,DRUSEN}).

    Types cnv, dme, drusen. Official test kept; test_fraction is ignored.
    """
    root = _find_root(Path(src), "OCT2017", "OCT2017")
    classes = {"NORMAL": "good", "CNV": "cnv", "DME": "dme", "DRUSEN": "drusen"}
    items = _kermany_items(root, classes, _oct_patient)
    return write_dataset(items, out, dataset="oct2017", src=root, reader=_read_picture, excluded={},
                         args={"official_test": True}, seed=seed, valid_fraction=valid_fraction,
                         test_fraction=0.0, limit=limit, equalize=equalize, size=size,
                         overwrite=overwrite, log=log)


CONVERTERS: dict[str, Callable[..., dict]] = {
    "rsna": convert_rsna,
    "chexpert": convert_chexpert,
    "zhanglab": convert_zhanglab,
    "oct2017": convert_oct2017,
}

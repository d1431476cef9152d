"""Read datasets stored in the MVTec AD folder layout.

    ROOT/train/good/*.png
    ROOT/test/good/*.png
    ROOT/test/<anomaly_type>/*.png
    ROOT/ground_truth/<anomaly_type>/<stem>_mask.png        (optional)
    ROOT/valid/good/*.png, ROOT/valid/<anomaly_type>/*.png    (optional)
    ROOT/valid_ground_truth/<anomaly_type>/<stem>_mask.png  (optional)

Images are grayscale PNG, 8- or 16-bit. Every failure names the file or
folder at fault, so a broken dataset can be fixed without a debugger.
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from hqanogan_core.data.preprocess import resize, resize_nearest

SPLITS = ("train", "valid", "test")
MASK_DIRS = {"test": "ground_truth", "valid": "valid_ground_truth"}
LAYOUT_HELP = (
    "expected the MVTec AD layout: ROOT/train/good/*.png, ROOT/test/good/*.png, "
    "ROOT/test/<anomaly_type>/*.png, optional ROOT/ground_truth/<anomaly_type>/<stem>_mask.png, "
    "optional ROOT/valid/{good,<anomaly_type>}/*.png with masks in ROOT/valid_ground_truth/"
)


class ImageFileError(ValueError):
    """An image or mask file that cannot be used; the message names the file."""


class DatasetLayoutError(ValueError):
    """A dataset folder that does not follow the MVTec AD layout."""


# ------------------------------------------------------------------ reading


def _pixels_to_unit(im: Image.Image, path: Path) -> np.ndarray:
    """Decoded PIL image -> float32 [H, W] in [0, 1]."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im, dtype=np.float64).astype(np.float32) / 65535.0
    if mode == "I":  # 32-bit int: PNG only produces it for 16-bit data
        return (np.clip(np.asarray(im, dtype=np.float64), 0, 65535) / 65535.0).astype(np.float32)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if not np.all(np.isfinite(arr)):
            raise ImageFileError(f"{path} contains NaN or infinite pixel values")
        return np.clip(arr, 0.0, 1.0)
    if mode in ("L", "1", "P", "PA", "LA", "La"):
        if mode in ("PA", "LA", "La"):
            warnings.warn(f"{path}: mode {mode} has an alpha channel; it is ignored", stacklevel=3)
        gray = im.convert("L")  # palette entries go through luminance
        return np.asarray(gray, dtype=np.float32) / 255.0
    warnings.warn(f"{path}: colour image (mode {mode}) converted to luminance", stacklevel=3)
    return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def read_grayscale(path: str | Path) -> np.ndarray:
    """Read one image as float32 [H, W] in [0, 1].

    8-bit (L, P) is divided by 255, 16-bit (I;16*, I) by 65535; colour images
    are converted to luminance with a warning naming the file. Any decoding
    failure is raised as ImageFileError naming the path.
    """
    path = Path(path)
    try:
        n_bytes = path.stat().st_size
    except OSError as err:
        raise ImageFileError(f"{path} cannot be read: {err.strerror or err}") from err
    if n_bytes == 0:
        raise ImageFileError(f"{path} is empty (0 bytes)")
    try:
        with Image.open(path) as im:
            im.load()  # decode now, so truncation is caught here
            width, height = im.size
            if width == 0 or height == 0:
                raise ImageFileError(f"{path} has {width}x{height} size")
            arr = _pixels_to_unit(im, path)
    except ImageFileError:
        raise
    except UnidentifiedImageError as err:
        raise ImageFileError(f"{path} is not an image PIL can read") from err
    except Image.DecompressionBombError as err:
        raise ImageFileError(f"{path} is too large to decode safely ({err})") from err
    except (EOFError, SyntaxError, OSError) as err:
        text = str(err)
        if isinstance(err, EOFError) or "truncated" in text.lower():
            raise ImageFileError(f"{path} is truncated ({type(err).__name__}: {text})") from err
        raise ImageFileError(f"{path} is corrupt or unreadable ({type(err).__name__}: {text})") from err
    except Exception as err:  # struct.error, ValueError, zlib.error, MemoryError ... from decoders
        raise ImageFileError(f"{path} could not be decoded ({type(err).__name__}: {err})") from err
    if arr.ndim != 2:
        raise ImageFileError(f"{path} decoded to shape {arr.shape}, expected [H, W]")
    return arr


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a mask as bool [H, W] (pixel >= 0.5 is anomalous); shape must match the image's."""
    mask = read_grayscale(path) >= 0.5
    if mask.shape != tuple(shape):
        raise ImageFileError(
            f"mask {path} size {mask.shape[1]}x{mask.shape[0]} does not match image "
            f"{shape[1]}x{shape[0]}"
        )
    return mask


# ------------------------------------------------------------------ scanning


@dataclass
class Sample:
    """One image of a split. gt_label: 0 normal ("good"), 1 anomalous."""

    path: Path
    gt_label: int
    anomaly_type: str
    mask_path: Path | None = None


def _is_png(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".png" and not path.name.startswith(".")


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _mask_index(mask_root: Path, anomaly_type: str) -> dict[str, Path]:
    """stem -> mask path for ROOT/<mask_root>/<type>/<stem>_mask.png."""
    folder = mask_root / anomaly_type
    if not folder.is_dir():
        return {}
    index = {}
    for path in sorted(folder.iterdir()):
        if not _is_png(path):
            continue
        if not path.stem.endswith("_mask"):
            raise DatasetLayoutError(f"mask {path} is not named <image stem>_mask.png")
        index[path.stem[: -len("_mask")]] = path
    return index


def has_split(root: str | Path, split: str) -> bool:
    """True when ROOT/<split>/ exists (valid/ is optional)."""
    return (Path(root) / split).is_dir()


def scan_split(root: str | Path, split: str) -> list[Sample]:
    """List the samples of one split, sorted by (label, type, file name)."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset root {root} does not exist or is not a folder")
    if not (root / "train" / "good").is_dir():
        raise DatasetLayoutError(f"no train/good folder under {root}; {LAYOUT_HELP}")
    split_dir = root / split
    if not split_dir.is_dir():
        hint = " (use load_splits() to carve a valid split from test)" if split == "valid" else ""
        raise DatasetLayoutError(f"no {split}/ folder under {root}{hint}; {LAYOUT_HELP}")

    type_dirs = _subdirs(split_dir)
    if split == "train" and [d.name for d in type_dirs] != ["good"]:
        extra = [str(d) for d in type_dirs if d.name != "good"]
        raise DatasetLayoutError(f"train/ must contain only good/, found {extra}")
    if not type_dirs:
        raise DatasetLayoutError(f"{split_dir} has no class folders; {LAYOUT_HELP}")

    samples = []
    mask_root = root / MASK_DIRS.get(split, "_none_")
    for type_dir in type_dirs:
        images = sorted((p for p in type_dir.iterdir() if _is_png(p)), key=lambda p: p.name)
        if not images:
            raise DatasetLayoutError(f"image folder {type_dir} contains no .png files")
        masks = _mask_index(mask_root, type_dir.name) if split in MASK_DIRS else {}
        stems = {p.stem for p in images}
        orphans = sorted(str(m) for stem, m in masks.items() if stem not in stems)
        if orphans:
            raise DatasetLayoutError(f"mask {orphans[0]} has no image in {type_dir}"
                                     + (f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""))
        label = 0 if type_dir.name == "good" else 1
        samples += [Sample(p, label, type_dir.name, masks.get(p.stem)) for p in images]

    if split in MASK_DIRS and mask_root.is_dir():
        known = {d.name for d in type_dirs}
        for folder in _subdirs(mask_root):
            if folder.name not in known and any(_is_png(p) for p in folder.iterdir()):
                raise DatasetLayoutError(f"mask folder {folder} has no image folder {split_dir / folder.name}")
    return sorted(samples, key=lambda s: (s.gt_label, s.anomaly_type, s.path.name))


# ------------------------------------------------------------------ splitting


def _part_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Split n items into parts ~ n * fractions (largest remainder), at least one
    item in every part with a non-zero fraction when n allows it."""
    ideal = [round(f * n, 9) for f in fractions]  # rounding: float noise must not break ties
    sizes = [int(np.floor(x)) for x in ideal]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(ideal[i] - sizes[i]), i))
    for i in by_remainder[: n - sum(sizes)]:
        sizes[i] += 1
    for i, frac in enumerate(fractions):
        donor = int(np.argmax(sizes))
        if frac > 0 and sizes[i] == 0 and sizes[donor] > 1:
            sizes[donor] -= 1
            sizes[i] += 1
    return sizes


def stratified_assign(strata: Sequence[str], fractions: Sequence[float] | Callable[[str], Sequence[float]],
                      seed: int = 0) -> np.ndarray:
    """Give every item a part index, stratum by stratum -> int array [N].

    ``fractions`` (summing to 1) may depend on the stratum (a callable).
    Each stratum is shuffled with its own generator seeded by (seed, stratum
    name), so adding a stratum never changes how another one is split.
    Items keep their given order inside a stratum before shuffling, so callers
    should pass items in a deterministic (sorted) order.
    """
    strata = list(strata)
    parts = np.full(len(strata), -1, dtype=np.int64)
    for stratum in sorted(set(strata)):
        members = np.array([i for i, s in enumerate(strata) if s == stratum])
        fracs = fractions(stratum) if callable(fractions) else fractions
        if abs(sum(fracs) - 1.0) > 1e-9 or min(fracs) < 0:
            raise ValueError(f"fractions must be >= 0 and sum to 1, got {fracs} for {stratum!r}")
        rng = np.random.default_rng([seed, zlib.crc32(stratum.encode("utf-8"))])
        members = members[rng.permutation(len(members))]
        start = 0
        for part, size in enumerate(_part_sizes(len(members), fracs)):
            parts[members[start:start + size]] = part
            start += size
    return parts


def split_valid_from_test(samples: Sequence[Sample], fraction: float = 0.2,
                          seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Seeded split of test samples into (valid, test), stratified by anomaly_type."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    ordered = sorted(samples, key=lambda s: (s.anomaly_type, str(s.path)))
    parts = stratified_assign([s.anomaly_type for s in ordered], (fraction, 1.0 - fraction), seed)
    key = lambda s: (s.gt_label, s.anomaly_type, s.path.name)  # noqa: E731
    valid = sorted((s for s, p in zip(ordered, parts) if p == 0), key=key)
    test = sorted((s for s, p in zip(ordered, parts) if p == 1), key=key)
    return valid, test


def load_splits(root: str | Path, valid_fraction: float = 0.2, seed: int = 0) -> dict[str, list[Sample]]:
    """train / valid / test samples; valid is carved from test (seeded) when ROOT/valid/ is absent."""
    splits = {"train": scan_split(root, "train"), "test": scan_split(root, "test")}
    if has_split(root, "valid"):
        splits["valid"] = scan_split(root, "valid")
    else:
        splits["valid"], splits["test"] = split_valid_from_test(splits["test"], valid_fraction, seed)
    return splits


# ------------------------------------------------------------------ torch


class MVTecDataset(torch.utils.data.Dataset):
    """MVTec-layout split as a torch Dataset with anomalib field names.

    item = {"image": float32 [1, size, size] in [-1, 1],
            "gt_label": int (0 normal, 1 anomalous),
            "gt_mask": float32 [1, size, size] in {0, 1} (zeros without a mask),
            "anomaly_type": str, "path": str}

    ``preprocess`` (optional) maps the float [H, W] image in [0, 1] to another
    one before the resize. If it changes the geometry it must offer
    ``.mask(bool [H, W])`` applying the same crop/resize to masks
    (``preprocess.Preprocess`` does).
    """

    def __init__(self, root: str | Path, split: str = "train", size: int = 64,
                 samples: Sequence[Sample] | None = None, preprocess: Callable | None = None):
        self.root = Path(root)
        self.split = split
        self.size = int(size)
        self.samples = list(samples) if samples is not None else scan_split(self.root, split)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        """int [N] gt_label of every sample, without reading images."""
        return np.array([s.gt_label for s in self.samples], dtype=np.int64)

    def _load(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """-> image float [H', W'] in [0, 1], mask bool [H', W'] (after preprocess)."""
        image = read_grayscale(sample.path)  # [H, W]
        if sample.mask_path is not None:
            mask = read_mask(sample.mask_path, image.shape)  # [H, W]
        else:
            mask = np.zeros(image.shape, dtype=bool)
        if self.preprocess is not None:
            processed = np.asarray(self.preprocess(image), dtype=np.float32)
            if processed.ndim != 2:
                raise ValueError(f"preprocess returned shape {processed.shape} for {sample.path}, expected [H, W]")
            if hasattr(self.preprocess, "mask"):
                mask = np.asarray(self.preprocess.mask(mask), dtype=bool)
            elif processed.shape != image.shape:
                raise ValueError("preprocess changed the image shape but has no .mask() to move the mask with it")
            image = processed
        assert mask.shape == image.shape, (mask.shape, image.shape)
        return image, mask

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        image, mask = self._load(sample)
        image = np.clip(resize(image, self.size), 0.0, 1.0)  # [size, size], antialiased
        mask = resize_nearest(mask, self.size)  # [size, size], nearest keeps {0, 1}
        image_t = torch.from_numpy(image * 2.0 - 1.0).float()[None]  # [1, size, size] in [-1, 1]
        mask_t = torch.from_numpy(mask.astype(np.float32))[None]  # [1, size, size]
        assert image_t.shape == (1, self.size, self.size) and mask_t.shape == image_t.shape
        return {"image": image_t, "gt_label": int(sample.gt_label), "gt_mask": mask_t,
                "anomaly_type": sample.anomaly_type, "path": str(sample.path)}

"""One path from files to model input: a split as arrays, then [-1, 1] tensors.

    split = load_split(root, "test")             # images [N, H, W] in [0, 1], labels, types, masks, paths
    x = to_model_input(split.images, 64)         # [N, 1, 64, 64] float32 in [-1, 1]

Files are read by `folder.read_grayscale` (8/16-bit, errors name the file) and resized by
`preprocess.resize` (antialiased triangle filter); nothing else in the package reads or resizes images.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from hqanogan_core.data.folder import read_grayscale, read_mask, scan_split
from hqanogan_core.data.preprocess import resize, resize_nearest

__all__ = ["SplitArrays", "load_split", "to_model_input", "resize_batch", "stratified_subset"]


@dataclass
class SplitArrays:
    images: np.ndarray  # [N, H, W] float32 in [0, 1]
    labels: np.ndarray  # [N] int, 1 = abnormal
    types: np.ndarray  # [N] str, "good" for normals
    masks: np.ndarray | None  # [N, H, W] bool, None when no masks exist
    paths: list[str]
    root: str | None = None   # the dataset folder the paths lie in

    def relative_paths(self) -> list[str]:
        """Paths relative to `root` (as written in score CSVs: no machine-specific prefix)."""
        if self.root is None:
            return list(self.paths)
        return [os.path.relpath(p, self.root) for p in self.paths]

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> "SplitArrays":
        """The images at `index` (integer indices, in that order, or a boolean mask [N])."""
        index = np.asarray(index)
        if index.size == 0:
            index = index.astype(np.int64)
        if index.dtype == bool:       # else the paths would be taken at 0 / 1, out of step with the arrays
            if index.shape != (len(self),):
                raise IndexError(f"boolean index of shape {index.shape} for a split of {len(self)} images")
            index = np.flatnonzero(index)
        return replace(self, images=self.images[index], labels=self.labels[index], types=self.types[index],
                       masks=None if self.masks is None else self.masks[index],
                       paths=[self.paths[i] for i in index])


def load_split(root: str | Path, split: str, size: int | None = None) -> SplitArrays:
    """All images of one split as arrays (resized to `size` if given)."""
    samples = scan_split(root, split)
    images, masks = [], []
    for s in samples:
        img = read_grayscale(s.path)  # [H, W]
        mask = read_mask(s.mask_path, img.shape) if s.mask_path is not None else np.zeros(img.shape, bool)
        if size is not None and img.shape != (size, size):
            img = resize(img, size)
            mask = resize_nearest(mask.astype(np.float32), size) > 0.5
        images.append(img)
        masks.append(mask)
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(
            f"images under {Path(root) / split} have different sizes {sorted(shapes)}; pass size=..."
        )
    has_masks = any(s.mask_path is not None for s in samples)
    return SplitArrays(
        images=np.stack(images).astype(np.float32),
        labels=np.array([s.gt_label for s in samples], dtype=np.int64),
        types=np.array([s.anomaly_type for s in samples]),
        masks=np.stack(masks) if has_masks else None,
        paths=[str(s.path) for s in samples],
        root=str(root),
    )


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W] -> [N, size, size] with the package's one resize (a no-op at the right size)."""
    assert images.ndim == 3, f"expected [N, H, W], got {images.shape}"
    if images.shape[1:] == (size, size):
        return images
    return np.stack([resize(im, size) for im in images]).astype(np.float32)


def to_model_input(images: np.ndarray, resolution: int, channels: int = 1) -> torch.Tensor:
    """[N, H, W] float in [0, 1] -> [N, channels, R, R] float32 in [-1, 1] (resized if needed)."""
    assert images.ndim == 3, f"expected [N, H, W] grayscale images, got {images.shape}"
    x = torch.from_numpy(np.ascontiguousarray(resize_batch(images, resolution), dtype=np.float32))[:, None]
    x = x.clamp(0, 1) * 2 - 1
    return x.repeat(1, channels, 1, 1) if channels > 1 else x


def stratified_subset(split: SplitArrays, n_per_type: dict[str, int] | int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subset with `n_per_type` images of each anomaly type (and of
    "good"); an int applies to every type. Types with fewer images are taken whole."""
    rng = np.random.default_rng(seed)
    pick = []
    for kind in sorted(set(split.types)):
        idx = np.flatnonzero(split.types == kind)
        n = n_per_type if isinstance(n_per_type, int) else n_per_type.get(str(kind), len(idx))
        pick.append(rng.permutation(idx)[: min(n, len(idx))])
    return np.sort(np.concatenate(pick))


def labelled_images(split: SplitArrays, k: int, seed: int, resolution: int, channels: int = 1):
    """The k labelled anomalies of `labelled_anomalies` as model input [k, C, R, R] in [-1, 1]."""
    return to_model_input(split.images[labelled_anomalies(split, k, seed=seed)], resolution, channels)


def labelled_anomalies(split: SplitArrays, k: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of k abnormal images of `split`, spread evenly over its anomaly types (handed out one
    per type in turn, skipping types that have run out), seeded: what a semi-supervised method may see
    labelled."""
    kinds = sorted(str(t) for t in set(split.types[split.labels == 1]))
    if k < 0 or k > int(split.labels.sum()):
        raise ValueError(f"asked for {k} labelled anomalies; the split has {int(split.labels.sum())}")
    available = {t: int(np.sum((split.types == t) & (split.labels == 1))) for t in kinds}
    per, left = dict.fromkeys(kinds, 0), k
    while left:
        for t in [t for t in kinds if per[t] < available[t]][:left]:
            per[t] += 1
            left -= 1
    per = {**dict.fromkeys((str(t) for t in set(split.types)), 0), **per}    # normals (whatever their type name): none
    return stratified_subset(split, per, seed=seed) if k else np.zeros(0, dtype=np.int64)

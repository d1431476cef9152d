"""What Gaussian AD, PaDiM and PatchCore share: a frozen ImageNet backbone and statistics of normals.

Nothing is trained. `fit` runs the backbone (on images resized to `input_size`; the papers feed 224 px,
ImageNet's scale) over `n_fit` training normals (a seeded subset; the papers fit
on the 200-400 normals of an MVTec category, so 1,000 is already more) and keeps statistics of their
features; `score` compares a test image's features with them. The backbone is AlexNet (or VGG-16) from the
stlpips-pytorch wheel (`nets.backbone`): the only ImageNet weights available offline, not the papers'
ResNets, which the book states next to every number.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from ..data.splits import to_model_input
from ..nets.backbone import ImageNetFeatures
from .base import Method, check_images

FEATURE_BATCH = 100        # images per backbone pass
PAPER_RESOLUTION = 224     # the papers' input size: smoothing widths given there are scaled to ours


class PretrainedFeatureMethod(Method):
    stages = (0, 1, 2)
    weights_known_before_fit = True          # the backbone file; fit only computes statistics

    def __init__(self, backbone: str = "alex", n_fit: int = 1000, input_size: int | None = None, seed: int = 0,
                 device: str = "cpu"):
        self.backbone_name, self.n_fit, self.seed = backbone, int(n_fit), seed
        self.input_size = None if input_size is None else int(input_size)     # None: the images' own size
        self.device = torch.device(device)
        self.backbone = ImageNetFeatures(backbone, self.stages).to(self.device)
        self.fit_seconds, self.n_fitted = 0.0, 0
        self._last = None

    def fit_subset(self, train: np.ndarray) -> np.ndarray:
        """The seeded subset of training normals the statistics are fitted on. [n, H, W]"""
        train = check_images(train, f"{self.name}.fit")
        if self.n_fit >= len(train):
            return train
        return train[np.sort(np.random.default_rng(self.seed).permutation(len(train))[:self.n_fit])]

    def features(self, images: np.ndarray):
        """Yield the backbone's stage features [B, C_s, h_s, w_s] for batches of `images` [N, H, W]."""
        x = to_model_input(check_images(images, self.name), self.input_size or images.shape[-1], 1)
        for i in range(0, len(x), FEATURE_BATCH):
            yield self.backbone(x[i:i + FEATURE_BATCH].to(self.device))

    def fit(self, train: np.ndarray, valid=None):
        t0 = time.perf_counter()
        self._last = None                    # maps kept by score() belong to the previous fit
        subset = self.fit_subset(train)
        self.fit_statistics(subset)
        self.n_fitted = len(subset)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def fit_statistics(self, images: np.ndarray) -> None:
        raise NotImplementedError

    def weights_digest(self) -> str:
        return self.backbone.weights_digest()

    def info(self) -> dict:
        return {"name": self.name, "parameters": self.n_statistics(),
                "backbone": f"stlpips-{self.backbone_name} (ImageNet, frozen)",
                "backbone_parameters": int(sum(p.numel() for p in self.backbone.parameters())),
                "n_fit": self.n_fitted, "input_size": self.input_size, "fit_seconds": self.fit_seconds,
                "train_seconds": self.fit_seconds}

    def n_statistics(self) -> int:
        raise NotImplementedError


def to_grid(features: list[torch.Tensor], size: tuple[int, int], mode: str = "nearest") -> torch.Tensor:
    """Resize every stage to `size` and concatenate along channels. -> [B, sum C_s, h, w]"""
    return torch.cat([f if tuple(f.shape[2:]) == size else F.interpolate(f, size=size, mode=mode) for f in features], 1)


def smooth_and_resize(maps: np.ndarray, out: int, sigma_at_paper: float = 4.0) -> np.ndarray:
    """Patch-grid maps [N, h, w] -> [N, out, out]: bilinear upsampling, then Gaussian smoothing with the
    papers' sigma (4 px at 224 px) scaled to `out`."""
    from scipy import ndimage

    up = F.interpolate(torch.from_numpy(maps[:, None].astype(np.float32)), size=(out, out), mode="bilinear",
                       align_corners=False)[:, 0].numpy()
    sigma = sigma_at_paper * out / PAPER_RESOLUTION
    return ndimage.gaussian_filter(up, sigma=(0, sigma, sigma))

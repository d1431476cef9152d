"""The one interface every detector in the benchmark implements (anomalib's field names).

    method = METHODS["pca"](seed=0)                  # constructor arguments are the method's options
    method.fit(train_normals, valid=None)            # [N, H, W] float in [0, 1], normals only
    out = method.score(images)                       # {"pred_score": [M], <named terms>: [M], ...}
    maps = method.anomaly_map(images)                # [M, H, W] (higher = more anomalous) or None
    restored = method.restoration(images)            # [M, R, R] in [0, 1] or None (methods that restore)
    method.info()                                    # parameters, training time, where weights came from

`valid` is the labelled validation split (`data.splits.SplitArrays`) for the methods that may use a
few labels (semi-supervised variants); unsupervised methods ignore it. A higher score always means more
anomalous. `score` may keep what it computed for the same `images` object so `anomaly_map` can reuse it.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["Method", "n_parameters", "check_images"]


def check_images(images: np.ndarray, where: str) -> np.ndarray:
    """Images must be [N, H, W] floats in [0, 1]."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"{where}: expected images [N, H, W], got shape {images.shape}")
    return images.astype(np.float32, copy=False)


def n_parameters(*modules: torch.nn.Module | None) -> int:
    return int(sum(p.numel() for m in modules if m is not None for p in m.parameters()))


class Method:
    """Base of every detector: `fit`, `score`, `anomaly_map`, `info`. Subclasses set `name`."""

    name = "method"
    weights_known_before_fit = False   # True: fit() is a function of (options, training images) alone

    def fit(self, train: np.ndarray, valid=None) -> "Method":
        raise NotImplementedError

    def score(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def anomaly_map(self, images: np.ndarray) -> np.ndarray | None:
        return None

    def restoration(self, images: np.ndarray) -> np.ndarray | None:
        """The method's normal-looking version of `images` in [0, 1] ([N, R, R]), None if it makes none."""
        return None

    def info(self) -> dict:
        return {"name": self.name, "parameters": 0}

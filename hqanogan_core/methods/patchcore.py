"""PatchCore (Roth et al., CVPR 2022): nearest-neighbour distance to a memory bank of normal patches.

Mid-level features (backbone stages 2 and 3; for AlexNet at 64 px 192 x 15 x 15 and 384 x 8 x 8) are
averaged over each 3 x 3 neighbourhood, the deeper stage upsampled to the finer grid (bilinear), and
concatenated: one 576-dim patch feature per position. Every patch of the `n_fit` normals goes into a
memory bank, reduced by greedy coreset subsampling to `coreset` of its size (1 %; the selection runs on a
seeded random projection to 128 dims, as the paper does). A test patch's score is its distance to the
nearest bank patch; the image score is the largest patch score, re-weighted by how isolated its nearest
bank patch is among that patch's `neighbours` nearest bank patches (the paper's Eq. 7). The map is the
patch scores, upsampled and smoothed (sigma 4 px at 224 px, scaled).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .pretrained_features import PretrainedFeatureMethod, smooth_and_resize, to_grid

PROJECTION_DIM = 128      # coreset selection runs in a random projection of this size
DISTANCE_CHUNK = 4096     # test patches per distance computation


def greedy_coreset(x: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of n rows of x [M, D] chosen greedily so that every row is close to a chosen one (k-center
    greedy: repeatedly take the row farthest from all chosen so far, starting from a seeded random row)."""
    assert x.ndim == 2 and 0 < n <= len(x), (x.shape, n)
    g = torch.Generator().manual_seed(seed)
    norms = (x * x).sum(dim=1)                                        # [M]

    def sq_dist(i: int) -> torch.Tensor:                             # ||x - x_i||^2 = |x|^2 - 2 x.x_i + |x_i|^2
        return norms - 2 * (x @ x[i]) + norms[i]

    chosen = [int(torch.randint(len(x), (1,), generator=g))]
    nearest = sq_dist(chosen[-1])                                     # [M] squared distance to the chosen set
    for _ in range(n - 1):
        chosen.append(int(torch.argmax(nearest)))
        nearest = torch.minimum(nearest, sq_dist(chosen[-1]))
    return torch.tensor(chosen)


def reweighted_image_score(patch_scores: torch.Tensor, nearest_bank: torch.Tensor, patches: torch.Tensor,
                           bank: torch.Tensor, neighbours: int) -> torch.Tensor:
    """PatchCore's image score for one image: s* = max patch score, times 1 - softmax weight of the nearest
    bank patch m* among m*'s `neighbours` nearest bank patches (distances from the test patch)."""
    j = int(torch.argmax(patch_scores))
    s_star, m_star = patch_scores[j], bank[nearest_bank[j]]
    k = min(neighbours, len(bank))
    exact = "donot_use_mm_for_euclid_dist"          # d(m*, m*) exactly 0, so m* is first among its neighbours
    near = torch.topk(torch.cdist(m_star[None], bank, compute_mode=exact)[0], k, largest=False).indices
    d = torch.cdist(patches[j][None], bank[near], compute_mode=exact)[0]                   # [k], d[0] to m*
    weight = 1 - torch.softmax(d, dim=0)[0]
    return weight * s_star


class PatchCore(PretrainedFeatureMethod):
    name = "patchcore"
    stages = (1, 2)

    def __init__(self, coreset: float = 0.01, neighbours: int = 9, backbone: str = "alex", n_fit: int = 500,
                 input_size: int | None = None, seed: int = 0, device: str = "cpu"):
        # 500 normals x 225 patches: the coreset pass stays seconds on a CPU
        super().__init__(backbone=backbone, n_fit=n_fit, input_size=input_size, seed=seed, device=device)
        if not 0 < coreset <= 1:
            raise ValueError(f"patchcore: coreset must be in (0, 1], got {coreset}")
        self.coreset, self.neighbours = float(coreset), int(neighbours)

    def _patches(self, images: np.ndarray):
        """Yield patch features [B, P, D] and the grid (h, w)."""
        for feats in self.features(images):
            size = tuple(feats[0].shape[2:])
            local = [F.avg_pool2d(f, 3, stride=1, padding=1, count_include_pad=False) for f in feats]
            grid = to_grid(local, size, mode="bilinear")                                    # [B, D, h, w]
            yield grid.flatten(2).transpose(1, 2).contiguous(), size

    def fit_statistics(self, images: np.ndarray) -> None:
        patches = []
        for p, grid in self._patches(images):
            patches.append(p.reshape(-1, p.shape[-1]).cpu())
        self.grid = grid
        bank = torch.cat(patches)                                                    # [M, D]
        g = torch.Generator().manual_seed(self.seed)
        projection = torch.randn(bank.shape[1], PROJECTION_DIM, generator=g) / PROJECTION_DIM ** 0.5
        n = max(1, int(round(self.coreset * len(bank))))
        self.bank = bank[greedy_coreset(bank @ projection, n, seed=self.seed)]      # [n, D]
        self.bank_size_before = len(bank)

    def _score_patches(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps, scores = [], []
        for p, _ in self._patches(images):
            for patches in p.cpu():                                                   # [P, D] one image
                d = torch.cat([torch.cdist(patches[i:i + DISTANCE_CHUNK], self.bank)
                               for i in range(0, len(patches), DISTANCE_CHUNK)])       # [P, n]
                best, nearest = d.min(dim=1)
                maps.append(best.numpy())
                scores.append(float(reweighted_image_score(best, nearest, patches, self.bank, self.neighbours)))
        return np.stack(maps).reshape(len(images), *self.grid), np.array(scores)

    def score(self, images: np.ndarray) -> dict:
        patch_maps, scores = self._score_patches(images)
        maps = smooth_and_resize(patch_maps, images.shape[-1])
        self._last = (images, maps)
        return {"pred_score": scores, "max_patch": patch_maps.reshape(len(images), -1).max(axis=1)}

    def anomaly_map(self, images: np.ndarray) -> np.ndarray:
        if self._last is not None and self._last[0] is images:
            return self._last[1]
        return smooth_and_resize(self._score_patches(images)[0], images.shape[-1])

    def n_statistics(self) -> int:
        return int(self.bank.numel())

    def info(self) -> dict:
        return {**super().info(), "memory_bank": int(len(self.bank)), "patches_before_coreset": self.bank_size_before}

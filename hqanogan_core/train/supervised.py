"""Train the supervised ceiling: a small CNN on *labelled* phantoms from seeds the benchmark never uses.

    images, labels, types = labelled_phantoms(resolution=64, n_normal=2000, n_per_type=400, seed=1000)
    net, log = train_classifier(images, labels, steps=1500)

This is the upper bound the unsupervised detectors are measured against: a detector that has seen every
kind of finding, with labels, on the same image distribution. It only exists for the phantom, whose
recipe can draw new labelled cases; real data would need labelled abnormal images to train it.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from ..data.phantom import ANOMALY_TYPES, PhantomConfig, render_case
from ..nets.classifier import SmallCNN

BENCHMARK_SEEDS = range(0, 100)      # the default phantom is seed 0, the robustness checks use small seeds


def labelled_phantoms(resolution: int, n_normal: int, n_per_type: int, seed: int,
                      config: PhantomConfig | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images [N, R, R] in [0, 1], labels [N] int, types [N] str): normals and every anomaly type, rendered
    with phantom seed `seed` (which must not be a benchmark seed)."""
    if seed in BENCHMARK_SEEDS:
        raise ValueError(f"phantom seed {seed} may be a benchmark's; the ceiling trains on seeds >= "
                         f"{BENCHMARK_SEEDS.stop} so that no training case is a test case")
    config = config or PhantomConfig(size=resolution)
    plan = [None] * n_normal + [a for a in ANOMALY_TYPES for _ in range(n_per_type)]
    images = np.stack([render_case(seed, i, a, config, split="train")[0] for i, a in enumerate(plan)])
    labels = np.array([a is not None for a in plan], dtype=np.int64)
    types = np.array(["good" if a is None else a for a in plan])
    return images.astype(np.float32), labels, types


def train_classifier(images: np.ndarray, labels: np.ndarray, steps: int = 1500, batch: int = 64, lr: float = 1e-3,
                     width: int = 16, pool: str = "max", seed: int = 0, log_every: int = 100
                     ) -> tuple[SmallCNN, list[dict]]:
    """Binary cross-entropy with class-balanced batches, Adam, light augmentation (a random shift of up to
    2 px and a brightness scale in [0.95, 1.05] per batch). images [N, R, R] in [0, 1]. -> (net in eval mode, log)"""
    assert images.ndim == 3 and len(images) == len(labels), (images.shape, labels.shape)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = SmallCNN(images.shape[1], width, pool=pool)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x_all = torch.from_numpy(images * 2 - 1)[:, None]                 # [N, 1, R, R] in [-1, 1]
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    log, t0 = [], time.perf_counter()
    for step in range(1, steps + 1):
        idx = np.r_[rng.choice(pos, batch // 2), rng.choice(neg, batch - batch // 2)]
        x = x_all[idx]
        dx, dy = rng.integers(-2, 3, size=2)
        x = torch.roll(x, shifts=(int(dx), int(dy)), dims=(2, 3)) * float(rng.uniform(0.95, 1.05))
        y = torch.from_numpy(labels[idx].astype(np.float32))
        loss = F.binary_cross_entropy_with_logits(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % log_every == 0 or step == steps:
            log.append({"step": step, "loss": loss.item(), "seconds": time.perf_counter() - t0})
    return net.eval(), log

"""CutPaste (Li et al., CVPR 2021) and AnatPaste (Sato et al. 2022): learn normal anatomy by telling
normal images from synthetically damaged copies of them; then model the normals' embeddings.

Each step draws `batch` training normals and makes one copy of each per augmentation in `augmentations`
(`data.paste`); a ResNet-18 classifies [normal, aug_1, aug_2, ...] with cross-entropy. The anomaly score
(methods/cutpaste.py) is not the classifier: it is a Gaussian density of the pooled embeddings of the
training normals (Mahalanobis distance), as in both papers.

Recipe (the papers -> what we do on 2 CPU cores, and why):
  network     ResNet-18, ImageNet-pretrained in the papers; here from scratch (no weights can be
              downloaded), width 24 instead of 64 (a 64-wide step is ~7x slower on a CPU, and the shipped weights
              stay small).
  optimiser   SGD lr 0.03, momentum 0.9, weight decay 3e-5, cosine decay (both papers); batch 32 images
              per class (CutPaste: 96 in all for its 3-way task).
  schedule    CutPaste trains 256 epochs of ~300 MVTec images (~800 steps of 96); we run 1,000 steps.
  cutpaste    3-way: normal / CutPaste / CutPaste-scar (the paper's best variant).
  anatpaste   2-way: normal / AnatPaste (a CutPaste patch kept inside a threshold lung mask).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.paste import AUGMENTATIONS
from .networks import seeded_nets
from .trainer import BaselineConfig, NetsTrainer


@dataclass
class CutPasteConfig(BaselineConfig):
    width: int = 24
    head_layers: int = 2
    batch: int = 32               # normal images per step (and as many of each augmentation)
    steps: int = 1000
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 3e-5
    augmentations: tuple = ("cutpaste", "scar")
    snapshot_every: int = 100


@dataclass
class AnatPasteConfig(CutPasteConfig):
    augmentations: tuple = ("anatpaste",)


def cosine_lr(base: float, step: int, steps: int) -> float:
    """Cosine decay from `base` at step 0 to 0 at `steps` (a function of the step: nothing to checkpoint)."""
    return base * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


def augmented_batch(x: torch.Tensor, augmentations, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, 1, R, R] in [-1, 1] -> (images [B * (1 + A), 1, R, R], class labels [B * (1 + A)]): the batch,
    then one augmented copy per augmentation (class k = the k-th augmentation)."""
    assert x.ndim == 4 and x.shape[1] == 1, f"expected [B, 1, R, R], got {tuple(x.shape)}"
    unit = ((x[:, 0].cpu().numpy() + 1) / 2).astype(np.float32)          # [B, R, R] in [0, 1]
    images, labels = [x.cpu()], [torch.zeros(len(x), dtype=torch.long)]
    for k, name in enumerate(augmentations, start=1):
        fn = AUGMENTATIONS[name]
        out = np.stack([fn(im, rng) for im in unit])
        images.append(torch.from_numpy(out * 2 - 1)[:, None])
        labels.append(torch.full((len(x),), k, dtype=torch.long))
    return torch.cat(images).to(x.device), torch.cat(labels).to(x.device)


class CutPasteTrainer(NetsTrainer):
    method = "cutpaste"

    def __init__(self, cfg: CutPasteConfig, images):
        super().__init__(cfg, images)
        unknown = sorted(set(cfg.augmentations) - set(AUGMENTATIONS))
        if unknown:
            raise ValueError(f"{self.method}: unknown augmentation(s) {unknown}; known: {', '.join(AUGMENTATIONS)}")
        self.nets["net"] = seeded_nets(self.method, self.arch(), cfg.seed)["net"].to(self.device).train()
        self.opts["net"] = torch.optim.SGD(self.nets["net"].parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                           weight_decay=cfg.weight_decay)

    def arch(self) -> dict:
        c = self.cfg
        return {"resolution": c.resolution, "channels": c.channels, "width": c.width, "head_layers": c.head_layers,
                "n_classes": 1 + len(c.augmentations)}

    def step(self) -> dict:
        x, g = self.batch()
        rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=g)))
        images, labels = augmented_batch(x, self.cfg.augmentations, rng)
        lr = cosine_lr(self.cfg.lr, self.step_idx, self.cfg.steps)
        for group in self.opts["net"].param_groups:
            group["lr"] = lr
        logits, _ = self.nets["net"](images)
        loss = F.cross_entropy(logits, labels)
        self.opts["net"].zero_grad(set_to_none=True)
        loss.backward()
        self.opts["net"].step()
        self.step_idx += 1
        return {"loss": loss.item(), "accuracy": (logits.argmax(1) == labels).float().mean().item(), "lr": lr}


class AnatPasteTrainer(CutPasteTrainer):
    method = "anatpaste"

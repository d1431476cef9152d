"""ResNet-18 (He et al. 2016) for the self-supervised baselines (CutPaste, AnatPaste), trained from scratch.

CutPaste (Li et al., CVPR 2021) and AnatPaste (Sato et al. 2022) start from an ImageNet-pretrained
ResNet-18; no such weights can be downloaded on the machines this book is built on, so here it is
initialised randomly and `width` (the paper's 64) can shrink it for a CPU.

    stem     conv7x7/2 -> BN -> ReLU -> maxpool3x3/2                       [N, w, R/4, R/4]
    layer1-4 two BasicBlocks each, widths w, 2w, 4w, 8w, stride 2 from layer2 on   [N, 8w, R/32, R/32]
    pool     global average                                                 [N, 8w]   <- the embedding
    head     MLP projection (CutPaste: 512 x 8 hidden layers; here `head_layers` of 8w) -> linear classifier
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class ResNetConfig:
    resolution: int = 64
    channels: int = 1
    width: int = 64            # ResNet-18's 64 / 128 / 256 / 512
    head_layers: int = 2       # hidden layers of the projection MLP
    n_classes: int = 3         # normal + the pretext task's augmentations

    def to_dict(self) -> dict:
        return asdict(self)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class ResNet18(nn.Module):
    """`embed(x)` -> [N, 8w] pooled features; `forward(x)` -> (logits [N, n_classes], embedding [N, 8w])."""

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.stem = nn.Sequential(nn.Conv2d(cfg.channels, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        widths, blocks, c_in = [w, 2 * w, 4 * w, 8 * w], [], w
        for i, c in enumerate(widths):
            blocks += [BasicBlock(c_in, c, 1 if i == 0 else 2), BasicBlock(c, c, 1)]
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        head = []
        for _ in range(cfg.head_layers):
            head += [nn.Linear(c_in, c_in), nn.BatchNorm1d(c_in), nn.ReLU()]
        self.head = nn.Sequential(*head)
        self.classifier = nn.Linear(c_in, cfg.n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        r, c = self.cfg.resolution, self.cfg.channels
        assert x.shape[1:] == (c, r, r), f"expected [N, {c}, {r}, {r}], got {tuple(x.shape)}"
        return self.blocks(self.stem(x)).mean(dim=(2, 3))        # [N, 8w]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embed(x)
        return self.classifier(self.head(e)), e

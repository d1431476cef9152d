"""Frozen ImageNet features for Gaussian AD, PaDiM and PatchCore, from weights that are already here.

Those methods assume an ImageNet-pretrained CNN (Wide-ResNet, EfficientNet, ResNet-18). None can be
downloaded on the machines this book is built on; the only ImageNet-trained backbones available offline
are the AlexNet and VGG-16 inside the `stlpips-pytorch` wheel (shift-tolerant variants with anti-aliased
downsampling, Ghildyal & Liu 2022), loaded by `perceptual.build_stlpips`. We use those and say so.

`ImageNetFeatures(net)(x)` takes grey images [N, 1, H, W] in [-1, 1] (repeated to RGB and scaled with
ImageNet statistics, as LPIPS does) and returns the feature maps of its stages (the ReLU outputs LPIPS
taps), running only as deep as the deepest stage asked for. At 64 px input, AlexNet's stages are
64 x 30 x 30, 192 x 15 x 15, 384 x 8 x 8, 256 x 8 x 8, 256 x 8 x 8.
"""
from __future__ import annotations

import torch
from torch import nn

from ..provenance import file_sha256
from .perceptual import CHANNELS, build_stlpips, stlpips_weight_file


class ImageNetFeatures(nn.Module):
    def __init__(self, net: str = "alex", stages=(0, 1, 2)):
        super().__init__()
        if net not in CHANNELS:
            raise ValueError(f"backbone must be one of {sorted(CHANNELS)}, got {net!r}")
        stages = tuple(sorted(int(s) for s in stages))
        if not stages or stages[0] < 0 or stages[-1] >= len(CHANNELS[net]):
            raise ValueError(f"stages must be in 0..{len(CHANNELS[net]) - 1}, got {stages}")
        lpips = build_stlpips(net)
        inner = lpips.net.inner
        self.slices = nn.ModuleList(getattr(inner, f"slice{i + 1}") for i in range(stages[-1] + 1))
        self.register_buffer("shift", lpips.shift.clone())
        self.register_buffer("scale", lpips.scale.clone())
        self.net, self.stages = net, stages
        self.channels = [CHANNELS[net][s] for s in stages]
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True):      # always frozen
        return super().train(False)

    def weights_digest(self) -> str:
        return file_sha256(stlpips_weight_file(self.net))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        assert x.ndim == 4 and x.shape[1] == 1, f"expected grey images [N, 1, H, W], got {tuple(x.shape)}"
        h = (x.expand(-1, 3, -1, -1) - self.shift) / self.scale
        out = []
        for i, s in enumerate(self.slices):
            h = s(h)
            if i in self.stages:
                out.append(h)
        return out                                               # [N, C_s, h_s, w_s] per stage

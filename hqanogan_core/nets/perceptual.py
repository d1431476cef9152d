"""Perceptual distance (LPIPS family) that never downloads anything.

LPIPS (Zhang et al. 2018): feed both images through a frozen ImageNet backbone, unit-normalise every
tapped feature map along channels, square the difference, weight channels with a learned non-negative
1x1 conv ("lin" layer), average over space and sum over the tapped layers.

Two backends, one implementation (`LpipsNet`, which takes the backbone as an argument):

  'lpips'    the original AlexNet/VGG-16 backbone. Used only when the `lpips` package is importable
             (it ships the lin weights) AND torchvision's ImageNet weights for the backbone are already
             in the torch hub cache (`torch.hub.get_dir()/checkpoints/<file>`). We read that file
             ourselves with `torch.load(weights_only=True)`; torchvision is asked for an *untrained*
             network, so no code path can start a download.
  'stlpips'  shift-tolerant LPIPS (Ghildyal & Liu 2022, package `stlpips-pytorch`). Its wheel ships the
             FULL weights (backbone + lin) in `weights/vST0.0/<net>_shift_tolerant.pth`. We build its
             backbone class without any pretrained flag and load that file strictly ourselves; the
             package's own `LPIPS(...)` constructor is not used (with variant='' it would download).

`backend='auto'` picks 'lpips' when available, else 'stlpips'; the choice is printed once per process
and kept in `PerceptualDistance.backend_name` (e.g. "stlpips-alex") for logs and checkpoints.

Small images: LPIPS was calibrated on 64 x 64 patches (BAPPS) and the AlexNet trunk's deepest taps are
3 x 3 at 64 px; inputs smaller than `min_size` (default 64) are bilinearly upsampled to `min_size`
before the backbone. Spatial maps are always returned at the caller's input size.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# torchvision's ImageNet checkpoints (the file names in the hub cache) and LPIPS's tap points
TORCHVISION_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
TAPS = {"alex": [2, 5, 8, 10, 12], "vgg": [4, 9, 16, 23, 30]}          # slice ends into `features`
CHANNELS = {"alex": [64, 192, 384, 256, 256], "vgg": [64, 128, 256, 512, 512]}
# LPIPS input scaling: ImageNet statistics expressed for inputs in [-1, 1]
SHIFT = [-0.030, -0.088, -0.188]
SCALE = [0.458, 0.448, 0.450]

_announced: set[str] = set()


@dataclass
class PerceptualConfig:
    backend: str = "auto"      # 'auto' | 'lpips' | 'stlpips'
    net: str = "alex"          # 'alex' | 'vgg'
    min_size: int = 64         # smaller inputs are upsampled to this before the backbone
    verbose: bool = True       # print the chosen backend (once per process)


# ----------------------------------------------------------------------------- backend resolution


def torchvision_weight_file(net: str) -> Path:
    """Where torchvision would cache the backbone's ImageNet weights (may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILES[net]


def lpips_weight_file(net: str) -> Path | None:
    """The lin-layer weights shipped inside the `lpips` package, or None if it is not installed."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"


def stlpips_weight_file(net: str) -> Path:
    spec = importlib.util.find_spec("stlpips_pytorch")
    if spec is None or spec.origin is None:
        raise ImportError("no perceptual backend: install `stlpips-pytorch` (ships its weights) or `lpips` "
                          "with torchvision's ImageNet weights in the torch hub cache")
    return Path(spec.origin).parent / "weights" / "vST0.0" / f"{net}_shift_tolerant.pth"


def lpips_available(net: str = "alex") -> bool:
    """True when the original LPIPS can be built offline: package weights + cached torchvision backbone."""
    lin = lpips_weight_file(net)
    return lin is not None and lin.is_file() and torchvision_weight_file(net).is_file()


def resolve_backend(cfg: PerceptualConfig) -> str:
    """'lpips' or 'stlpips' (no net suffix). Raises if 'lpips' is requested but cannot be built offline."""
    if cfg.net not in CHANNELS:
        raise ValueError(f"net must be 'alex' or 'vgg', got {cfg.net!r}")
    if cfg.backend == "auto":
        return "lpips" if lpips_available(cfg.net) else "stlpips"
    if cfg.backend == "lpips" and not lpips_available(cfg.net):
        raise FileNotFoundError(
            f"backend 'lpips' needs the `lpips` package and {torchvision_weight_file(cfg.net)} "
            "(nothing is downloaded); use backend='auto' or 'stlpips'")
    if cfg.backend not in ("lpips", "stlpips"):
        raise ValueError(f"backend must be 'auto', 'lpips' or 'stlpips', got {cfg.backend!r}")
    return cfg.backend


# ----------------------------------------------------------------------------- the LPIPS computation


class TappedFeatures(nn.Module):
    """Split a `features` Sequential at `taps` (slice ends); forward returns the tapped maps as a list."""

    def __init__(self, features: nn.Sequential, taps: list[int]):
        super().__init__()
        starts = [0] + taps[:-1]
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in zip(starts, taps))

    def forward(self, x):
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out


class LpipsNet(nn.Module):
    """d(x0, x1) = sum_l mean_hw( lin_l( (norm(f_l(x0)) - norm(f_l(x1)))^2 ) ).

    `backbone(x)` must return a list of feature maps with `channels[l]` channels each. Without trained lin
    weights the lins are uniform (1/C_l: the "baseline" LPIPS, a plain normalised-feature distance).
    """

    def __init__(self, backbone: nn.Module, channels: list[int]):
        super().__init__()
        self.net = backbone
        self.channels = list(channels)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        for lin, c in zip(self.lins, channels):
            nn.init.constant_(lin.weight, 1.0 / c)
        self.register_buffer("shift", torch.tensor(SHIFT)[None, :, None, None])
        self.register_buffer("scale", torch.tensor(SCALE)[None, :, None, None])

    def forward(self, x0, x1, out_size=None):
        # x0, x1 [N, 3, H, W] in [-1, 1] -> (distance [N], map [N, 1, *out_size] or None)
        n = x0.shape[0]
        feats = self.net((torch.cat([x0, x1]) - self.shift) / self.scale)
        dist, layer_maps = 0.0, []
        for f, lin in zip(feats, self.lins):
            f = f * torch.rsqrt(f.square().sum(dim=1, keepdim=True) + 1e-20)   # unit norm over channels
            d = lin((f[:n] - f[n:]).square())                                   # [N, 1, h, w]
            dist = dist + d.mean(dim=[1, 2, 3])
            if out_size is not None:
                layer_maps.append(F.interpolate(d, size=out_size, mode="bilinear", align_corners=False))
        dmap = torch.stack(layer_maps).sum(0) if out_size is not None else None
        return dist, dmap


def load_lpips_state(model: LpipsNet, state: dict[str, torch.Tensor], backbone_prefix: str | None = "net.") -> None:
    """Load an (st)lpips-format state dict: 'lin{k}.model.1.weight', 'scaling_layer.*' and (optionally)
    the backbone under `backbone_prefix`. Strict: every lin (and backbone tensor, if given) must be there."""
    mapped = {}
    for k, v in state.items():
        if k.startswith("lin") and k.endswith(".weight"):
            mapped[f"lins.{int(k[3:].split('.')[0])}.weight"] = v
        elif k.startswith("scaling_layer."):
            mapped[k.split(".", 1)[1]] = v.reshape(1, 3, 1, 1)
        elif backbone_prefix and k.startswith(backbone_prefix):
            mapped[k] = v
    if backbone_prefix is None:  # keep the backbone weights we already have
        mapped.update({k: v for k, v in model.state_dict().items() if k.startswith("net.")})
        mapped.setdefault("shift", model.shift)
        mapped.setdefault("scale", model.scale)
    model.load_state_dict(_match_backbone_keys(model, mapped), strict=True)


def _match_backbone_keys(model: LpipsNet, mapped: dict) -> dict:
    """stlpips names its slices 'net.slice1.<i>.'; ours are 'net.slices.0.<j>.' for TappedFeatures. Map by order."""
    ours = [k for k in model.state_dict() if k.startswith("net.")]
    theirs = [k for k in mapped if k.startswith("net.")]
    if set(ours) == set(theirs):
        return mapped
    if len(ours) != len(theirs):
        raise KeyError(f"backbone has {len(ours)} tensors, weights file {len(theirs)}")
    out = {k: v for k, v in mapped.items() if not k.startswith("net.")}
    for a, b in zip(ours, theirs):
        out[a] = mapped[b]
    return out


def build_lpips(net: str = "alex") -> LpipsNet:
    """Original LPIPS from cached files only (raises FileNotFoundError otherwise)."""
    import torchvision

    if not lpips_available(net):
        raise FileNotFoundError(f"LPIPS '{net}' not available offline (see resolve_backend)")
    tv = torchvision.models.alexnet(weights=None) if net == "alex" else torchvision.models.vgg16(weights=None)
    tv_state = torch.load(torchvision_weight_file(net), map_location="cpu", weights_only=True)
    tv.features.load_state_dict({k[len("features."):]: v for k, v in tv_state.items() if k.startswith("features.")})
    model = LpipsNet(TappedFeatures(tv.features, TAPS[net]), CHANNELS[net])
    load_lpips_state(model, torch.load(lpips_weight_file(net), map_location="cpu", weights_only=True),
                     backbone_prefix=None)
    return model


def build_stlpips(net: str = "alex") -> LpipsNet:
    """Shift-tolerant LPIPS from the weights shipped in the stlpips-pytorch wheel (backbone + lins)."""
    from stlpips_pytorch import invariant_networks as inv

    if net == "alex":
        backbone = inv.alexnet(variant="shift_tolerant", filter_size=3)
    else:
        backbone = inv.vggnet(variant="shift_tolerant", filter_size=3, requires_grad=False)
    model = LpipsNet(_ListOutput(backbone), CHANNELS[net])
    state = torch.load(stlpips_weight_file(net), map_location="cpu", weights_only=True)
    load_lpips_state(model, {("net.inner." + k[4:] if k.startswith("net.") else k): v for k, v in state.items()})
    return model


class _ListOutput(nn.Module):
    """Wrap a backbone that returns a namedtuple so the state-dict keys read 'net.inner.*'."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return list(self.inner(x))


# ----------------------------------------------------------------------------- public module


class PerceptualDistance(nn.Module):
    """Frozen LPIPS-style distance. `forward(x0, x1)` -> [N]; `forward(x0, x1, spatial=True)` -> ([N], [N, 1, H, W]).

    Inputs: [N, C, H, W] in [-1, 1], C = 1 (repeated to RGB) or 3. Gradients flow to the inputs only.
    `model` injects a ready `LpipsNet` (tests, custom backbones); `backend_name` then names it.
    """

    def __init__(self, cfg: PerceptualConfig | None = None, model: LpipsNet | None = None,
                 backend_name: str | None = None):
        super().__init__()
        cfg = cfg or PerceptualConfig()
        self.cfg = cfg
        if model is None:
            backend = resolve_backend(cfg)
            model = build_lpips(cfg.net) if backend == "lpips" else build_stlpips(cfg.net)
            backend_name = f"{backend}-{cfg.net}"
        self.model = model
        self.backend_name = backend_name or f"custom-{cfg.net}"
        self.min_size = cfg.min_size
        self.eval().requires_grad_(False)
        if cfg.verbose and self.backend_name not in _announced:
            _announced.add(self.backend_name)
            print(f"perceptual distance: {self.backend_name}")

    def train(self, mode: bool = True):  # always eval: no dropout, no BN updates
        return super().train(False)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, spatial: bool = False):
        assert x0.shape == x1.shape and x0.ndim == 4 and x0.shape[1] in (1, 3), (x0.shape, x1.shape)
        size = tuple(x0.shape[2:])
        if x0.shape[1] == 1:
            x0, x1 = x0.expand(-1, 3, -1, -1), x1.expand(-1, 3, -1, -1)     # [N, 3, H, W]
        if min(size) < self.min_size:
            s = self.min_size / min(size)
            new = (round(size[0] * s), round(size[1] * s))
            x0 = F.interpolate(x0, size=new, mode="bilinear", align_corners=False)
            x1 = F.interpolate(x1, size=new, mode="bilinear", align_corners=False)
        dist, dmap = self.model(x0, x1, out_size=size if spatial else None)
        assert dist.shape == (x0.shape[0],), dist.shape
        if spatial:
            assert dmap.shape == (x0.shape[0], 1, *size), dmap.shape
            return dist, dmap
        return dist

"""Fréchet Inception Distance (FID, Heusel et al. 2017) -- only where Inception weights are already present.

FID fits a Gaussian to the 2048-d pool features of an ImageNet Inception-v3 for each image set and
reports the Fréchet (2-Wasserstein) distance between the two Gaussians:

    ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).         lower = closer; 0 for identical statistics

Offline by design: the weights are used only if torchvision's ImageNet Inception-v3 file
(``inception_v3_google-*.pth``) is already in the torch hub cache (``torch.hub.get_dir()/checkpoints``).
Nothing here ever downloads; without the file (and without an injected extractor) :func:`fid` returns
None and :func:`fid_unavailable_reason` says why. Use :mod:`hqanogan_core.swd` for a metric that needs no
pretrained network.

Caveats:
- These are torchvision's weights, not the TF "pt_inception-2015-12-05" graph used by the reference
  TTUR/pytorch-fid/StyleGAN implementations, and the resize differs, so values are comparable only with
  each other, not with published FIDs.
- ImageNet features on chest X-rays (grayscale, repeated to 3 channels) are a convention, not a
  validated perceptual measure for this domain. FID is also biased in the number of samples: compare
  runs only at equal N.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHTS_GLOB = "inception_v3_google-*.pth"
INCEPTION_SIZE = 299
FEATURE_DIM = 2048


def inception_weights_path() -> Path | None:
    """torchvision's Inception-v3 ImageNet weights if already in the torch hub cache, else None. Never downloads."""
    found = sorted((Path(torch.hub.get_dir()) / "checkpoints").glob(WEIGHTS_GLOB))
    found = [p for p in found if p.is_file()]
    return found[-1] if found else None


def fid_unavailable_reason(extractor: nn.Module | None = None) -> str | None:
    """One line saying why :func:`fid` would return None now; None when FID can be computed."""
    if extractor is not None or inception_weights_path() is not None:
        return None
    return (f"FID unavailable: no Inception-v3 weights ({WEIGHTS_GLOB}) in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'}, and downloads are disabled")


def load_inception_backbone(path: str | Path) -> nn.Module:
    """torchvision Inception-v3 with the ImageNet weights at `path`, returning [N, 2048] pool features.

    The official file includes the auxiliary classifier, so the net is built with aux_logits=True and
    loaded strictly (any key mismatch is an error, not silently random layers); then the aux head is
    dropped and fc replaced by Identity. transform_input=False: the input scaling is done by
    :class:`InceptionFeatures`. Read with weights_only=True (no pickled code is executed).
    """
    from torchvision.models.inception import Inception3

    net = Inception3(num_classes=1000, aux_logits=True, transform_input=False, init_weights=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    net.aux_logits, net.AuxLogits = False, None
    net.fc = nn.Identity()
    return net.eval().requires_grad_(False)


class InceptionFeatures(nn.Module):
    """Images [N, C, H, W] in [-1, 1] (C = 1 or 3) -> features [N, F] (2048 for Inception-v3).

    Preprocessing: grayscale is repeated to 3 channels; resized bilinearly (align_corners=False,
    antialiased, so downsampling does not alias) to 299x299; then fed to the net *as [-1, 1]*.
    That is exactly what torchvision does for these weights: its preset normalises [0, 1] pixels with
    the ImageNet mean/std and, because ``inception_v3(weights=...)`` sets transform_input=True, the
    model's first step maps that back to ``2 * pixel - 1`` (the weights were ported from TF, which
    expects [-1, 1]). Feeding ImageNet-normalised input to a transform_input=False net would therefore
    be off by a per-channel affine map; feeding [-1, 1] is equivalent to the official pipeline, without
    the round trip (checked in tests/test_fid.py).

    `backbone`: any module mapping [N, 3, size, size] -> [N, F] (or [N, F, 1, 1]); default: the
    cached weights (FileNotFoundError if absent -- this class never downloads). `size`: resize target.
    """

    def __init__(self, backbone: nn.Module | None = None, weights: str | Path | None = None,
                 size: int = INCEPTION_SIZE):
        super().__init__()
        if backbone is None:
            weights = weights if weights is not None else inception_weights_path()
            if weights is None:
                raise FileNotFoundError(fid_unavailable_reason())
            backbone = load_inception_backbone(weights)
        self.backbone = backbone.eval()
        self.size = size

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] in (1, 3), x.shape
        x = x.float()
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return x

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.preprocess(x)).flatten(1)


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and covariance [F, F] (unbiased, N-1, like np.cov) of features [N, F], in float64."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features [N >= 2, F], got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    values, vectors = np.linalg.eigh((s + s.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2). Scalars are accepted (1-D Gaussians,
    sigma = variance).

    d = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^1/2). The last trace equals the sum of square roots
    of the eigenvalues of the symmetric PSD matrix S1^1/2 S2 S1^1/2 (same spectrum as S1 S2), so we take two
    symmetric eigendecompositions instead of a general `sqrtm`: exact, real by construction, seconds rather
    than minutes at 2048 dimensions on a CPU, and no eps fix-up needed for singular covariances.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if not (mu1.shape == mu2.shape and s1.shape == s2.shape == (mu1.size, mu1.size)):
        raise ValueError(f"shape mismatch: mu {mu1.shape}, {mu2.shape}; sigma {s1.shape}, {s2.shape}")
    diff = mu1 - mu2
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    trace_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_covmean)


@torch.no_grad()
def extract_features(images: torch.Tensor, extractor: nn.Module, batch: int = 64) -> torch.Tensor:
    """[N, C, H, W] -> [N, F] (float64, CPU), `batch` images at a time on the extractor's device."""
    p = next(iter(extractor.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    out = [extractor(images[i:i + batch].to(device)).double().cpu() for i in range(0, len(images), batch)]
    return torch.cat(out)


_cached: tuple[Path, float, InceptionFeatures] | None = None


def _default_extractor() -> InceptionFeatures | None:
    """The cached-weights extractor, built once per weights file; None if no weights are cached."""
    global _cached
    path = inception_weights_path()
    if path is None:
        return None
    key = (path, path.stat().st_mtime)
    if _cached is None or _cached[:2] != key:
        _cached = (*key, InceptionFeatures(weights=path))
    return _cached[2]


@torch.no_grad()
def fid(real: torch.Tensor, fake: torch.Tensor, batch: int = 64, extractor: nn.Module | None = None) -> float | None:
    """FID between two image sets [N, C, H, W] in [-1, 1] (N >= 2 each; may differ).

    `extractor`: images -> features (e.g. ``InceptionFeatures(backbone=...)``); default: Inception-v3
    from the hub cache. Returns None when neither is available (see :func:`fid_unavailable_reason`);
    never downloads. Runs on the extractor's device (move it with ``.to(device)``).
    """
    if extractor is None:
        extractor = _default_extractor()
        if extractor is None:
            return None
    mu1, s1 = feature_statistics(extract_features(real, extractor, batch))
    mu2, s2 = feature_statistics(extract_features(fake, extractor, batch))
    return frechet_distance(mu1, s1, mu2, s2)

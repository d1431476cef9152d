"""Image in, score out: load a generator + encoder pair, fit the scorer on normals, score a folder.

    pipe = load_pipeline("data/pretrained/encoder64")      # shipped encoder; finds its generator
    scorer = fit_scorer(pipe, train_images)                 # W+ Gaussians + held-out standardisation
    out = scorer.score(test_images)                         # raw terms, z-scores, 'hqanogan'

What `run` may be (first match wins):
  * a shipped encoder folder (encoder.safetensors + manifest.json, format hqanogan-pretrained-encoder-v1):
    its manifest names the generator folder it was trained for
  * a generator (shipped folder with gan.safetensors, or a train-gan run with latest.safetensors) together
    with `encoder=` (a shipped encoder folder or a train-encoder checkpoint / folder); without `encoder=`
    the encoder is looked for in RUN/encoder (train-encoder's default output)

Nothing here imports training code: networks come from `hqanogan_core.pretrained` (safetensors only).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import pretrained as pt
from .scores import DEFAULT_TERMS, HQAnoGANScorer

__all__ = ["Pipeline", "load_pipeline", "split_held_out", "fit_scorer", "to_model_input", "HQAnoGANMethod"]


@dataclass
class Pipeline:
    G: torch.nn.Module
    D: torch.nn.Module | None
    E: torch.nn.Module
    info: dict = field(default_factory=dict)   # where each part came from, perceptual backend, ...

    @property
    def resolution(self) -> int:
        return self.G.resolution


def _load_gan(path: Path, device):
    """(G, D, description) from a shipped GAN folder or a train-gan run folder / checkpoint."""
    if pt.pretrained_gan_available(path):
        G, D, manifest = pt.load_pretrained_gan(path, device=device)
        return G, D, {"gan": str(path), "gan_kind": "pretrained", "gan_kimg": manifest["training"]["kimg"]}
    ckpt_file = path if path.suffix == ".safetensors" else path / "latest.safetensors"
    if ckpt_file.is_file():
        from .train import checkpoint as ckpt  # safetensors + JSON only; no trainer is imported

        G = ckpt.load_generator(ckpt_file, ema=True, device=device).eval().requires_grad_(False)
        D = ckpt.load_discriminator(ckpt_file, device=device).eval().requires_grad_(False)
        return G, D, {"gan": str(ckpt_file), "gan_kind": "train-gan checkpoint"}
    raise FileNotFoundError(f"{path} holds no generator: expected gan.safetensors + manifest.json (a shipped "
                            f"folder) or latest.safetensors (a train-gan run)")


def _load_encoder(path: Path, device):
    if pt.pretrained_encoder_available(path):
        E, manifest = pt.load_pretrained_encoder(path, device=device)
        return E, {"encoder": str(path), "encoder_kind": "pretrained", "perceptual": manifest.get("perceptual"),
                   "encoder_steps": manifest["training"]["steps"]}
    E, meta = pt.load_encoder(path, device=device)
    return E, {"encoder": str(path), "encoder_kind": "train-encoder checkpoint", "perceptual": meta.get("perceptual"),
               "encoder_steps": meta.get("step")}


def load_pipeline(run: str | Path | None = None, encoder: str | Path | None = None, device="cpu") -> Pipeline:
    """G, D and E ready for scoring (eval, no gradients). `run` defaults to the shipped encoder64."""
    run = Path(run) if run is not None else pt.default_encoder_path()
    if not run.exists():
        raise FileNotFoundError(f"{run} does not exist")
    if encoder is None and pt.pretrained_encoder_available(run):
        E, info = _load_encoder(run, device)
        manifest = pt.read_encoder_manifest(run)
        gan_path = (run / manifest["gan"]["path"]).resolve()
        G, D, gan_info = _load_gan(gan_path, device)
        pt.check_encoder_matches_gan(run, manifest, gan_path)
    else:
        G, D, gan_info = _load_gan(run, device)
        enc_path = Path(encoder) if encoder is not None else run / "encoder"
        if not enc_path.exists():
            raise FileNotFoundError(f"no encoder for {run}: {enc_path} does not exist (train one with "
                                    f"`python -m hqanogan_core train-encoder --run {run} --data DIR`)")
        E, info = _load_encoder(enc_path, device)
    if (E.num_ws, E.w_dim) != (G.num_ws, G.w_dim) or E.cfg.resolution != G.resolution:
        raise ValueError(f"encoder ({E.cfg.resolution} px, {E.num_ws} x {E.w_dim}) does not fit the generator "
                         f"({G.resolution} px, {G.num_ws} x {G.w_dim})")
    # E outputs offsets from its own w_avg copy; the generator's is the one that matters
    if not torch.allclose(E.w_avg, G.w_avg, atol=1e-6):
        raise ValueError("the encoder's w_avg differs from the generator's: it was trained for another generator")
    return Pipeline(G, D, E, {**gan_info, **info})


def split_held_out(n: int, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, held-out indices): a seeded random `fraction` of n normals is held out."""
    if not 0 < fraction < 1:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_held = max(2, int(round(n * fraction)))
    if n - n_held < 2:
        raise ValueError(f"need at least 4 normal images to fit and standardise, got {n}")
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def to_model_input(images: np.ndarray, resolution: int) -> torch.Tensor:
    """[N, H, W] float in [0, 1] -> [N, 1, R, R] float32 in [-1, 1] (antialiased resize if needed)."""
    assert images.ndim == 3, f"expected [N, H, W] grayscale images, got {images.shape}"
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True,
                                            align_corners=False)
    return x.clamp(0, 1) * 2 - 1


def fit_scorer(pipe: Pipeline, normals: torch.Tensor, held_out_fraction: float = 0.1, seed: int = 0,
               percep=None, batch: int = 64) -> HQAnoGANScorer:
    """An HQAnoGANScorer fitted on normals [N, 1, R, R]: Gaussians on 90 %, standardisation on 10 %."""
    if percep is None:
        from .nets.perceptual import PerceptualDistance

        percep = PerceptualDistance()
    device = pipe.G.w_avg.device
    fit_idx, held_idx = split_held_out(len(normals), held_out_fraction, seed)
    scorer = HQAnoGANScorer(pipe.G, pipe.E, pipe.D, percep.to(device), batch=batch, device=device)
    return scorer.fit(normals[fit_idx], normals[held_idx])


class HQAnoGANMethod:
    """The benchmark harness's view of HQ-AnoGAN: fit(normals [N, H, W] in [0, 1]) / score / anomaly_map.

    Networks are loaded (not trained) from `run` (default: the shipped encoder64 and its generator);
    `fit` fits the W+ Gaussians and the standardisation, so no abnormal label is ever used.
    """

    def __init__(self, run=None, encoder=None, seed: int = 0, terms=DEFAULT_TERMS, device="cpu",
                 held_out_fraction: float = 0.1):
        self.pipe = load_pipeline(run, encoder, device=device)
        self.seed, self.terms, self.held_out_fraction = seed, tuple(terms), held_out_fraction
        self.scorer: HQAnoGANScorer | None = None
        self.last: dict | None = None

    @property
    def info(self) -> dict:
        return {**self.pipe.info, "terms": list(self.terms), "held_out_fraction": self.held_out_fraction}

    def fit(self, images: np.ndarray) -> "HQAnoGANMethod":
        x = to_model_input(images, self.pipe.resolution)
        self.scorer = fit_scorer(self.pipe, x, self.held_out_fraction, self.seed)
        return self

    def score(self, images: np.ndarray) -> np.ndarray:
        if self.scorer is None:
            raise RuntimeError("call fit() before score()")
        self.last = self.scorer.score(to_model_input(images, self.pipe.resolution), names=self.terms)
        self._last_images = images          # anomaly_map(images) reuses these restorations
        return self.last["hqanogan"]

    def anomaly_map(self, images: np.ndarray) -> np.ndarray:
        """Smoothed |x - G(E(x))|, at the input's size. [N, H, W]"""
        same = getattr(self, "_last_images", None) is images
        maps = self.scorer.anomaly_maps(to_model_input(images, self.pipe.resolution),
                                        self.scorer.last_restored if same else None)      # [N, R, R]
        if maps.shape[1:] != images.shape[1:]:
            t = torch.from_numpy(maps)[:, None].float()
            maps = torch.nn.functional.interpolate(t, size=images.shape[1:], mode="bilinear",
                                                   align_corners=False)[:, 0].numpy()
        return maps


MAP_SCALE = 2.0   # residual maps are stored as 16-bit PNG: pixel = round(65535 * residual / MAP_SCALE)


def write_map_png(path: Path, residual: np.ndarray) -> None:
    """One residual map [H, W] (in [-1, 1] image units, so within [0, 2]) as a 16-bit grayscale PNG."""
    from PIL import Image

    assert residual.ndim == 2, residual.shape
    u16 = np.round(np.clip(residual / MAP_SCALE, 0, 1) * 65535).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(u16).save(path)


def score_folder(run, data, out_csv, maps_dir=None, encoder=None, split: str = "test",
                 held_out_fraction: float = 0.1, seed: int = 0, device="cpu") -> dict:
    """Fit on DATA/train/good, score DATA/<split>, write one CSV row per image (and maps); return a summary.

    CSV columns: image, anomaly_type, gt_label, hqanogan (the combined score), every raw term
    (image_residual, perceptual, feature_residual, latent, latent_l<k>, cycle) and its z-score (z_<term>).
    Maps (optional): MAPS/<anomaly_type>/<image name>.png, 16-bit, value = |x - G(E(x))| / 2 smoothed
    (see maps.json).
    """
    import csv
    import json

    from .benchmark import load_split
    from .metrics import auroc

    data, out_csv = Path(data), Path(out_csv)
    method = HQAnoGANMethod(run, encoder, seed=seed, device=device, held_out_fraction=held_out_fraction)
    train = load_split(data, "train")
    if (train.labels != 0).any():
        raise ValueError(f"{data / 'train'} holds abnormal images; HQ-AnoGAN fits on normals only")
    target = load_split(data, split)
    method.fit(train.images)
    method.score(target.images)
    scores = method.last
    columns = ["hqanogan"] + [k for k in scores if k != "hqanogan"]
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "anomaly_type", "gt_label", *columns])
        for i, path in enumerate(target.paths):
            writer.writerow([path, target.types[i], int(target.labels[i]), *(f"{scores[c][i]:.8g}" for c in columns)])
    if maps_dir is not None:
        maps_dir = Path(maps_dir)
        maps = method.anomaly_map(target.images)
        for path, kind, m in zip(target.paths, target.types, maps):
            write_map_png(maps_dir / str(kind) / (Path(path).stem + ".png"), m)
        (maps_dir / "maps.json").write_text(json.dumps({
            "what": "Gaussian-smoothed |x - G(E(x))| per pixel, x in [-1, 1]",
            "sigma_px": method.scorer.map_sigma, "png": "16-bit grayscale", "value": f"pixel / 65535 * {MAP_SCALE}",
        }, indent=2))
    labels = target.labels
    summary = {"n": len(labels), "columns": columns, "info": method.pipe.info}
    summary["auroc"] = auroc(scores["hqanogan"], labels) if 0 < labels.sum() < len(labels) else None
    return summary

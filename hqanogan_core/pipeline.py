"""Load a generator + encoder pair and fit the HQ-AnoGAN scorer on normals.

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

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import pretrained as pt
from .provenance import portable_path
from .scores import HQAnoGANScorer
from .terms import ScoreConfig

__all__ = ["Pipeline", "load_gan", "load_pipeline", "split_held_out", "fit_scorer"]


@dataclass
class Pipeline:
    G: torch.nn.Module
    D: torch.nn.Module | None
    E: torch.nn.Module
    info: dict = field(default_factory=dict)   # where each part came from, perceptual backend, ...

    @property
    def resolution(self) -> int:
        return self.G.resolution


def load_gan(path, device="cpu"):
    """(G, D, description) from a shipped GAN folder or a train-gan run folder / checkpoint."""
    path = Path(path)
    if pt.pretrained_gan_available(path):
        G, D, manifest = pt.load_pretrained_gan(path, device=device)
        return G, D, {"gan": portable_path(path), "gan_kind": "pretrained", "gan_kimg": manifest["training"]["kimg"],
                      "gan_step_seconds": manifest["training"].get("step_seconds")}
    ckpt_file = path if path.suffix == ".safetensors" else path / "latest.safetensors"
    if ckpt_file.is_file():
        from . import checkpoint as ckpt  # safetensors + JSON only; no trainer is imported

        G = ckpt.load_generator(ckpt_file, ema=True, device=device).eval().requires_grad_(False)
        D = ckpt.load_discriminator(ckpt_file, device=device).eval().requires_grad_(False)
        return G, D, {"gan": portable_path(ckpt_file), "gan_kind": "train-gan checkpoint"}
    raise FileNotFoundError(f"{path} holds no generator: expected gan.safetensors + manifest.json (a shipped "
                            f"folder) or latest.safetensors (a train-gan run)")


def _load_encoder(path: Path, device):
    if pt.pretrained_encoder_available(path):
        E, manifest = pt.load_pretrained_encoder(path, device=device)
        return E, {"encoder": portable_path(path), "encoder_kind": "pretrained",
                   "perceptual": manifest.get("perceptual"),
                   "encoder_steps": manifest["training"]["steps"],
                   "encoder_step_seconds": manifest["training"].get("step_seconds")}
    E, meta = pt.load_encoder(path, device=device)
    return E, {"encoder": portable_path(path), "encoder_kind": "train-encoder checkpoint",
               "perceptual": meta.get("perceptual"),
               "encoder_steps": meta.get("step")}


def _is_generator(path: Path) -> bool:
    """`load_gan` can read `path`: a shipped GAN folder, a train-gan run folder or its checkpoint file."""
    return (pt.pretrained_gan_available(path) or (path / "latest.safetensors").is_file()
            or (path.suffix == ".safetensors" and path.is_file()))


def _encoder_gan_path(encoder: Path) -> Path:
    """The generator an encoder was trained for, as the encoder itself records it.

    A shipped encoder folder: its manifest's gan.path (relative to the folder). A train-encoder folder or
    checkpoint: the checkpoint's "gan" record (path relative to its folder, then the absolute path); an
    older checkpoint without one: the folder above it (train-encoder's default --out is RUN/encoder).
    Raises FileNotFoundError naming the encoder and every place looked at."""
    if not encoder.exists():
        raise FileNotFoundError(f"encoder {encoder} does not exist")
    if pt.pretrained_encoder_available(encoder):
        where = f"gan.path in {encoder / pt.MANIFEST_FILE}"
        candidates = [(encoder / pt.read_encoder_manifest(encoder)["gan"]["path"]).resolve()]
    else:
        from . import checkpoint as ckpt  # the header only; no trainer is imported

        file = encoder / pt.ENCODER_WEIGHTS_FILE if encoder.is_dir() else encoder
        if not file.is_file():
            raise FileNotFoundError(f"encoder {encoder} is neither a shipped encoder folder (encoder.safetensors + "
                                    f"manifest.json) nor a train-encoder checkpoint: no {file}")
        try:
            record = ckpt.read_meta(file).get("gan") or {}
        except Exception as err:  # safetensors raises its own error types for other bytes
            raise pt.PretrainedFormatError(f"encoder {encoder}: {file} is not a train-encoder checkpoint "
                                           f"({type(err).__name__}: {err})") from None
        if record:
            where = f"the 'gan' record of {file}"
            candidates = [(file.parent / record["path"]).resolve(), Path(record["abs_path"])]
        else:
            where = f"the folder above it ({file} records no generator)"
            candidates = [file.parent.parent.resolve()]
    for path in candidates:
        if _is_generator(path):
            return path
    looked = " or ".join(dict.fromkeys(str(p) for p in candidates))
    raise FileNotFoundError(f"cannot find the generator of encoder {encoder}: looked for it at {looked} ({where}); "
                            f"pass the generator explicitly (score --run GAN, load_pipeline(run=GAN))")


def load_pipeline(run: str | Path | None = None, encoder: str | Path | None = None, device="cpu") -> Pipeline:
    """G, D and E ready for scoring (eval, no gradients).

    `run` defaults to the shipped encoder64, or, when only `encoder` is given, to the generator the encoder
    records (its manifest's gan.path, or a train-encoder checkpoint's "gan" record)."""
    if (encoder is None and run is not None and Path(run).is_dir() and not _is_generator(Path(run))
            and (Path(run) / pt.ENCODER_WEIGHTS_FILE).is_file() and not pt.pretrained_encoder_available(run)):
        run, encoder = None, Path(run)               # a train-encoder folder given as `run`
    if run is None and encoder is not None:          # the encoder alone: it names its own generator
        if pt.pretrained_encoder_available(encoder):
            run, encoder = Path(encoder), None       # a shipped encoder folder is a complete `run`
        else:
            run = _encoder_gan_path(Path(encoder))
    run = Path(run) if run is not None else pt.default_encoder_path()
    if not run.exists():
        raise FileNotFoundError(f"{run} does not exist")
    if encoder is None and pt.pretrained_encoder_available(run):
        E, info = _load_encoder(run, device)
        manifest = pt.read_encoder_manifest(run)
        gan_path = _encoder_gan_path(run)
        G, D, gan_info = load_gan(gan_path, device)
        pt.check_encoder_matches_gan(run, manifest, gan_path)
    else:
        G, D, gan_info = load_gan(run, device)
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
    info = {**gan_info, **info}
    if info.get("gan_step_seconds") is not None and info.get("encoder_step_seconds") is not None:
        info["train_seconds"] = info["gan_step_seconds"] + info["encoder_step_seconds"]   # GAN + encoder
    return Pipeline(G, D, E, info)


def split_held_out(n: int, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, held-out indices): a seeded random `fraction` of n normals is held out."""
    if not 0 < fraction < 1:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_held = max(2, int(round(n * fraction)))
    if n - n_held < 2:
        raise ValueError(f"need at least 4 normal images to fit and standardise, got {n}")
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


REFINED_FOLDER = "refined64"     # data/pretrained/<this>: refined codes shipped with the book

# the modules whose code decides what a fitted scorer holds (hashed into its cache key)
SCORER_CODE = ("scores.py", "terms.py", "repair.py", "gaussian.py", "pipeline.py", "nets/perceptual.py", "nets/psp.py",
               "nets/stylegan2.py")


def scorer_key(pipe: Pipeline, normals: torch.Tensor, config: ScoreConfig, seed: int, percep) -> str:
    """sha256 of everything a fitted scorer depends on: the networks' weights, the normals, the score
    configuration (which terms, the split of the normals), the perceptual backend and the scoring code."""
    import hashlib

    from .provenance import tensor_digest

    root = Path(__file__).parent
    h = hashlib.sha256()
    for m in (pipe.G, pipe.D, pipe.E):
        h.update((tensor_digest(m) if m is not None else "none").encode())
    h.update(normals.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([config.to_dict(), seed, getattr(percep, "backend_name", "")], sort_keys=True).encode())
    for f in SCORER_CODE:
        h.update((root / f).read_bytes())
    return h.hexdigest()


def fit_scorer(pipe: Pipeline, normals: torch.Tensor, config: ScoreConfig | None = None, seed: int = 0,
               percep=None, batch: int = 64, cache: str | Path | None = None) -> HQAnoGANScorer:
    """An HQAnoGANScorer fitted on normals [N, 1, R, R] under `config` (default ScoreConfig()): Gaussians
    on 90 %, standardisation on the `config.held_out_fraction` held out.

    cache: a folder of fitted states (safetensors + JSON, keyed by `scorer_key`): a matching one is loaded
    instead of fitting again (a minute on a CPU at 64 px), a new fit is written there."""
    if percep is None:
        from .nets.perceptual import PerceptualDistance

        percep = PerceptualDistance()
    device = pipe.G.w_avg.device
    config = config or ScoreConfig()
    scorer = HQAnoGANScorer(pipe.G, pipe.E, pipe.D, percep.to(device), batch=batch, device=device, config=config)
    from .paths import data_dir               # refined codes are kept by image: shipped ones, then this cache
    from .scores import RefinedCodes

    scorer.refined = RefinedCodes(read_from=[data_dir() / "pretrained" / REFINED_FOLDER, *([cache] if cache else [])],
                                  write_to=cache)
    file = None
    if cache is not None:
        from . import checkpoint as ckpt

        file = Path(cache) / f"scorer-{scorer_key(pipe, normals, config, seed, percep)[:16]}.safetensors"
        if file.is_file():
            tensors, meta = ckpt.load_checkpoint(file)
            return scorer.load_state(tensors, meta)
    fit_idx, held_idx = split_held_out(len(normals), config.held_out_fraction, seed)
    scorer.fit(normals[fit_idx], normals[held_idx])
    if file is not None:
        tensors, meta = scorer.state()
        ckpt.save_checkpoint(file, tensors, dict(meta, seed=seed,
                                                  n_normals=len(normals)), sidecar=False)
    return scorer

"""The shipped pretrained GAN: load it safely, and reproduce the image-quality figure it was shipped with.

A pretrained GAN folder (default `data/pretrained/gan64`, written by `hqanogan_core.train.export`):

    gan.safetensors   the weights of G_ema ("G_ema." keys) and D ("D." keys), nothing else
    manifest.json     format, training config, architecture, command, code revision, kimg, times,
                      SWD with its exact recipe, file sizes, torch version, device
    log.jsonl         the training log (one line per tick)
    samples.png       the last sample grid written during training

Loading reads tensors with safetensors only (nothing is ever unpickled) and builds the networks from
the manifest's architecture section, so no training code is imported here.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from hqanogan_core.nets.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from hqanogan_core.paths import data_dir

FORMAT = "hqanogan-pretrained-gan-v1"
WEIGHTS_FILE = "gan.safetensors"
MANIFEST_FILE = "manifest.json"
HEADER_KEY = "hqanogan_pretrained"   # safetensors header metadata: {"format": FORMAT}

__all__ = [
    "FORMAT", "PretrainedFormatError", "default_gan_path", "pretrained_gan_available", "read_manifest",
    "load_pretrained_gan", "real_images_for_swd", "fake_images_for_swd", "swd_from_recipe", "manifest_facts",
    "phantom_swd_recipe", "ENCODER_FORMAT", "default_encoder_path", "pretrained_encoder_available",
    "load_pretrained_encoder", "load_encoder", "read_encoder_manifest", "check_encoder_matches_gan",
]


class PretrainedFormatError(ValueError):
    """A pretrained folder or file is not what the loader expects (format, keys or shapes)."""


def default_gan_path() -> Path:
    return data_dir() / "pretrained" / "gan64"


def pretrained_gan_available(path: str | Path | None = None) -> bool:
    """True when `path` (default data/pretrained/gan64) holds both the weights and the manifest."""
    path = Path(path) if path is not None else default_gan_path()
    return (path / WEIGHTS_FILE).is_file() and (path / MANIFEST_FILE).is_file()


def read_manifest(path: str | Path | None = None) -> dict:
    """The manifest of a pretrained folder, with its format checked."""
    path = Path(path) if path is not None else default_gan_path()
    mfile = path / MANIFEST_FILE
    if not mfile.is_file():
        raise FileNotFoundError(f"no pretrained GAN manifest at {mfile}")
    try:
        manifest = json.loads(mfile.read_text())
    except json.JSONDecodeError as err:
        raise PretrainedFormatError(f"{mfile} is not valid JSON: {err}") from None
    if manifest.get("format") != FORMAT:
        raise PretrainedFormatError(f"{mfile} has format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def _check_weights_header(wfile: Path) -> None:
    try:
        with safe_open(str(wfile), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for non-safetensors bytes
        raise PretrainedFormatError(f"{wfile} is not a safetensors file ({type(err).__name__}: {err})") from None
    try:
        fmt = json.loads(meta.get(HEADER_KEY, "{}")).get("format")
    except json.JSONDecodeError:
        fmt = None
    if fmt != FORMAT:
        raise PretrainedFormatError(f"{wfile} is not an hqanogan pretrained GAN (header format {fmt!r}, "
                                    f"expected {FORMAT!r}); training checkpoints are exported with "
                                    "`python -m hqanogan_core.train.export RUN OUT`")


def _load_module(module: torch.nn.Module, prefix: str, tensors: dict, wfile: Path) -> None:
    """Copy `prefix.*` tensors into `module`, naming the file and every missing/unexpected/misshapen key."""
    n = len(prefix) + 1
    state = {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs net {tuple(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[:3]})")
        if shapes:
            parts.append("shape mismatch: " + "; ".join(shapes[:3]))
        raise PretrainedFormatError(f"{wfile}: '{prefix}' weights do not match the architecture in the manifest: "
                                    + ", ".join(parts))
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def load_pretrained_gan(path: str | Path | None = None, device="cpu"):
    """(G_ema, D, manifest) from a pretrained folder (default data/pretrained/gan64).

    Both nets are float32, in eval mode, with gradients off. Raises FileNotFoundError when the folder
    is incomplete and PretrainedFormatError (naming the file) for a wrong format, keys or shapes.
    """
    path = Path(path) if path is not None else default_gan_path()
    wfile = path / WEIGHTS_FILE
    if not wfile.is_file():
        raise FileNotFoundError(f"no pretrained GAN weights at {wfile}")
    manifest = read_manifest(path)
    _check_weights_header(wfile)
    arch = manifest.get("architecture", {})
    try:
        G = Generator(GeneratorConfig(**arch["generator"]))
        D = Discriminator(DiscriminatorConfig(**arch["discriminator"]))
    except (KeyError, TypeError) as err:
        raise PretrainedFormatError(f"{path / MANIFEST_FILE}: bad 'architecture' section ({err})") from None
    tensors = load_file(str(wfile))  # safetensors: plain tensors, no code
    other = sorted(k for k in tensors if not k.startswith(("G_ema.", "D.")))
    if other:
        raise PretrainedFormatError(f"{wfile}: unexpected tensors outside G_ema./D. (e.g. {other[:3]})")
    _load_module(G, "G_ema", tensors, wfile)
    _load_module(D, "D", tensors, wfile)
    G = G.to(device).eval().requires_grad_(False)
    D = D.to(device).eval().requires_grad_(False)
    return G, D, manifest


# ----------------------------------------------------------------------------- the SWD recipe


def _phantom_real_images(real: dict, n: int, resolution: int) -> torch.Tensor:
    """Phantom train images 0..n-1 exactly as the training loader saw them. [n, 1, R, R] in [-1, 1]"""
    from hqanogan_core.data.phantom import PhantomConfig, render_case

    cfg = dict(real.get("phantom_config") or {"size": resolution})
    for key, value in cfg.items():  # JSON turns tuples into lists
        if isinstance(value, list):
            cfg[key] = tuple(value)
    config = PhantomConfig(**cfg)
    out = []
    for i in range(n):
        img, _ = render_case(int(real["seed"]), i, None, config, split=real.get("split", "train"))
        # write_phantom_dataset stores 8-bit PNG: round(img * 255); load_images divides by 255
        u8 = np.round(img * 255.0).astype(np.uint8)
        out.append(torch.from_numpy(u8.astype(np.float32) / 255.0))
    x = torch.stack(out)[:, None]                                         # [n, 1, S, S] in [0, 1]
    if x.shape[-1] != resolution:  # the training loader's resize (antialiased bilinear)
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1) * 2 - 1


def real_images_for_swd(manifest: dict, n: int | None = None) -> torch.Tensor:
    """The exact real image set of the manifest's export-time SWD. [N, 1, R, R] float32 in [-1, 1]

    The training data are 8-bit PNGs written by `write_phantom_dataset`; we re-render phantom train
    images 0..N-1 with the recorded seed and phantom config and quantise them to uint8 the same way,
    then apply the training loader's normalisation (x / 255 * 2 - 1, resized like `load_images`).
    """
    recipe = manifest.get("swd_export") or {}
    real = recipe.get("recipe", {}).get("real")
    if not real:
        raise PretrainedFormatError("manifest has no export-time SWD recipe (swd_export.recipe.real)")
    if real.get("source") != "phantom":
        raise PretrainedFormatError(f"cannot regenerate real images of source {real.get('source')!r}")
    n = int(recipe["recipe"]["n"]) if n is None else int(n)
    return _phantom_real_images(real, n, int(manifest["architecture"]["generator"]["resolution"]))


@torch.no_grad()
def fake_images_for_swd(G: Generator, n: int, seed: int, batch: int = 64, psi: float = 1.0,
                        noise_mode: str = "const") -> torch.Tensor:
    """G(z) for z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed)) on the CPU,
    in batches of `batch`, psi 1, constant noise. [n, C, R, R] on the CPU."""
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, G.z_dim, generator=g)
    device = next(G.parameters()).device
    out = [G(z[i:i + batch].to(device), psi=psi, noise_mode=noise_mode).float().cpu() for i in range(0, n, batch)]
    return torch.cat(out)


def swd_from_recipe(G: Generator, manifest: dict, real: torch.Tensor | None = None) -> dict:
    """Recompute the manifest's export-time SWD with the current code: {'avg', 'levels'} (x1e3)."""
    from hqanogan_core.swd import swd

    recipe = manifest["swd_export"]["recipe"]
    real = real_images_for_swd(manifest) if real is None else real
    fake = fake_images_for_swd(G, int(recipe["n"]), int(recipe["seed"]), int(recipe.get("batch", 64)),
                               float(recipe.get("psi", 1.0)), recipe.get("noise_mode", "const"))
    result = swd(real, fake, seed=int(recipe["seed"]), **recipe.get("swd_kwargs", {}))
    return {"avg": result["avg"], "levels": {str(k): v for k, v in result["levels"].items()}}


def manifest_facts(manifest: dict) -> dict:
    """The provenance figures a chapter quotes: kimg, hours of training steps and wall clock, device,
    final ADA p, shipped megabytes, code revision (10 characters), preset and resolution."""
    t, code = manifest["training"], manifest.get("code", {})
    revision = code.get("revision_at_training") or code.get("revision") or "unknown"
    return dict(kimg=t["kimg"], step_hours=t["step_seconds"] / 3600, wall_hours=t["wall_clock"]["seconds"] / 3600,
                device=t["device"], p=t["augment_p"], mb=manifest["total_bytes"] / 1e6, revision=revision[:10],
                preset=manifest.get("preset") or "custom",
                resolution=manifest["architecture"]["generator"]["resolution"])


def phantom_swd_recipe(resolution: int, n: int = 256, seed: int = 0, phantom_seed: int = 0,
                       phantom_size: int = 64) -> dict:
    """A manifest-shaped dict holding only an export-style SWD recipe, for a GAN trained on the book's
    phantom set but not exported (pass it to `real_images_for_swd` / `swd_from_recipe`)."""
    real = {"source": "phantom", "seed": phantom_seed, "split": "train", "phantom_config": {"size": phantom_size}}
    return {"architecture": {"generator": {"resolution": resolution}},
            "swd_export": {"recipe": {"n": n, "seed": seed, "psi": 1.0, "noise_mode": "const", "batch": 64,
                                      "real": real}}}


# ----------------------------------------------------------------------------- encoders

ENCODER_FORMAT = "hqanogan-pretrained-encoder-v1"
ENCODER_WEIGHTS_FILE = "encoder.safetensors"


def default_encoder_path() -> Path:
    return data_dir() / "pretrained" / "encoder64"


def pretrained_encoder_available(path: str | Path | None = None) -> bool:
    """True when `path` (default data/pretrained/encoder64) holds the encoder weights and its manifest."""
    path = Path(path) if path is not None else default_encoder_path()
    if not ((path / ENCODER_WEIGHTS_FILE).is_file() and (path / MANIFEST_FILE).is_file()):
        return False
    try:
        return json.loads((path / MANIFEST_FILE).read_text()).get("format") == ENCODER_FORMAT
    except (OSError, json.JSONDecodeError):
        return False


def _build_encoder(kind: str, enc_cfg: dict, where: Path):
    from hqanogan_core.nets.psp import EncoderConfig, build_encoder

    try:
        cfg = dict(enc_cfg)
        cfg["blocks"] = tuple(cfg["blocks"])
        return build_encoder(kind, EncoderConfig(**cfg))
    except (KeyError, TypeError, ValueError) as err:
        raise PretrainedFormatError(f"{where}: bad encoder description ({err})") from None


def read_encoder_manifest(path: str | Path | None = None) -> dict:
    """The manifest of a shipped encoder folder, with its format checked."""
    path = Path(path) if path is not None else default_encoder_path()
    mfile = path / MANIFEST_FILE
    if not mfile.is_file():
        raise FileNotFoundError(f"no pretrained encoder manifest at {mfile}")
    try:
        manifest = json.loads(mfile.read_text())
    except json.JSONDecodeError as err:
        raise PretrainedFormatError(f"{mfile} is not valid JSON: {err}") from None
    if manifest.get("format") != ENCODER_FORMAT:
        raise PretrainedFormatError(f"{mfile} has format {manifest.get('format')!r}, expected {ENCODER_FORMAT!r}")
    return manifest


def check_encoder_matches_gan(path: str | Path, manifest: dict, gan_path: str | Path) -> None:
    """Raise PretrainedFormatError unless gan_path's weights are the ones the encoder was trained for
    (sha256 recorded in the encoder's manifest)."""
    import hashlib

    want = manifest.get("gan", {}).get("sha256")
    wfile = Path(gan_path) / WEIGHTS_FILE
    if want and wfile.is_file():
        got = hashlib.sha256(wfile.read_bytes()).hexdigest()
        if got != want:
            raise PretrainedFormatError(f"{Path(path) / MANIFEST_FILE}: the encoder was trained for a generator "
                                        f"with sha256 {want[:12]}..., but {wfile} has {got[:12]}...")


def load_pretrained_encoder(path: str | Path | None = None, device="cpu"):
    """(E, manifest) from a shipped encoder folder (default data/pretrained/encoder64).

    `manifest["gan"]["path"]` names the generator folder it was trained for (relative to `path`);
    `load_pipeline` in `hqanogan_core.pipeline` resolves it. E is float32, eval, gradients off.
    """
    path = Path(path) if path is not None else default_encoder_path()
    wfile, mfile = path / ENCODER_WEIGHTS_FILE, path / MANIFEST_FILE
    if not wfile.is_file():
        raise FileNotFoundError(f"no pretrained encoder weights at {wfile}")
    manifest = read_encoder_manifest(path)
    try:
        with safe_open(str(wfile), framework="pt") as f:
            fmt = json.loads((f.metadata() or {}).get(HEADER_KEY, "{}")).get("format")
    except Exception as err:
        raise PretrainedFormatError(f"{wfile} is not a safetensors file ({type(err).__name__}: {err})") from None
    if fmt != ENCODER_FORMAT:
        raise PretrainedFormatError(f"{wfile} is not an hqanogan pretrained encoder (header format {fmt!r})")
    E = _build_encoder(manifest["encoder"]["kind"], manifest["encoder"]["config"], mfile)
    tensors = load_file(str(wfile))
    _load_module(E, "E", tensors, wfile)
    return E.to(device).eval().requires_grad_(False), manifest


def load_encoder(path, device="cpu"):
    """(E, meta) from an encoder *training* checkpoint (train-encoder's encoder.safetensors, or its folder).

    Reads the safetensors header JSON and the "E." tensors only: no optimiser, nothing unpickled.
    """
    path = Path(path)
    if path.is_dir():
        path = path / ENCODER_WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no encoder checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("hqanogan", "{}"))
    except Exception as err:
        raise PretrainedFormatError(f"{path} is not a safetensors file ({type(err).__name__}: {err})") from None
    if meta.get("kind") != "encoder":
        raise PretrainedFormatError(f"{path} is not an encoder checkpoint (kind {meta.get('kind')!r})")
    E = _build_encoder(meta["config"]["encoder"], meta["encoder_config"], path)
    tensors = load_file(str(path))
    _load_module(E, "E", tensors, path)
    return E.to(device).eval().requires_grad_(False), meta

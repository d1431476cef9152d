"""Safe, atomic checkpoints: every tensor in one safetensors file, everything else as JSON.

A checkpoint is ONE `.safetensors` file whose header metadata holds the JSON document (config,
counters, optimiser hyper-parameters, numpy/python RNG states) under the key "hqanogan"; tensors and
metadata are therefore replaced together, atomically (temp file in the same folder, fsync, os.replace).
A `.json` sidecar with the same document is written next to it for people and other tools; loading
reads the header, never the sidecar. Nothing is ever unpickled.

Tensor key prefixes: "G.", "D.", "G_ema." (state dicts), "optG.state.<i>.<key>", "optD.state...",
"rng.torch", "augment.p", "pl_mean", "ada.acc".
"""
from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

META_KEY = "hqanogan"
FORMAT = "hqanogan-gan-checkpoint-v1"


class CheckpointMismatchError(ValueError):
    """The checkpoint was trained with a configuration incompatible with the requested one."""


# ----------------------------------------------------------------------------- atomic file writes


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then os.replace: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def remove_stale_temp_files(path) -> list[Path]:
    """Delete the temp files a killed `atomic_write_bytes` left beside `path` and its `.json` sidecar.

    Only for files with a single writer (a training run's own checkpoint, called before it starts):
    another process's write in progress would lose its temp file. Returns what was removed."""
    path = Path(path)
    removed = []
    for target in (path, path.with_suffix(".json")):
        for tmp in target.parent.glob(f".{target.name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


# ----------------------------------------------------------------------------- save / load


def save_checkpoint(path, tensors: dict[str, torch.Tensor], meta: dict, sidecar: bool = True) -> Path:
    """Atomically write tensors + JSON-able meta to `path` (.safetensors) and a `.json` sidecar."""
    path = Path(path)
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    doc = dict(meta, format=FORMAT)
    data = st_save(flat, metadata={META_KEY: json.dumps(doc)})
    atomic_write_bytes(path, data)
    if sidecar:
        atomic_write_json(path.with_suffix(".json"), doc)
    return path


def read_meta(path) -> dict:
    """The JSON document of a checkpoint (reads only the header)."""
    with safe_open(str(path), framework="pt") as f:
        md = f.metadata() or {}
    if META_KEY not in md:
        raise ValueError(f"{path} is not an hqanogan checkpoint (no '{META_KEY}' metadata)")
    return json.loads(md[META_KEY])


def load_checkpoint(path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors on CPU, meta). safetensors only: loading never executes pickled code."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    meta = read_meta(path)
    tensors = st_load(path.read_bytes())
    return tensors, meta


def check_config(path, saved: dict, current: dict, fields) -> None:
    """Raise CheckpointMismatchError naming the checkpoint and every differing field in `fields`."""
    diffs = [f for f in fields if saved.get(f) != current.get(f)]
    if diffs:
        parts = [f"{f}={saved.get(f)!r} but config says {current.get(f)!r}" for f in diffs]
        raise CheckpointMismatchError(f"checkpoint {path} was trained with " + "; ".join(parts))


# ----------------------------------------------------------------------------- module / optimiser / RNG state


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def _json_value(v):
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, torch.Tensor):
        return v.item()
    return v


def optimizer_state(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten an optimiser: its state tensors under `prefix.state.<i>.<key>`, scalars into JSON."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{prefix}.state.{idx}.{key}"] = val
            else:
                scalars[f"{idx}.{key}"] = val
    groups = [{k: _json_value(v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def load_optimizer_state(opt: torch.optim.Optimizer, prefix: str, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    head = prefix + ".state."
    for k, v in tensors.items():
        if k.startswith(head):
            idx, key = k[len(head):].split(".", 1)
            state.setdefault(int(idx), {})[key] = v
    for k, v in meta.get("scalars", {}).items():
        idx, key = k.split(".", 1)
        state.setdefault(int(idx), {})[key] = v
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """torch CPU (+CUDA) generator states as uint8 tensors; numpy and python states as JSON."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    py = random.getstate()
    npst = np.random.get_state(legacy=False)  # {'bit_generator', 'state': {'key': uint32[624], 'pos'}, ...}
    npst = dict(npst, state={"key": npst["state"]["key"].tolist(), "pos": int(npst["state"]["pos"])})
    meta = {"numpy": npst, "python": [py[0], list(py[1]), py[2]]}
    return tensors, meta


def set_rng_state(tensors: dict, meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    npst = meta["numpy"]
    key = np.asarray(npst["state"]["key"], dtype=np.uint32)
    np.random.set_state(dict(npst, state={"key": key, "pos": npst["state"]["pos"]}))
    v, state, gauss = meta["python"]
    random.setstate((v, tuple(state), gauss))


# ----------------------------------------------------------------------------- downstream convenience


def load_generator(path, ema: bool = True, device="cpu"):
    """The trained generator of a GAN checkpoint (G_ema by default), in eval mode, grads off."""
    from .nets.stylegan2 import Generator
    from .presets import GanTrainConfig, generator_config

    tensors, meta = load_checkpoint(path)
    cfg = GanTrainConfig.from_dict(meta["config"])
    G = Generator(generator_config(cfg))
    G.load_state_dict(unprefixed("G_ema" if ema else "G", tensors))
    return G.to(device).eval().requires_grad_(False)


def load_discriminator(path, device="cpu"):
    """The trained discriminator of a GAN checkpoint, in eval mode, grads off."""
    from .nets.stylegan2 import Discriminator
    from .presets import GanTrainConfig, discriminator_config

    tensors, meta = load_checkpoint(path)
    cfg = GanTrainConfig.from_dict(meta["config"])
    D = Discriminator(discriminator_config(cfg))
    D.load_state_dict(unprefixed("D", tensors))
    return D.to(device).eval().requires_grad_(False)

"""Ship a trained baseline: weights only, a manifest a reader can trust, and its validation AUROC.

    python -m hqanogan_core export-baseline ae data/cache/runs/ae data/pretrained/ae \\
        --data data/cache/phantom64 --command "python -m hqanogan_core train-baseline ae ..."

writes OUT/weights.safetensors (the nets' tensors and the run's config/arch in the header; no optimiser
or RNG state), OUT/log.jsonl (the training log) and OUT/manifest.json: method, command, config, seed,
steps, seconds inside the training step, code revision, data (repository-relative path and phantom
fingerprint), and the AUROC with its bootstrap 95 % CI on DATA/valid computed through the method
interface from the shipped weights, which tests/test_shipped_baselines.py reproduces.

`keep_refined_codes` does the same kind of job for `ship-refined`: the refined W+ codes of the images the
book restores, out of a cache that holds codes of every image ever restored.
"""
from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from . import metrics
from .data.splits import load_split
from .methods import METHODS
from .methods.base import n_parameters
from .methods.learned import SHIPPED_WEIGHTS, images_digest, weights_file
from .provenance import code_revision, file_sha256, images_signature, portable_path
from .train.baselines import RECIPES, build_nets, scoring_nets
from .train.loop import read_log, step_seconds

SHIPPED_BASELINE_FORMAT = "hqanogan-pretrained-baseline-v1"   # the folder (its weights: train.baselines format)
MANIFEST_FILE = "manifest.json"


def validation_auroc(method: str, weights, data, seed: int = 0, n_boot: int = 1000, train=None) -> dict:
    """AUROC [95 % CI] of `method` with these weights on DATA/valid (fitted on DATA/train/good)."""
    model = METHODS[method](run=weights, seed=seed)
    train = train if train is not None else load_split(data, "train")
    valid = load_split(data, "valid")
    model.fit(train.images, valid=valid)
    seen = getattr(model, "labelled_indices", lambda v: np.zeros(0, dtype=np.int64))(valid)
    if len(seen):                         # a semi-supervised method is not judged on the images it trained on
        valid = valid.take(np.setdiff1d(np.arange(len(valid)), seen))
    scores = np.asarray(model.score(valid.images)["pred_score"], dtype=np.float64)
    value, lo, hi = metrics.bootstrap_ci(metrics.auroc, scores, valid.labels, n_boot=n_boot, seed=seed)
    return {"split": "valid", "n": int(len(valid)), "n_abnormal": int(valid.labels.sum()), "auroc": value,
            "ci95": [lo, hi], "n_boot": n_boot, "excluded_labelled": int(len(seen))}


def _data_section(data, train, method: str, config: dict) -> dict:
    """Where the weights were trained: the folder, its phantom fingerprint, and the digest of the training
    images and of any labelled validation images (`LearnedBaseline.fit` loads shipped weights only for
    exactly these)."""
    data = Path(data)
    marker = data / "fingerprint.txt"
    cfg = RECIPES[method][0].from_dict(config)
    valid = load_split(data, "valid") if (data / "valid").is_dir() else None
    extras = METHODS[method].training_extras(valid, cfg)
    return {"path": portable_path(data), "fingerprint": marker.read_text().strip() if marker.exists() else None,
            "train_images_sha256": images_digest(train.images, *(v.numpy() for v in extras.values())),
            "train_images_signature": images_signature(train.images, *(v.numpy() for v in extras.values())),
            "n_train": len(train), "n_labelled": int(sum(len(v) for v in extras.values()))}


def export_baseline(run_dir, out_dir, method: str, data, command: str, note: str = "") -> dict:
    """Write the shipped folder of a train-baseline run; returns the manifest."""
    t0 = time.time()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    source = weights_file(run_dir)
    if source is None:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint.safetensors (a train-baseline run folder)")
    tensors, meta = ckpt.load_checkpoint(source)
    if meta.get("kind") != "baseline" or meta.get("method") != method:
        raise ValueError(f"{source} is a {meta.get('method')!r} {meta.get('kind')!r} checkpoint, not {method!r}")
    lines = read_log(run_dir / "log.jsonl")
    train = load_split(data, "train")
    needed = scoring_nets(method)          # training-only nets (e.g. Deep SVDD's decoder) are not shipped
    nets = {k: v.float().contiguous() if v.is_floating_point() else v.contiguous()
            for k, v in sorted(tensors.items())
            if k.startswith("net.") and (needed is None or k.split(".")[1] in needed)}
    shipped_meta = {k: meta[k] for k in ("kind", "baseline_format", "method", "config", "arch", "step") if k in meta}
    shipped_meta["train_seconds"] = round(step_seconds(lines), 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt.save_checkpoint(out_dir / SHIPPED_WEIGHTS, nets, shipped_meta, sidecar=False)
    if lines:
        shutil.copyfile(run_dir / "log.jsonl", out_dir / "log.jsonl")
    start = next((ln for ln in lines if ln.get("event") == "start"), {})
    manifest = {
        "format": SHIPPED_BASELINE_FORMAT, "method": method, "note": note, "command": command,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "code": code_revision(),
        "config": meta["config"], "arch": meta["arch"], "seed": meta["config"]["seed"],
        "training": {"steps": meta["step"], "step_seconds": shipped_meta["train_seconds"],
                     "step_seconds_measures": "time inside the training step only (log.jsonl s_per_step x steps)",
                     "device": start.get("device"), "torch": meta.get("torch"), "images": start.get("n_images"),
                     "parameters": n_parameters(*build_nets(method, meta["arch"]).values()),   # not buffers
                     "parameters_shipped": n_parameters(*(n for k, n in build_nets(method, meta["arch"]).items()
                                                          if needed is None or k in needed))},
        "data": _data_section(data, train, method, meta["config"]),
        "validation": validation_auroc(method, out_dir, data, train=train),
    }
    manifest["export_seconds"] = round(time.time() - t0, 1)
    write_manifest(out_dir, manifest)
    return manifest


def write_manifest(out_dir: Path, manifest: dict) -> None:
    """Fill in every file's size and sha256 (the manifest's own size too) and write it atomically."""
    files = {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
             for p in sorted(out_dir.iterdir()) if p.is_file() and p.name != MANIFEST_FILE}
    own = 0
    for _ in range(5):
        manifest["files"] = {**files, MANIFEST_FILE: {"bytes": own}}
        manifest["total_bytes"] = sum(f["bytes"] for f in manifest["files"].values())
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        if len(text.encode()) == own:
            break
        own = len(text.encode())
    ckpt.atomic_write_bytes(out_dir / MANIFEST_FILE, text.encode())
    for name in manifest["files"]:
        (out_dir / name).chmod(0o644)


def read_baseline_manifest(path) -> dict:
    file = Path(path) / MANIFEST_FILE
    if not file.is_file():
        raise FileNotFoundError(f"no baseline manifest at {file}")
    manifest = json.loads(file.read_text())
    if manifest.get("format") != SHIPPED_BASELINE_FORMAT:
        raise ValueError(f"{file} has format {manifest.get('format')!r}, expected {SHIPPED_BASELINE_FORMAT!r}")
    return manifest


def shipped_baselines(root=None) -> dict[str, int]:
    """{folder relative to data/pretrained: bytes} of every shipped baseline (a folder whose manifest has
    the shipped-baseline format), sizes from the manifests' file lists."""
    from .paths import data_dir

    root = Path(root) if root is not None else data_dir() / "pretrained"
    out = {}
    for manifest in sorted(root.rglob(MANIFEST_FILE)):
        doc = json.loads(manifest.read_text())
        if doc.get("format") == SHIPPED_BASELINE_FORMAT:
            out[manifest.parent.relative_to(root).as_posix()] = int(doc["total_bytes"])
    return out


def keep_refined_codes(source, out, images) -> int:
    """Write to `out` the codes of `source` (a `refined-<namespace>.safetensors` file) that belong to `images`
    [N, C, H, W] (keyed by content, `scores.RefinedCodes.key`), in `images`' order; returns how many were kept.

    A cache collects codes of every image ever restored (a study's selection split, a reader's own images);
    what is shipped is the codes of the images the book restores, no more."""
    import torch

    from .scores import RefinedCodes

    tensors, meta = ckpt.load_checkpoint(source)
    stored = dict(zip(meta["keys"], tensors["ws"]))
    keys = list(dict.fromkeys(RefinedCodes.key(im) for im in images))      # unique, in order
    keys = [k for k in keys if k in stored]
    if not keys:
        raise ValueError(f"{source} holds none of the {len(images)} images' codes: restore them first")
    ckpt.save_checkpoint(out, {"ws": torch.stack([stored[k] for k in keys])}, {"keys": keys}, sidecar=False)
    return len(keys)


__all__ = ["export_baseline", "validation_auroc", "read_baseline_manifest", "shipped_baselines",
           "keep_refined_codes", "SHIPPED_BASELINE_FORMAT"]

"""Export a finished GAN run as a small, shippable, pickle-free pretrained folder.

    python -m hqanogan_core.train.export RUN OUT --command "python -m hqanogan_core train-gan ..." [--note ...]

reads RUN/latest.safetensors (through checkpoint.py) and writes to OUT:

    gan.safetensors   G_ema and D weights and buffers only ("G_ema." / "D." keys; no optimiser, RNG or G)
                      float32, or float16 if float32 would push the folder over 10 MB
    manifest.json     what a reader needs to trust and reproduce it (see `export_gan`)
    log.jsonl         the run's training log, copied
    samples.png       the run's last sample grid, copied

`hqanogan_core.pretrained.load_pretrained_gan(OUT)` loads it back.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as st_save

from hqanogan_core import pretrained as pt
from hqanogan_core.nets.stylegan2 import num_ws_for
from hqanogan_core.paths import REPO_ROOT
from hqanogan_core.provenance import code_revision, portable_path
from hqanogan_core.train.loop import read_log, step_seconds
from hqanogan_core.provenance import file_sha256 as _sha256
from hqanogan_core import checkpoint as ckpt
from hqanogan_core.presets import (ARCH_FIELDS, PRESETS, GanTrainConfig, discriminator_config,
                                         generator_config)

SIZE_LIMIT_BYTES = 10_000_000   # "10 MB": the whole shipped folder (weights, manifest, log, samples)
SWD_N = 256                     # as many images as the training loop's SWD (swd_images default)
SWD_SEED = 0

__all__ = ["export_gan", "export_encoder", "SIZE_LIMIT_BYTES", "training_time", "code_revision", "main"]


# ----------------------------------------------------------------------------- small helpers


def training_time(lines: list[dict]) -> float:
    """Seconds spent inside the training step: sum over log ticks of s_per_kimg x (kimg - previous kimg).

    The loop's s_per_kimg times `GanTrainer.step()` only, so this excludes SWD evaluations, sample grids,
    checkpoint writes and data loading. A resumed run logs from its resume point, so the sum is still
    the total step time over the whole run.
    """
    total, prev = 0.0, 0.0
    for line in lines:
        kimg, spk = line.get("kimg"), line.get("s_per_kimg")
        if kimg is None:
            continue
        if spk is not None and kimg > prev:
            total += spk * (kimg - prev)
        prev = kimg
    return total


def wall_clock(run_dir: Path, latest: Path) -> dict:
    """Elapsed time from file timestamps: the earliest file in the run folder to the last checkpoint."""
    files = [p for p in run_dir.iterdir() if p.is_file()]
    first = min(files, key=lambda p: p.stat().st_mtime)
    span = latest.stat().st_mtime - first.stat().st_mtime
    return {
        "seconds": round(span, 1), "from_file": first.name, "to_file": latest.name,
        "measures": "wall-clock span from the earliest file's modification time to the last checkpoint's: "
                    "includes evaluation, checkpointing and any other load on the machine; the start is the "
                    "first file written (a launcher's COMMAND/STARTED file, else the first log tick), and a "
                    "paused and resumed run counts the pause",
    }


def _preset_from_command(command: str) -> str | None:
    try:
        args = shlex.split(command)
    except ValueError:
        return None
    if "train-gan" not in args:
        return None
    for i, a in enumerate(args):
        if a == "--preset" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--preset="):
            return a.split("=", 1)[1]
    return "cpu64"  # the CLI's default preset


def _data_from_command(command: str) -> str | None:
    try:
        args = shlex.split(command)
    except ValueError:
        return None
    for i, a in enumerate(args):
        if a == "--data" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--data="):
            return a.split("=", 1)[1]
    return None


def _data_section(data_dir: Path | None) -> dict:
    if data_dir is None:
        return {"path": None}
    info_file = data_dir / "phantom.json"
    section = {"path": portable_path(data_dir)}
    if info_file.exists():
        info = json.loads(info_file.read_text())
        section.update(source="phantom", phantom={k: info.get(k) for k in ("generator", "version", "seed", "config",
                                                                           "n_train", "n_valid", "n_test")})
    return section


def _weights(tensors: dict, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    keep = {k: v for k, v in tensors.items() if k.startswith(("G_ema.", "D."))}
    return {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in sorted(keep.items())}


# ----------------------------------------------------------------------------- export


def export_gan(run_dir, out_dir, command: str, note: str = "", *, data_dir=None, swd_n: int = SWD_N,
               swd_seed: int = SWD_SEED, size_limit: int = SIZE_LIMIT_BYTES) -> dict:
    """Write the pretrained folder `out_dir` from `run_dir/latest.safetensors`; returns the manifest.

    command:  the exact command that trained the run (recorded, and parsed for --preset / --data)
    data_dir: the training data (default: --data of `command`); if it is a phantom set, its seed and
              config define the real images of the export-time SWD (re-rendered, not read from disk)
    swd_n, swd_seed: the export-time SWD recipe: `swd_n` real phantom train images (indices 0..n-1)
              vs `swd_n` G_ema samples (z from torch.Generator().manual_seed(swd_seed), psi 1,
              noise_mode 'const'), `swd(real, fake, seed=swd_seed)`, computed on the weights as stored
    """
    t0 = time.time()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    latest = run_dir / "latest.safetensors"
    tensors, meta = ckpt.load_checkpoint(latest)
    cfg = GanTrainConfig.from_dict(meta["config"])
    out_dir.mkdir(parents=True, exist_ok=True)

    # sidecar files first: their sizes decide float32 vs float16
    lines = read_log(run_dir / "log.jsonl")
    copied = {}
    if (run_dir / "log.jsonl").exists():
        shutil.copyfile(run_dir / "log.jsonl", out_dir / "log.jsonl")
        copied["log.jsonl"] = "log.jsonl"
    grids = sorted(run_dir.glob("samples_kimg*.png"))
    if grids:
        shutil.copyfile(grids[-1], out_dir / "samples.png")
        copied["samples.png"] = grids[-1].name
    sidecar_bytes = sum((out_dir / f).stat().st_size for f in copied)
    manifest_allowance = 64_000

    header = {pt.HEADER_KEY: json.dumps({"format": pt.FORMAT})}
    data32 = st_save(_weights(tensors, torch.float32), metadata=header)
    if len(data32) + sidecar_bytes + manifest_allowance <= size_limit:
        dtype, data = "float32", data32
    else:
        dtype, data = "float16", st_save(_weights(tensors, torch.float16), metadata=header)
    ckpt.atomic_write_bytes(out_dir / pt.WEIGHTS_FILE, data)

    preset = _preset_from_command(command)
    overrides = {}
    if preset in PRESETS:
        base = GanTrainConfig.from_dict(PRESETS[preset]).to_dict()
        overrides = {k: v for k, v in cfg.to_dict().items() if base.get(k) != v}
    if data_dir is None and _data_from_command(command):
        data_dir = _data_from_command(command)
        if not Path(data_dir).is_absolute():
            data_dir = REPO_ROOT / data_dir
    data = _data_section(Path(data_dir) if data_dir is not None else None)

    gcfg, dcfg = generator_config(cfg), discriminator_config(cfg)
    swd_lines = [ln for ln in lines if ln.get("swd") is not None]
    n_params = {p: sum(v.numel() for k, v in tensors.items() if k.startswith(p + ".")) for p in ("G_ema", "D")}
    manifest = {
        "format": pt.FORMAT,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": note,
        "command": command,
        "preset": preset,
        "overrides_vs_preset": overrides,
        "seed": cfg.seed,
        "config": cfg.to_dict(),
        "architecture": {
            "generator": dataclasses.asdict(gcfg), "discriminator": dataclasses.asdict(dcfg),
            "num_ws": num_ws_for(cfg.resolution), "arch_fields": {k: getattr(cfg, k) for k in ARCH_FIELDS},
            "n_values": n_params,
        },
        "weights": {"file": pt.WEIGHTS_FILE, "dtype": dtype, "prefixes": ["G_ema.", "D."],
                    "n_tensors": sum(1 for k in tensors if k.startswith(("G_ema.", "D."))),
                    "float32_bytes": len(data32)},
        "code": {**code_revision(), "revision_at_training": _read_text(run_dir / "REVISION")},
        "data": data,
        "training": {
            "kimg": meta["kimg"], "cur_nimg": meta["cur_nimg"], "steps": meta["step"],
            "augment_p": float(tensors["augment.p"]), "world_size": meta.get("world_size", 1),
            "warm_started_from": _portable_or_none(meta.get("warm_started_from")),
            "device": "cuda" if "rng.cuda" in tensors else "cpu",
            "torch": meta.get("torch"),
            "step_seconds": round(training_time(lines), 1),
            "step_seconds_measures": "sum over log.jsonl ticks of s_per_kimg x kimg advanced: time inside the "
                                     "training step only (no SWD, sample grids, checkpoints or data loading)",
            "wall_clock": wall_clock(run_dir, latest),
            "peak_mem_mb": max((ln.get("peak_mem_mb") or 0 for ln in lines), default=None),
            "final_swd": swd_lines[-1]["swd"] if swd_lines else None,
            "final_swd_kimg": swd_lines[-1]["kimg"] if swd_lines else None,
            "final_swd_recipe": f"training loop: {cfg.swd_images} random train images vs as many G_ema samples "
                                "(const noise), seeds from the config (GanTrainer.swd_now)",
            "log_lines": len(lines),
        },
        "files": {},
        "copied_from_run": copied,
        "export": {"torch": torch.__version__, "device": "cpu", "python": platform.python_version(),
                   "machine": platform.machine(), "cpu_count": os.cpu_count()},
    }

    # the export-time SWD needs real images we can regenerate anywhere: phantom data only
    phantom = data.get("phantom")
    if phantom is not None:
        real = {"source": "phantom", "seed": phantom["seed"], "split": "train", "indices": [0, swd_n],
                "phantom_config": phantom["config"], "quantisation": "uint8 round(img*255), then /255*2-1",
                "resize": "antialiased bilinear to the GAN resolution if the phantom size differs"}
        manifest["swd_export"] = {"recipe": {
            "n": swd_n, "seed": swd_seed, "psi": 1.0, "noise_mode": "const", "batch": 64, "device": "cpu",
            "z": "torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))",
            "swd_kwargs": {}, "swd_call": "hqanogan_core.swd.swd(real, fake, seed=seed)", "real": real,
            "function": "hqanogan_core.pretrained.swd_from_recipe",
        }}
        _write_manifest(out_dir, manifest)                     # so the stored weights can be loaded back
        G, _, _ = pt.load_pretrained_gan(out_dir)             # SWD of the weights as stored (dtype included)
        ts = time.time()
        result = pt.swd_from_recipe(G, manifest)
        manifest["swd_export"].update(avg=result["avg"], levels=result["levels"], seconds=round(time.time() - ts, 1))
    else:
        manifest["swd_export"] = None
        manifest["swd_export_skipped"] = "training data is not a phantom set, so its real images cannot be regenerated"

    manifest["export"]["seconds"] = round(time.time() - t0, 1)
    _write_manifest(out_dir, manifest)
    total = manifest["total_bytes"]
    if total > size_limit:
        print(f"warning: {out_dir} holds {total} bytes, over the {size_limit} byte limit", file=sys.stderr)
    return manifest


# ----------------------------------------------------------------------------- encoder export


def _portable_or_none(path) -> str | None:
    """A continued run's starting folder, repository-relative where it can be (None: trained from scratch)."""
    return None if path is None else portable_path(path)


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())


def export_encoder(run_dir, out_dir, gan_dir, command: str, note: str = "", *, data_dir=None, n_recon: int = 64,
                   size_limit: int = SIZE_LIMIT_BYTES) -> dict:
    """Write a shipped encoder folder from a train-encoder output folder; returns the manifest.

        encoder.safetensors  the encoder's weights and buffers only ("E." keys), float32
        manifest.json        format, command, configs, perceptual backend, the generator it belongs to
                             (relative path + sha256), training steps and seconds, code revision, and the
                             reconstruction quality on the first `n_recon` test normals of `data_dir`
        log.jsonl            the training log
        recon.png            the last reconstruction grid written during training

    `hqanogan_core.pretrained.load_pretrained_encoder(out_dir)` loads it back; `load_pipeline(out_dir)`
    loads it together with its generator.
    """
    from hqanogan_core.data.splits import load_split, to_model_input
    from hqanogan_core.nets.perceptual import PerceptualConfig, PerceptualDistance
    from hqanogan_core.recon import encode_images, reconstruction_metrics, summarise

    t0 = time.time()
    run_dir, out_dir, gan_dir = Path(run_dir), Path(out_dir), Path(gan_dir)
    latest = run_dir / "encoder.safetensors"
    tensors, meta = ckpt.load_checkpoint(latest)
    if meta.get("kind") != "encoder":
        raise ValueError(f"{latest} is not an encoder checkpoint")
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = {k: v.float().contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in sorted(tensors.items()) if k.startswith("E.")}
    header = {pt.HEADER_KEY: json.dumps({"format": pt.ENCODER_FORMAT})}
    ckpt.atomic_write_bytes(out_dir / pt.ENCODER_WEIGHTS_FILE, st_save(weights, metadata=header))
    copied = {}
    if (run_dir / "log.jsonl").exists():
        shutil.copyfile(run_dir / "log.jsonl", out_dir / "log.jsonl")
        copied["log.jsonl"] = "log.jsonl"
    grids = sorted(run_dir.glob("recon_step*.png"))
    if grids:
        shutil.copyfile(grids[-1], out_dir / "recon.png")
        copied["recon.png"] = grids[-1].name
    lines = read_log(run_dir / "log.jsonl")
    start = next((ln for ln in lines if ln.get("event") == "start"), {})
    if data_dir is None and _data_from_command(command):
        data_dir = _data_from_command(command)
        if not Path(data_dir).is_absolute():
            data_dir = REPO_ROOT / data_dir
    gan_manifest = pt.read_manifest(gan_dir)
    manifest = {
        "format": pt.ENCODER_FORMAT,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": note,
        "command": command,
        "perceptual": meta.get("perceptual"),
        "config": meta["config"],
        "encoder": {"kind": meta["config"]["encoder"], "config": meta["encoder_config"],
                    "n_values": sum(v.numel() for v in weights.values())},
        "gan": {"path": _relative(gan_dir, out_dir), "sha256": _sha256(gan_dir / pt.WEIGHTS_FILE),
                "kimg": gan_manifest["training"]["kimg"]},
        "code": code_revision(),
        "data": _data_section(Path(data_dir) if data_dir is not None else None),
        "training": {"steps": meta["step"], "batch": meta["config"]["batch"],
                     "images_seen": meta["step"] * meta["config"]["batch"],
                     "step_seconds": round(step_seconds(lines), 1),
                     "step_seconds_measures": "sum over log.jsonl lines of s_per_step x steps: time inside the "
                                              "training step only (no snapshots or checkpoint writes)",
                     "device": start.get("device"), "torch": meta.get("torch"), "log_lines": len(lines),
                     "warm_started_from": _portable_or_none(meta.get("warm_started_from"))},
        "files": {},
        "copied_from_run": copied,
    }
    if data_dir is not None:
        # quality as shipped: the stored weights, with the shipped generator, on held-out test normals
        _write_encoder_manifest(out_dir, manifest)
        from hqanogan_core.pipeline import load_pipeline

        pipe = load_pipeline(out_dir)
        test = load_split(data_dir, "test")
        normal = np.flatnonzero(test.labels == 0)[:n_recon]
        x = to_model_input(test.images[normal], pipe.resolution)
        percep = PerceptualDistance(PerceptualConfig(meta["config"].get("perceptual", "auto"),
                                                     meta["config"].get("perceptual_net", "alex"), verbose=False))
        _, rec = encode_images(pipe.G, pipe.E, x)
        summary = summarise(reconstruction_metrics(x, rec, percep))
        manifest["reconstruction"] = {
            "images": f"the first {len(normal)} normal images of test/ (sorted paths) in {manifest['data']['path']}",
            "perceptual": percep.backend_name,
            "mean_and_sem": {k: list(v) for k, v in summary.items()},
        }
    manifest["export_seconds"] = round(time.time() - t0, 1)
    _write_encoder_manifest(out_dir, manifest)
    if manifest["total_bytes"] > size_limit:
        print(f"warning: {out_dir} holds {manifest['total_bytes']} bytes, over the {size_limit} byte limit",
              file=sys.stderr)
    return manifest


def _write_encoder_manifest(out_dir: Path, manifest: dict) -> None:
    _write_manifest(out_dir, manifest, names=[pt.ENCODER_WEIGHTS_FILE, "log.jsonl", "recon.png"])


def _read_text(path: Path):
    return path.read_text().strip() if path.exists() else None


def _write_manifest(out_dir: Path, manifest: dict, names=(pt.WEIGHTS_FILE, "log.jsonl", "samples.png")) -> None:
    """Fill in file sizes (the manifest counts itself: iterate until its own size is stable) and write."""
    manifest["files"] = {n: {"bytes": (out_dir / n).stat().st_size, "sha256": _sha256(out_dir / n)}
                         for n in names if (out_dir / n).exists()}
    own = 0
    for _ in range(5):
        manifest["files"][pt.MANIFEST_FILE] = {"bytes": own}
        manifest["total_bytes"] = sum(f["bytes"] for f in manifest["files"].values())
        manifest["size_limit_bytes"] = SIZE_LIMIT_BYTES
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        if len(text.encode()) == own:
            break
        own = len(text.encode())
    ckpt.atomic_write_bytes(out_dir / pt.MANIFEST_FILE, text.encode())
    for name in manifest["files"]:  # atomic writes create 0600 temp files; shipped files are world-readable
        os.chmod(out_dir / name, 0o644)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hqanogan_core.train.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run folder holding latest.safetensors and log.jsonl (or, with --encoder-for, "
                                    "a train-encoder folder holding encoder.safetensors)")
    parser.add_argument("out", help="output folder, e.g. data/pretrained/gan64")
    parser.add_argument("--command", required=True, help="the exact command that trained the run")
    parser.add_argument("--note", default="")
    parser.add_argument("--data", default=None, help="training data folder (default: --data of --command)")
    parser.add_argument("--swd-n", type=int, default=SWD_N)
    parser.add_argument("--swd-seed", type=int, default=SWD_SEED)
    parser.add_argument("--encoder-for", default=None, metavar="GAN_DIR",
                        help="export an encoder run instead, trained for the shipped generator in GAN_DIR")
    args = parser.parse_args(argv)
    if args.encoder_for:
        m = export_encoder(args.run, args.out, args.encoder_for, args.command, args.note, data_dir=args.data)
        print(json.dumps({"out": str(args.out), "steps": m["training"]["steps"], "total_bytes": m["total_bytes"],
                          "perceptual": m["perceptual"], "reconstruction": m.get("reconstruction")}, indent=2))
        return 0
    m = export_gan(args.run, args.out, args.command, args.note, data_dir=args.data, swd_n=args.swd_n,
                   swd_seed=args.swd_seed)
    swd = m["swd_export"]["avg"] if m.get("swd_export") else None
    print(json.dumps({"out": str(args.out), "kimg": m["training"]["kimg"], "dtype": m["weights"]["dtype"],
                      "total_bytes": m["total_bytes"], "final_swd": m["training"]["final_swd"],
                      "swd_export": swd}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

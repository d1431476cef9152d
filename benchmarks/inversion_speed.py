"""Encoder vs projector: reconstruction quality and time per image, printed (no asserts).

    python benchmarks/inversion_speed.py [--run data/pretrained/encoder64] [--data data/cache/phantom64]
                                         [--n 16] [--steps 300] [--spaces w,w+] [--device cpu] [--json OUT]

Takes the first N normal images of DATA/test (held out from encoder training), inverts them with the
encoder (one forward pass of E and G, median of 5 timed passes) and with the optimisation-based projector
(`hqanogan_core.project.project`, same pixel + perceptual losses, STEPS Adam steps per latent space), all
batched over the same N images on the same device, and prints L1 / PSNR / SSIM / perceptual (mean ± s.e.m.)
and seconds per image, the speed-up of the encoder over each projector and its PSNR gap.
Targets from the encoder issue: >= 100x faster than the 300-step projector, PSNR within 2 dB of it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hqanogan_core.benchmark import device_description  # noqa: E402
from hqanogan_core.data.splits import load_split, to_model_input  # noqa: E402
from hqanogan_core.nets.perceptual import PerceptualDistance  # noqa: E402
from hqanogan_core.pipeline import load_pipeline  # noqa: E402
from hqanogan_core.recon import compare_inversions, summarise  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="encoder folder (default: the shipped encoder64)")
    ap.add_argument("--data", default="data/cache/phantom64")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--spaces", default="w,w+")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.run, device=args.device)
    percep = PerceptualDistance().to(args.device)
    test = load_split(args.data, "test")
    x = to_model_input(test.images[np.flatnonzero(test.labels == 0)[:args.n]], pipe.resolution)
    res = compare_inversions(pipe.G, pipe.E, x, percep, projector_steps=args.steps,
                             spaces=tuple(s.strip() for s in args.spaces.split(",")))
    out = {"device": device_description(), "threads": torch.get_num_threads(), "n_images": len(x),
           "projector_steps": args.steps, "perceptual": percep.backend_name, "encoder": pipe.info, "methods": {}}
    print(f"{len(x)} held-out normal test images, {out['device']}, {out['threads']} threads, {percep.backend_name}")
    print(f"{'method':14s} {'L1':>8s} {'PSNR dB':>14s} {'SSIM':>7s} {'percep':>8s} {'s/image':>10s}")
    for name, r in res.items():
        s = summarise(r["metrics"])
        out["methods"][name] = {"seconds_per_image": r["seconds_per_image"], **{k: list(v) for k, v in s.items()}}
        print(f"{name:14s} {s['l1'][0]:8.4f} {s['psnr'][0]:7.2f} ± {s['psnr'][1]:4.2f} {s['ssim'][0]:7.3f} "
              f"{s['perceptual'][0]:8.4f} {r['seconds_per_image']:10.5f}")
    enc = out["methods"]["encoder"]
    for name, m in out["methods"].items():
        if name == "encoder":
            continue
        speedup = m["seconds_per_image"] / enc["seconds_per_image"]
        gap = m["psnr"][0] - enc["psnr"][0]
        m["encoder_speedup"], m["encoder_psnr_gap_db"] = speedup, gap
        print(f"encoder vs {name}: {speedup:.0f}x faster; encoder PSNR {-gap:+.2f} dB relative to it "
              f"(targets vs the 300-step projector: >= 100x, no worse than -2 dB)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""GPU check: StyleGAN2-ADA training speed and memory at 256 px on one CUDA GPU (< 8 min on one H100).

    python benchmarks/gpu_check_gan.py [--out DIR] [--kimg 5] [--n-train 2000] [--compile]

1. writes a 256 px phantom set (2000 normal training images; write_phantom_dataset with one worker per core);
2. trains through the CLI, `python -m hqanogan_core train-gan --preset paper256 --kimg K --amp bf16`, for
   K = 5 kimg (about 310 steps at the preset's batch of 16), with two changes to the preset made in the
   driver below and nowhere else: one log tick per kimg (the preset logs every 4 kimg, too coarse for a
   short check) and no SWD (at 1024 images it is a CPU computation of minutes that is not training);
3. prints s/kimg (mean over the log ticks after the first, which holds CUDA start-up, cuDNN autotuning and
   any torch.compile) and peak GPU memory (torch.cuda.max_memory_allocated from the log, and the largest
   `nvidia-smi` memory.used seen while training), next to the official figure.

The official README gives 21.6-24.2 s/kimg for 256 px on ONE V100 ('auto' config, 5 GB GPU memory).
Not a like-for-like comparison: a different card (V100 vs whatever this runs on); the official code uses
custom fused CUDA kernels (bias+activation, up/down-sampling) and fp16 in the four highest-resolution
layers, ours is plain PyTorch with bf16 autocast in the main phases and fp32 regularisers; same batch (16)
and architecture formulae ('auto' at 256 px: channel_base 16384, channel_max 512, 2 mapping layers).

Exits 2 at once with a clear message when CUDA is not available. Writes DIR/gpu_check.json
(DIR defaults to $OUT, else a temporary folder).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OFFICIAL_V100_S_PER_KIMG = (21.6, 24.2)
OFFICIAL_V100_GPU_MEM_GB = 5.0

# The CLI, with the paper256 preset's log tick set to 1 kimg and SWD off (see the module docstring).
DRIVER = (
    "import sys\n"
    "from hqanogan_core import presets\n"
    "presets.PRESETS['paper256'] = dict(presets.PRESETS['paper256'], log_kimg=1, swd_images=0)\n"
    "from hqanogan_core.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def summarise(lines: list[dict], official=OFFICIAL_V100_S_PER_KIMG) -> dict:
    """s/kimg over the log ticks after the first (a tick's s_per_kimg weighted by the kimg it covers)."""
    if len(lines) < 2:
        raise ValueError(f"need at least 2 log ticks to leave out the first, got {len(lines)}")
    later = lines[1:]
    kimg_spans = [b["kimg"] - a["kimg"] for a, b in zip(lines, lines[1:])]
    seconds = sum(t["s_per_kimg"] * k for t, k in zip(later, kimg_spans))
    s_per_kimg = seconds / sum(kimg_spans)
    return {
        "s_per_kimg": s_per_kimg, "first_tick_s_per_kimg": lines[0]["s_per_kimg"],
        "ticks_used": len(later), "kimg_measured": sum(kimg_spans),
        "peak_mem_mb_allocated": max(t.get("peak_mem_mb") or 0 for t in lines),
        "official_v100_s_per_kimg": list(official),
        "ratio_to_official_mid": s_per_kimg / (sum(official) / 2),
        "final_p": lines[-1].get("p"), "final_loss_G": lines[-1].get("loss_G"), "final_loss_D": lines[-1].get("loss_D"),
    }


def _nvidia_smi_used_mb() -> float | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
        return max(float(x) for x in out.stdout.split()) if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT"))
    parser.add_argument("--kimg", type=float, default=5.0)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--train-timeout", type=int, default=390, help="seconds; the ticks logged so far still count")
    parser.add_argument("--compile", action="store_true", help="also torch.compile the main-phase nets")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("error: CUDA is not available (torch.cuda.is_available() is False): this check needs one NVIDIA GPU "
              f"and a CUDA build of PyTorch (this one is torch {torch.__version__}).", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name(0)} | torch {torch.__version__} | {os.cpu_count()} CPU cores",
          flush=True)

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gpu_check_gan_"))
    work.mkdir(parents=True, exist_ok=True)
    data, run = work / "phantom256", work / "run"

    from hqanogan_core.data.phantom import PhantomConfig, write_phantom_dataset

    t0 = time.time()
    write_phantom_dataset(data, n_train=args.n_train, n_test=0, n_valid=0, seed=0, config=PhantomConfig(size=256),
                          workers=os.cpu_count(), progress=False)
    data_s = time.time() - t0
    print(f"phantom: {args.n_train} images at 256 px in {data_s:.1f} s", flush=True)

    cli = ["train-gan", "--data", str(data), "--out", str(run), "--preset", "paper256", "--kimg", str(args.kimg),
           "--amp", "bf16", "--device", "cuda", "--no-progress"] + (["--compile"] if args.compile else [])
    print("train: python -m hqanogan_core " + " ".join(cli) + "  (log tick 1 kimg, SWD off)", flush=True)
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, *cli], cwd=REPO)
    smi_peak, timed_out = None, False
    while proc.poll() is None:
        used = _nvidia_smi_used_mb()
        if used is not None:
            smi_peak = used if smi_peak is None else max(smi_peak, used)
        if time.time() - t0 > args.train_timeout:
            proc.terminate()
            timed_out = True
            proc.wait(30)
            break
        time.sleep(1.0)
    train_s = time.time() - t0
    log = run / "log.jsonl"
    lines = [json.loads(s) for s in log.read_text().splitlines()] if log.exists() else []
    if proc.returncode not in (0, None) and not timed_out:
        print(f"error: training exited with {proc.returncode}", file=sys.stderr)
        if len(lines) < 2:
            return 1
    try:
        summary = summarise(lines)
    except ValueError as err:
        print(f"error: {err} (training ran {train_s:.0f} s{', timed out' if timed_out else ''})", file=sys.stderr)
        return 1
    summary.update(device=torch.cuda.get_device_name(0), torch=torch.__version__, amp="bf16", compile=args.compile,
                   kimg=lines[-1]["kimg"], train_wall_s=train_s, data_s=data_s, timed_out=timed_out,
                   peak_mem_mb_nvidia_smi=smi_peak, official_v100_gpu_mem_gb=OFFICIAL_V100_GPU_MEM_GB)
    (work / "gpu_check.json").write_text(json.dumps(summary, indent=2))
    lo, hi = OFFICIAL_V100_S_PER_KIMG
    print(f"\n256 px, paper256 preset, batch 16, AMP bf16{' + compile' if args.compile else ''}, "
          f"{summary['kimg']:.1f} kimg on {summary['device']}:")
    print(f"  s/kimg (ticks after the first, {summary['kimg_measured']:.1f} kimg): {summary['s_per_kimg']:.1f}"
          f"   [first tick {summary['first_tick_s_per_kimg']:.1f}]")
    print(f"  official StyleGAN2-ADA, one V100, 'auto' config:     {lo}-{hi}   (different card, custom CUDA "
          "kernels and fp16 there)")
    smi = f"{smi_peak / 1024:.1f} GB" if smi_peak is not None else "n/a"
    print(f"  peak GPU memory: {summary['peak_mem_mb_allocated'] / 1024:.1f} GB allocated by torch, {smi} by "
          f"nvidia-smi   (official: {OFFICIAL_V100_GPU_MEM_GB:g} GB)")
    print(f"  summary: {work / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

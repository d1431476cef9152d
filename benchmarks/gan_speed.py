"""StyleGAN2-ADA training-step speed: ours vs. the official networks, measured side by side in one run.

What it measures (CPU, fp32, eager, augmentation off on both sides, batch B, resolution R):

  ours main        GanTrainer.step() with gamma = 0 and pl_weight = 0: G main + D main phases,
                   nan_to_num + Adam step, G EMA update, loss read-outs (.item()) -- exactly the
                   training code path (hqanogan_core.train.gan.GanTrainer), augment='none' (p = 0).
  ours amortised   GanTrainer.step() with the regularisers on: lazy R1 every 16 D steps, path length
                   every 4 G steps (pl batch B/2). Timed over whole periods of 16 steps, so one
                   period holds 1 R1 step and 4 path-length steps; img/s = 16*B / period time.
  official main    the official networks (training.networks.Generator / Discriminator) driven the
                   way training/training_loop.py drives them: per phase zero_grad,
                   module.requires_grad_(True), StyleGAN2Loss.accumulate_gradients('Gmain' /
                   'Dmain', gain=1), requires_grad_(False), nan_to_num, Adam(betas=(0, 0.99)) step;
                   then the G EMA update. augment_pipe=None, style mixing 0.9 (as ours).
  official amort.  (with --official-reg) the same loop with the 'Greg' (every 4) and 'Dreg' (every 16)
                   phases and the lazy-regularisation Adam correction, as the official loop does.

Same architecture on both sides: z = w = --z-dim, --map mapping layers, channels per resolution
min(channel_base // res, channel_max), skip G, resnet D, minibatch-std group 4, 1 image channel.
Official networks are built with num_fp16_res=0 and conv_clamp=None (fp32; CPU has no fp16 path)
and fall back to their reference (non-CUDA) bias_act / upfirdn2d ops on CPU.

Interleaving: the main steps alternate ours, theirs, ours, theirs ... one step at a time; the
amortised periods alternate the same way. Reported figures are medians of the per-step (per-period)
times, so background load hits both sides alike. The ratio is ours img/s / official img/s.

Run (from the repo root, with the repo venv):

  python benchmarks/gan_speed.py --res 64 --batch 32 --channel-base 1024 --channel-max 64 \
      --z-dim 256 --map 2 --steps 20 --warmup 3 --official /tmp/official [--official-reg] [--threads 2]

Getting the official code (NVlabs/stylegan2-ada-pytorch, NON-COMMERCIAL licence: keep it outside
this repository, never commit it):

  git clone https://github.com/NVlabs/stylegan2-ada-pytorch /tmp/official
  # or from a mirror / bare repo:  git --git-dir=<bare repo> archive HEAD | tar x -C /tmp/official

Environment shims: none were needed with torch 2.14 -- the official code imports and runs on CPU
unchanged (it only warns that no CUDA runtime is found; its bias_act / upfirdn2d ops take their
reference paths for CPU tensors by themselves). The script only puts --official on sys.path and sets
`torch_utils.ops.conv2d_gradfix.enabled = False` (plain torch convolutions; what it does off-CUDA
anyway). If a future torch breaks an import there, add the shim in this script, never in the tree.

Threads: on a shared machine (e.g. a background training run on one of two cores) use --threads 1;
with more OpenMP threads than free cores every op waits for the descheduled thread and both sides
slow down ~5-10x, which measures the scheduler rather than the code.

Checkpoint compatibility of speed edits:  python benchmarks/gan_speed.py --compat-rev HEAD
loads hqanogan_core/nets/stylegan2.py as of that git revision next to the working tree's, and checks
(for the cpu32 / cpu64 preset architectures and the benchmark's) that G and D state_dict keys, shapes
and seeded initial values are identical, that each loads the other's state_dict strictly, and that
in float64 the outputs, first-order gradients and the R1 / path-length double-backward gradients agree
(to ~1e-12 relative; float32 differs only by rounding). Exits non-zero on a mismatch.

To measure an older version of our code against the same official tree, put its package first on
the path, e.g.  git archive <rev> hqanogan_core | tar x -C /tmp/old && PYTHONPATH=/tmp/old python ...
(the script prints which hqanogan_core it imported).
"""
from __future__ import annotations

import argparse
import copy
import math
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ----------------------------------------------------------------------------- ours


def make_ours(args, regularise: bool, images: torch.Tensor):
    from hqanogan_core.train.gan import GanTrainer
    from hqanogan_core.presets import GanTrainConfig

    cfg = GanTrainConfig(
        resolution=args.res, channels=1, z_dim=args.z_dim, w_dim=args.z_dim, map_layers=args.map,
        channel_base=args.channel_base, channel_max=args.channel_max, mbstd_group=4, batch=args.batch,
        gamma=(0.0002 * args.res**2 / args.batch) if regularise else 0.0,
        pl_weight=2.0 if regularise else 0.0, r1_interval=16, pl_interval=4,
        augment="none", swd_images=0, device="cpu", seed=args.seed,
    )
    return GanTrainer(cfg, images, torch.device("cpu"))


# ----------------------------------------------------------------------------- official


class Official:
    """The official networks + StyleGAN2Loss, stepped like training_loop.py (no augmentation)."""

    def __init__(self, args, path: str, regularise: bool, images: torch.Tensor):
        if path not in sys.path:
            sys.path.insert(0, path)
        from torch_utils.ops import conv2d_gradfix
        from training.loss import StyleGAN2Loss
        from training.networks import Discriminator, Generator

        conv2d_gradfix.enabled = False  # CPU: plain torch convs (their default off-CUDA too)
        torch.manual_seed(args.seed)
        syn = dict(channel_base=args.channel_base, channel_max=args.channel_max, num_fp16_res=0, conv_clamp=None)
        self.G = Generator(z_dim=args.z_dim, c_dim=0, w_dim=args.z_dim, img_resolution=args.res, img_channels=1,
                           mapping_kwargs=dict(num_layers=args.map), synthesis_kwargs=syn).train().requires_grad_(False)
        self.D = Discriminator(c_dim=0, img_resolution=args.res, img_channels=1, channel_base=args.channel_base,
                               channel_max=args.channel_max, num_fp16_res=0, conv_clamp=None,
                               epilogue_kwargs=dict(mbstd_group_size=4)).train().requires_grad_(False)
        self.G_ema = copy.deepcopy(self.G).eval()
        gamma = 0.0002 * args.res**2 / args.batch
        self.loss = StyleGAN2Loss("cpu", self.G.mapping, self.G.synthesis, self.D, augment_pipe=None,
                                  style_mixing_prob=0.9, r1_gamma=gamma, pl_weight=2.0)
        self.phases = []
        for name, module, interval in [("G", self.G, 4), ("D", self.D, 16)]:
            if regularise:  # lazy regularisation: lr*c, betas**c, separate main / reg phases
                c = interval / (interval + 1)
                opt = torch.optim.Adam(module.parameters(), lr=0.0025 * c, betas=(0.0, 0.99**c), eps=1e-8)
                self.phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
            else:
                opt = torch.optim.Adam(module.parameters(), lr=0.0025, betas=(0.0, 0.99), eps=1e-8)
                self.phases += [(name + "main", module, opt, 1)]
        self.images, self.batch, self.z_dim = images, args.batch, args.z_dim
        self.batch_idx, self.cur_nimg = 0, 0

    def step(self):
        b = self.batch
        real = self.images[torch.randint(len(self.images), [b])]
        c = torch.zeros(b, 0)
        zs = torch.randn(len(self.phases), b, self.z_dim)
        for (name, module, opt, interval), z in zip(self.phases, zs):
            if self.batch_idx % interval:
                continue
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            self.loss.accumulate_gradients(phase=name, real_img=real, real_c=c, gen_z=z, gen_c=c, sync=True,
                                           gain=interval)
            module.requires_grad_(False)
            for p in module.parameters():
                if p.grad is not None:
                    torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            opt.step()
        self.cur_nimg += b
        beta = 0.5 ** (b / max(min(10_000, self.cur_nimg * 0.05), 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b_ in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b_)
        self.batch_idx += 1


# ----------------------------------------------------------------------------- compatibility check


def compat_check(rev: str) -> bool:
    import importlib.util
    import subprocess
    import tempfile
    from pathlib import Path

    import hqanogan_core.nets.stylegan2 as new

    repo = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:hqanogan_core/nets/stylegan2.py"],
                         capture_output=True, text=True, check=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("_sg2_at_rev", f.name)
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old  # dataclasses need the module registered
    spec.loader.exec_module(old)

    ok = True
    archs = [dict(resolution=32, channel_base=2048, channel_max=128, z_dim=128, w_dim=128),   # cpu32
             dict(resolution=64, channel_base=2048, channel_max=128, z_dim=128, w_dim=128),   # cpu64
             dict(resolution=64, channel_base=1024, channel_max=64, z_dim=256, w_dim=256),    # benchmark
             dict(resolution=16, channel_base=256, channel_max=32, z_dim=32, w_dim=32, img_channels=3)]
    for kw in archs:
        dkw = {k: v for k, v in kw.items() if k in ("resolution", "channel_base", "channel_max", "img_channels")}
        nets = {}
        for name, mod in [("rev", old), ("new", new)]:
            torch.manual_seed(0)
            nets[name] = (mod.Generator(**kw).double(), mod.Discriminator(**dkw).double())
        same = True
        for a, b in zip(nets["rev"], nets["new"]):
            sa, sb = a.state_dict(), b.state_dict()
            same &= list(sa) == list(sb) and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)
            b.load_state_dict(sa, strict=True)
            a.load_state_dict(sb, strict=True)
        with torch.no_grad():  # give the zero-initialised biases / noise strengths values so every path counts
            for a, b in zip(nets["rev"], nets["new"]):
                for (k, p), q in zip(a.named_parameters(), b.parameters()):
                    if "bias" in k or "noise_strength" in k:
                        v = torch.randn_like(p) * 0.1
                        p.copy_(v)
                        q.copy_(v)
        g = torch.Generator().manual_seed(1)
        res, ch = kw["resolution"], kw.get("img_channels", 1)
        z = torch.randn(8, kw["z_dim"], generator=g, dtype=torch.float64)
        real = torch.randn(8, ch, res, res, generator=g, dtype=torch.float64)
        pl_noise = torch.randn(8, ch, res, res, generator=g, dtype=torch.float64) / res

        def run(G, D):
            ws = G.mapping(z, update_w_avg=False).detach().requires_grad_(True)
            img = G.synthesis(ws, noise_mode="const")
            logits = D(img)
            logits.square().sum().backward()
            out = [img.detach(), logits.detach(), ws.grad]
            x = real.clone().requires_grad_(True)                               # R1-style double backward
            (gx,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
            ws2 = G.mapping(z, update_w_avg=False)                              # path-length double backward
            (gw,) = torch.autograd.grad((G.synthesis(ws2, noise_mode="const") * pl_noise).sum(), ws2,
                                        create_graph=True)
            (gx.square().sum() + gw.square().sum(2).mean(1).sqrt().sum()).backward()
            return out + [p.grad for p in [*G.parameters(), *D.parameters()] if p.grad is not None]

        ra, rb = run(*nets["rev"]), run(*nets["new"])
        err = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item() for a, b in zip(ra, rb)) \
            if len(ra) == len(rb) else float("inf")
        good = same and err < 1e-9
        ok &= good
        print(f"  {kw}: state_dict keys/shapes/init identical: {same}; float64 worst relative difference of "
              f"outputs, gradients and R1/PL double-backward gradients: {err:.1e} -> {'OK' if good else 'MISMATCH'}")
    return ok


# ----------------------------------------------------------------------------- timing


def timed(fn, n: int = 1) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def report(name: str, sec_per_step: float, batch: int) -> float:
    ips = batch / sec_per_step
    print(f"  {name:<22} {ips:8.1f} img/s   {1000 / ips:7.2f} s/kimg   ({sec_per_step * 1000:.0f} ms/step)")
    return ips


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--channel-base", type=int, default=1024)
    ap.add_argument("--channel-max", type=int, default=64)
    ap.add_argument("--z-dim", type=int, default=256, help="z and w dimension")
    ap.add_argument("--map", type=int, default=2, help="mapping layers")
    ap.add_argument("--steps", type=int, default=20, help="timed main steps per side (interleaved)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per side first")
    ap.add_argument("--periods", type=int, default=2,
                    help="timed 16-step periods with regularisation (0: skip the amortised measurement)")
    ap.add_argument("--official", default=None, help="path to an extracted NVlabs/stylegan2-ada-pytorch tree")
    ap.add_argument("--official-reg", action="store_true", help="also time the official loop with regularisation")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compat-rev", default=None, metavar="REV",
                    help="only check state_dict / numerics compatibility of the nets against git revision REV")
    args = ap.parse_args(argv)
    if args.compat_rev:
        print(f"nets/stylegan2.py: working tree vs {args.compat_rev}")
        ok = compat_check(args.compat_rev)
        print("COMPATIBLE" if ok else "NOT COMPATIBLE")
        sys.exit(0 if ok else 1)

    if args.threads:
        torch.set_num_threads(args.threads)
    import hqanogan_core

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU: {cpu_model()}")
    print(f"ours: {hqanogan_core.__file__}" + (f"; official: {args.official}" if args.official else ""))
    print(f"res {args.res}, batch {args.batch}, channel_base {args.channel_base}, channel_max {args.channel_max}, "
          f"z=w {args.z_dim}, mapping {args.map}; fp32, augmentation off on both sides")

    g = torch.Generator().manual_seed(args.seed)
    images = torch.rand(256, 1, args.res, args.res, generator=g) * 2 - 1

    sides = {"ours main": make_ours(args, False, images).step}
    if args.official:
        sides["official main"] = Official(args, args.official, False, images).step
    for fn in sides.values():
        for _ in range(args.warmup):
            fn()
    times = {k: [] for k in sides}
    for _ in range(args.steps):
        for k, fn in sides.items():
            times[k].append(timed(fn))

    period = 16  # lcm(r1_interval, pl_interval)
    reg = {}
    if args.periods > 0:
        reg["ours amortised"] = make_ours(args, True, images).step
        if args.official and args.official_reg:
            reg["official amortised"] = Official(args, args.official, True, images).step
        for fn in reg.values():  # warm-up incl. one R1 and one path-length step (both fire at step 0)
            for _ in range(max(args.warmup, 1)):
                fn()
        for k in reg:
            times[k] = []
        for _ in range(args.periods):
            for k, fn in reg.items():
                times[k].append(timed(fn, period))

    print(f"medians over {args.steps} interleaved steps (main) / {args.periods} interleaved {period}-step periods:")
    ips = {k: report(k, statistics.median(v), args.batch) for k, v in times.items()}
    if "official main" in ips:
        print(f"  ratio ours/official (main):       {ips['ours main'] / ips['official main']:.2f}x")
        if "ours amortised" in ips:
            print(f"  ratio ours amortised/official main: {ips['ours amortised'] / ips['official main']:.2f}x")
        if "official amortised" in ips:
            print(f"  ratio ours/official (amortised):  {ips['ours amortised'] / ips['official amortised']:.2f}x")
    return ips


if __name__ == "__main__":
    main()

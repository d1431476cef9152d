"""StyleGAN2-ADA training loop: `train_gan(data_dir, out_dir, config)`.

One iteration runs the four phases of the official loop:
  G main  softplus(-D(aug(G(z))))                                  every step
  G reg   path-length penalty on batch/2, x pl_interval            every pl_interval steps
  D main  softplus(D(aug(G(z)))) + softplus(-D(aug(x)))            every step
  D reg   R1: gamma/2 * |grad D(aug(x))|^2, x r1_interval          every r1_interval steps
then the G EMA update and the ADA p update. Lazy regularisation corrects Adam (lr*c, betas**c,
c = I/(I+1)); gradients pass through nan_to_num before every step.

Deviation from the official code (documented): R1 is taken w.r.t. the *augmented* reals, as in
rosinality's implementation. The official code differentiates w.r.t. the un-augmented reals through
the augmentation, which needs a double backward through grid_sample that PyTorch does not provide.

Multi-process (torchrun): if WORLD_SIZE > 1, a process group is started (gloo on CPU, nccl on CUDA);
each rank takes its slice of every global batch and gradients are averaged across ranks with an
explicit all-reduce after each backward. We do this instead of wrapping the nets in
DistributedDataParallel because the regularisers use double backward (create_graph=True), which DDP
does not support, and the phases use different parameter subsets. The w_avg buffer and the
path-length mean are averaged too, so all ranks hold identical weights.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import resource
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..nets.augment import AdaController, AugmentPipe
from ..nets.stylegan2 import Discriminator, Generator
from ..fid import fid, fid_unavailable_reason
from ..swd import swd
from .. import checkpoint as ckpt
from ..presets import ARCH_FIELDS, GanTrainConfig, discriminator_config, generator_config, get_preset

__all__ = ["GanTrainConfig", "GanTrainer", "train_gan", "load_images", "lazy_adam_hparams", "ema_beta"]


# ----------------------------------------------------------------------------- small pure helpers


def lazy_adam_hparams(lr: float, betas: tuple[float, float], interval: int | None):
    """Adam settings for a net regularised every `interval` steps: c = I/(I+1); lr*c, betas**c."""
    if not interval:
        return lr, tuple(betas)
    c = interval / (interval + 1)
    return lr * c, (betas[0] ** c, betas[1] ** c)


def ema_beta(batch: int, cur_nimg: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """Per-step G EMA decay: 0.5 ** (batch / ema_nimg), ema_nimg = min(ema_kimg*1000, cur_nimg*rampup)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def load_images(data_dir, resolution: int, channels: int = 1) -> torch.Tensor:
    """All images of `data_dir/train/good` (MVTec layout) -> float [N, C, R, R] in [-1, 1].

    The package's one loading path (`data.splits`): 8/16-bit PNGs, RGB read as luma, antialiased resize.
    """
    from ..data.splits import load_split, to_model_input

    train = load_split(data_dir, "train", size=resolution)
    images = to_model_input(train.images, resolution, channels)
    assert images.shape[1:] == (channels, resolution, resolution), images.shape
    return images


def save_image_grid(images: torch.Tensor, path, nrow: int) -> None:
    """[N, C, H, W] in [-1, 1] -> PNG grid (atomic write)."""
    import io

    from PIL import Image

    n, c, h, w = images.shape
    ncol = math.ceil(n / nrow)
    grid = torch.full((c, ncol * h, nrow * w), -1.0)
    for i, img in enumerate(images.detach().float().cpu()):
        r, q = divmod(i, nrow)
        grid[:, r * h:(r + 1) * h, q * w:(q + 1) * w] = img
    arr = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    im = Image.fromarray(arr[:, :, 0] if c == 1 else arr, mode="L" if c == 1 else "RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    ckpt.atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------- distributed helpers


def _dist_on() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """Start the process group under torchrun (WORLD_SIZE > 1); returns (rank, world_size, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    rank = int(os.environ.get("RANK", "0"))
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not _dist_on():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return torch.distributed.get_rank(), torch.distributed.get_world_size(), device


def _average_(tensors: list[torch.Tensor]) -> None:
    """In-place mean over ranks (one flat all-reduce)."""
    if not _dist_on() or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    torch.distributed.all_reduce(flat)
    flat /= torch.distributed.get_world_size()
    for t, v in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.copy_(v.reshape(t.shape))


# ----------------------------------------------------------------------------- trainer


class GanTrainer:
    """Holds nets, optimisers and counters; `step()` runs one iteration; `state()`/`load_state()` checkpoint it."""

    def __init__(self, cfg: GanTrainConfig, images: torch.Tensor, device: torch.device | None = None,
                 rank: int = 0, world_size: int = 1):
        self.cfg, self.rank, self.world = cfg, rank, world_size
        self.device = device or resolve_device(cfg.device)
        assert images.ndim == 4 and images.shape[1:] == (cfg.channels, cfg.resolution, cfg.resolution), images.shape
        if cfg.batch % world_size:
            raise ValueError(f"batch {cfg.batch} must be divisible by the number of processes {world_size}")
        self.images = images  # kept on CPU; one batch at a time goes to the device
        self.batch_gpu = cfg.batch // world_size

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.G = Generator(generator_config(cfg)).to(self.device).train()
        self.D = Discriminator(discriminator_config(cfg)).to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        p0 = cfg.augment_p if cfg.augment in ("ada", "fixed") else 0.0
        self.augment = AugmentPipe(p0, lumaflip=1.0 if cfg.lumaflip else 0.0).to(self.device)
        self.ada = AdaController(self.augment, cfg.ada_target, cfg.ada_interval, cfg.ada_kimg) \
            if cfg.augment == "ada" else None
        lr_g, betas_g = lazy_adam_hparams(cfg.lr, (0.0, 0.99), cfg.pl_interval if cfg.pl_weight > 0 else None)
        lr_d, betas_d = lazy_adam_hparams(cfg.lr, (0.0, 0.99), cfg.r1_interval if cfg.gamma > 0 else None)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr_g, betas=betas_g, eps=1e-8)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr_d, betas=betas_d, eps=1e-8)
        self.pl_mean = torch.zeros([], device=self.device)
        self.cur_nimg = 0
        self.step_idx = 0
        self.sampler = {"epoch": 0, "pos": 0}
        self.warm_started_from: str | None = None   # a shipped folder this run continued (`warm_start`)
        # per-rank randomness (noise, z, augmentation) like the official seed * num_gpus + rank
        seed = cfg.seed * world_size + rank
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        if world_size > 1:  # belt and braces: start from rank 0's weights
            for t in [*self.G.state_dict().values(), *self.D.state_dict().values(), *self.G_ema.state_dict().values()]:
                torch.distributed.broadcast(t, src=0)

        # AMP / compile: CUDA only, main phases only (regularisers need fp32 and double backward)
        self.amp_dtype = None
        self.scaler = None
        if self.device.type == "cuda" and cfg.amp != "none":
            self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
            if cfg.amp == "fp16":
                self.scaler = torch.amp.GradScaler("cuda")
        self.synthesis_main, self.D_main = self.G.synthesis, self.D
        if self.device.type == "cuda" and cfg.compile:
            self.synthesis_main, self.D_main = torch.compile(self.G.synthesis), torch.compile(self.D)

    # ---------------------------------------------------------------- data

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.images), generator=g)

    def next_real_batch(self) -> torch.Tensor:
        """This rank's slice of the next global batch (epoch-wise shuffles; state = (epoch, pos)). [b, C, R, R]"""
        idx = []
        while len(idx) < self.cfg.batch:
            perm = self._permutation(self.sampler["epoch"])
            take = perm[self.sampler["pos"]: self.sampler["pos"] + self.cfg.batch - len(idx)]
            idx.extend(take.tolist())
            self.sampler["pos"] += len(take)
            if self.sampler["pos"] >= len(perm):
                self.sampler = {"epoch": self.sampler["epoch"] + 1, "pos": 0}
        mine = idx[self.rank * self.batch_gpu:(self.rank + 1) * self.batch_gpu]
        return self.images[mine].to(self.device)

    # ---------------------------------------------------------------- pieces

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def mapping_with_mixing(self, G, z: torch.Tensor) -> torch.Tensor:
        """ws [N, num_ws, w_dim]; with probability style_mixing, a second z takes over from a random cutoff."""
        ws = G.mapping(z)
        cutoff = int(torch.randint(1, ws.shape[1], []))
        if float(torch.rand([])) < self.cfg.style_mixing:
            ws2 = G.mapping(torch.randn_like(z), update_w_avg=False)
            ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        return ws

    def _zs(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.cfg.z_dim, device=self.device)

    def _backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _opt_step(self, opt: torch.optim.Optimizer, module: torch.nn.Module, scaled: bool = True) -> None:
        """All-reduce (multi-process), nan_to_num, step. `scaled`: the loss went through the fp16 GradScaler."""
        scaler = self.scaler if scaled else None
        params = list(module.parameters())
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        _average_([p.grad for p in params])
        if scaler is not None:
            scaler.unscale_(opt)
        for p in params:
            torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)

    # ---------------------------------------------------------------- one iteration

    def step(self) -> dict:
        cfg, b = self.cfg, self.batch_gpu
        stats = {}
        real = self.next_real_batch()                                      # [b, C, R, R]

        # G main: non-saturating loss through the (frozen) D and the augmentation
        self.D.requires_grad_(False)
        with self._autocast():
            ws = self.mapping_with_mixing(self.G, self._zs(b))
            fake = self.synthesis_main(ws)
            logits = self.D_main(self.augment(fake))
            loss_G = F.softplus(-logits.float()).mean()
        self._backward(loss_G)
        self._opt_step(self.opt_G, self.G)
        stats["loss_G"] = loss_G.item()

        # G reg: path length, on batch / pl_batch_shrink
        if cfg.pl_weight > 0 and self.step_idx % cfg.pl_interval == 0:
            n = max(b // cfg.pl_batch_shrink, 1)
            ws = self.mapping_with_mixing(self.G, self._zs(n))
            fake = self.G.synthesis(ws)
            pl_noise = torch.randn_like(fake) / math.sqrt(fake.shape[2] * fake.shape[3])
            (grad,) = torch.autograd.grad((fake * pl_noise).sum(), ws, create_graph=True)
            lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()          # [n]
            batch_mean = lengths.mean().detach().clone()
            _average_([batch_mean])
            self.pl_mean.copy_(self.pl_mean.lerp(batch_mean, cfg.pl_decay))
            penalty = (lengths - self.pl_mean).square()
            loss = penalty.mean() * cfg.pl_weight * cfg.pl_interval
            loss.backward()
            self._opt_step(self.opt_G, self.G, scaled=False)
            stats["pl"] = penalty.mean().item()
            stats["pl_mean"] = self.pl_mean.item()
        self.D.requires_grad_(True)

        # D main
        with self._autocast():
            with torch.no_grad():
                fake = self.synthesis_main(self.mapping_with_mixing(self.G, self._zs(b)))
            logits_fake = self.D_main(self.augment(fake))
            logits_real = self.D_main(self.augment(real))
            loss_D = (F.softplus(logits_fake.float()) + F.softplus(-logits_real.float())).mean()
        self._backward(loss_D)
        self._opt_step(self.opt_D, self.D)
        if self.ada is not None:
            self.ada.accumulate(logits_real)
        stats["loss_D"] = loss_D.item()
        stats["D_real"] = logits_real.float().mean().item()
        stats["D_fake"] = logits_fake.float().mean().item()

        # D reg: lazy R1 w.r.t. the augmented reals (see module docstring)
        if cfg.gamma > 0 and self.step_idx % cfg.r1_interval == 0:
            real_aug = self.augment(real).detach().requires_grad_(True)
            logits = self.D(real_aug)
            (grad,) = torch.autograd.grad(logits.sum(), real_aug, create_graph=True)
            penalty = grad.square().sum(dim=[1, 2, 3])                     # [b]
            loss = penalty.mean() * (cfg.gamma / 2) * cfg.r1_interval
            loss.backward()
            self._opt_step(self.opt_D, self.D, scaled=False)
            stats["r1"] = penalty.mean().item()

        # bookkeeping: counters, EMA, w_avg sync, ADA
        self.cur_nimg += cfg.batch
        self.step_idx += 1
        if self.world > 1:
            _average_([self.G.mapping.w_avg])
        beta = ema_beta(cfg.batch, self.cur_nimg, cfg.ema_kimg, cfg.ema_rampup)
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.detach().lerp(p_ema, beta))
            for b_ema, b_ in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b_)
        if self.ada is not None:
            self.ada.step(cfg.batch)
        stats["p"] = float(self.augment.p)
        return stats

    # ---------------------------------------------------------------- checkpoint state

    def state(self) -> tuple[dict, dict]:
        tensors = {
            **ckpt.prefixed("G", self.G.state_dict()),
            **ckpt.prefixed("D", self.D.state_dict()),
            **ckpt.prefixed("G_ema", self.G_ema.state_dict()),
            "augment.p": self.augment.p,
            "pl_mean": self.pl_mean,
        }
        tg, mg = ckpt.optimizer_state(self.opt_G, "optG")
        td, md = ckpt.optimizer_state(self.opt_D, "optD")
        tr, mr = ckpt.rng_state()
        tensors.update(tg)
        tensors.update(td)
        tensors.update(tr)
        meta = {
            "config": self.cfg.to_dict(), "cur_nimg": self.cur_nimg, "kimg": self.cur_nimg / 1000,
            "step": self.step_idx, "sampler": dict(self.sampler), "optG": mg, "optD": md, "rng": mr,
            "world_size": self.world, "torch": torch.__version__, "warm_started_from": self.warm_started_from,
        }
        if self.ada is not None:
            st = self.ada.state_dict()
            tensors["ada.acc"] = st["acc"]
            meta["ada"] = {"batches": st["batches"], "last_rt": st["last_rt"]}
        if self.scaler is not None:
            meta["grad_scaler"] = {k: _plain(v) for k, v in self.scaler.state_dict().items()}
        return tensors, meta

    def save(self, path) -> Path:
        tensors, meta = self.state()
        return ckpt.save_checkpoint(path, tensors, meta)

    def load_state(self, tensors: dict, meta: dict, path="<checkpoint>") -> None:
        ckpt.check_config(path, meta["config"], self.cfg.to_dict(), ARCH_FIELDS)
        self.G.load_state_dict(ckpt.unprefixed("G", tensors))
        self.D.load_state_dict(ckpt.unprefixed("D", tensors))
        self.G_ema.load_state_dict(ckpt.unprefixed("G_ema", tensors))
        # p is restored as it was (the official code restarts p at 0 and uses ada_kimg 100 on resume
        # because its pickles did not carry p; ours do)
        self.augment.p.copy_(tensors["augment.p"])
        self.pl_mean.copy_(tensors["pl_mean"])
        ckpt.load_optimizer_state(self.opt_G, "optG", tensors, meta["optG"])
        ckpt.load_optimizer_state(self.opt_D, "optD", tensors, meta["optD"])
        self.cur_nimg, self.step_idx = int(meta["cur_nimg"]), int(meta["step"])
        self.sampler = dict(meta["sampler"])
        self.warm_started_from = meta.get("warm_started_from")
        if self.ada is not None and "ada.acc" in tensors:
            self.ada.load_state_dict({"acc": tensors["ada.acc"], **meta["ada"]})
        if self.scaler is not None and "grad_scaler" in meta:
            self.scaler.load_state_dict(meta["grad_scaler"])
        if self.world == 1 and meta.get("world_size", 1) == 1:
            ckpt.set_rng_state(tensors, meta["rng"])  # bit-exact continuation
        else:
            # the checkpoint holds rank 0's RNG only: give every rank a fresh, distinct stream instead
            # (weights, optimisers, p, counters are still restored exactly)
            seed = (self.cfg.seed * self.world + self.rank) + 1_000_003 * self.step_idx
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)

    def load(self, path) -> None:
        tensors, meta = ckpt.load_checkpoint(path)
        self.load_state(tensors, meta, path)

    # ---------------------------------------------------------------- evaluation helpers (own RNG)

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.cfg.z_dim, generator=g).to(self.device)
        out = [self.G_ema(z[i:i + 64], noise_mode="const") for i in range(0, n, 64)]
        return torch.cat(out)

    def swd_now(self) -> dict:
        n = min(self.cfg.swd_images, len(self.images))
        g = torch.Generator().manual_seed(self.cfg.seed + 7)
        real = self.images[torch.randperm(len(self.images), generator=g)[:n]]
        return swd(real, self.sample(n, seed=self.cfg.seed + 11).cpu(), seed=self.cfg.seed)

    def fid_now(self) -> float | None:
        """FID on the same real/fake sets as `swd_now`, or None when no Inception weights are cached."""
        if fid_unavailable_reason() is not None:
            return None
        n = min(self.cfg.swd_images, len(self.images))
        g = torch.Generator().manual_seed(self.cfg.seed + 7)
        real = self.images[torch.randperm(len(self.images), generator=g)[:n]]
        return fid(real, self.sample(n, seed=self.cfg.seed + 11).cpu())


def _plain(v):
    return v.item() if isinstance(v, torch.Tensor) else v


# ----------------------------------------------------------------------------- the entry point


def warm_start(trainer: GanTrainer, folder, log_path: Path | None = None) -> None:
    """Continue a shipped GAN (`folder`: gan.safetensors + manifest.json) with fresh optimisers.

    A shipped folder keeps G_ema and D only, so G starts from G_ema; the image counter, ADA's p and the
    path-length mean continue from the shipped log. Adam restarts (with betas (0, 0.99) only its second
    moment is lost). The shipped log is copied to `log_path` so the run's log and step time cover the whole
    training. The architecture must match the trainer's config."""
    from ..pretrained import load_pretrained_gan
    from .loop import read_log

    folder = Path(folder)
    G_ema, D, manifest = load_pretrained_gan(folder)
    arch = {k: manifest["config"][k] for k in ARCH_FIELDS}
    ckpt.check_config(folder / "manifest.json", arch, trainer.cfg.to_dict(), ARCH_FIELDS)
    trainer.G.load_state_dict(G_ema.state_dict())
    trainer.G_ema.load_state_dict(G_ema.state_dict())
    trainer.D.load_state_dict(D.state_dict())
    lines = read_log(folder / "log.jsonl")
    last = lines[-1]
    trainer.cur_nimg = int(round(last["kimg"] * 1000))
    trainer.augment.p.fill_(float(last.get("p") or 0.0))
    trainer.pl_mean.fill_(float(last.get("pl_mean") or 0.0))
    trainer.warm_started_from = str(folder)
    if log_path is not None:
        ckpt.atomic_write_bytes(log_path, (folder / "log.jsonl").read_bytes())


def train_gan(data_dir, out_dir, config: GanTrainConfig | str | None = None, resume: bool = False,
              progress: bool = True, init_from: str | Path | None = None) -> dict:
    """Train StyleGAN2-ADA on `data_dir/train/good/*.png`; write logs, samples and checkpoints to `out_dir`.

    out_dir/latest.safetensors (+ .json)   everything needed to resume (`resume=True`)
    out_dir/log.jsonl                      one line per log tick
    out_dir/samples_kimgXXXXXX.png         G_ema on a fixed set of z (const noise)
    Returns a summary dict (kimg, seconds, last log line, paths).
    init_from: a shipped GAN folder to continue (`warm_start`) when there is no checkpoint to resume.
    """
    from tqdm.auto import tqdm

    cfg = get_preset(config) if isinstance(config, str) else (config or GanTrainConfig())
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device)
    rank, world, device = init_distributed(device)
    is_main = rank == 0
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    if device.type != "cuda" and (cfg.amp != "none" or cfg.compile):
        print(f"note: amp={cfg.amp!r} / compile={cfg.compile} apply on CUDA only; running plain fp32 on {device}")

    images = load_images(data_dir, cfg.resolution, cfg.channels)
    trainer = GanTrainer(cfg, images, device, rank, world)
    latest = out_dir / "latest.safetensors"
    log_path = out_dir / "log.jsonl"
    if is_main:
        ckpt.remove_stale_temp_files(latest)  # a killed run may have died inside a checkpoint write
    if resume and latest.exists():
        trainer.load(latest)
        if is_main:
            print(f"resumed from {latest} at {trainer.cur_nimg / 1000:.3f} kimg")
            _drop_log_lines_after(log_path, trainer.cur_nimg)
    elif init_from is not None:
        warm_start(trainer, init_from, log_path if is_main else None)
        if is_main:
            print(f"continuing {init_from} at {trainer.cur_nimg / 1000:.3f} kimg (fresh optimisers)")
    elif resume and is_main:
        print(f"no checkpoint at {latest}; starting from scratch")
    if is_main and cfg.swd_images > 0 and fid_unavailable_reason() is not None:
        print(f"FID not logged: {fid_unavailable_reason()} (SWD is)")

    total_nimg = int(round(cfg.total_kimg * 1000))
    grid_n = 64 if cfg.resolution <= 64 else 16
    tick_start_nimg = trainer.cur_nimg
    t0 = time.time()
    acc: dict[str, list] = {}
    next_log = _next_multiple(trainer.cur_nimg, cfg.log_kimg)
    next_snap = _next_multiple(trainer.cur_nimg, cfg.snapshot_kimg)
    next_swd = _next_multiple(trainer.cur_nimg, cfg.swd_kimg)
    last_line: dict = {}
    bar = tqdm(total=total_nimg, initial=min(trainer.cur_nimg, total_nimg), unit="img",
               disable=not (progress and is_main), desc="train-gan")
    step_time = 0.0  # seconds inside trainer.step() this tick (excludes SWD, samples, checkpoints)
    while trainer.cur_nimg < total_nimg:
        ts = time.time()
        stats = trainer.step()
        step_time += time.time() - ts
        for k, v in stats.items():
            acc.setdefault(k, []).append(v)
        bar.update(cfg.batch)
        done = trainer.cur_nimg >= total_nimg
        kimg = trainer.cur_nimg / 1000
        if trainer.cur_nimg >= next_log or done:
            dt = step_time
            line = {"kimg": round(kimg, 3), **{k: float(np.mean(v)) for k, v in acc.items()}}
            line["r_t"] = trainer.ada.last_rt if trainer.ada is not None else None
            line["s_per_kimg"] = dt / max((trainer.cur_nimg - tick_start_nimg) / 1000, 1e-9)
            line["peak_mem_mb"] = peak_memory_mb(device)
            if cfg.swd_images > 0 and (trainer.cur_nimg >= next_swd or done):
                if is_main:
                    line["swd"] = trainer.swd_now()["avg"]
                    fid_value = trainer.fid_now()  # only where Inception weights are already cached
                    if fid_value is not None:
                        line["fid"] = fid_value
                next_swd = _next_multiple(trainer.cur_nimg, cfg.swd_kimg)
            line = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in line.items()}
            if is_main:
                with open(log_path, "a") as f:
                    f.write(json.dumps(line) + "\n")
                bar.set_postfix(G=f"{line.get('loss_G', 0):.2f}", D=f"{line.get('loss_D', 0):.2f}",
                                p=f"{line['p']:.3f}")
            last_line, acc = line, {}
            tick_start_nimg, step_time = trainer.cur_nimg, 0.0
            next_log = _next_multiple(trainer.cur_nimg, cfg.log_kimg)
        if trainer.cur_nimg >= next_snap or done:
            if is_main:
                save_image_grid(trainer.sample(grid_n, seed=cfg.seed + 1), out_dir / f"samples_kimg{int(kimg):06d}.png",
                                nrow=int(math.sqrt(grid_n)))
                trainer.save(latest)
                if cfg.keep_snapshots:
                    trainer.save(out_dir / f"network-snapshot-{int(kimg):06d}.safetensors")
            next_snap = _next_multiple(trainer.cur_nimg, cfg.snapshot_kimg)
    bar.close()
    if is_main and not latest.exists():  # resumed a finished run: still leave a checkpoint
        trainer.save(latest)
    return {
        "out_dir": str(out_dir), "checkpoint": str(latest), "log": str(log_path), "kimg": trainer.cur_nimg / 1000,
        "steps": trainer.step_idx, "seconds": time.time() - t0, "device": str(device), "rank": rank,
        "world_size": world, "p": float(trainer.augment.p), "last": last_line, "trainer": trainer,
    }


def _drop_log_lines_after(log_path: Path, cur_nimg: int) -> None:
    """Keep the log lines up to the checkpoint a run resumes from: the ticks after it are trained again
    (a killed run may have logged past its last checkpoint), so the log reads as one uninterrupted run.
    A last line cut short by the kill is dropped too."""
    if not log_path.exists():
        return
    lines = [s for s in log_path.read_text().splitlines() if s.strip()]

    def before_checkpoint(s: str) -> bool:
        try:
            return round(json.loads(s).get("kimg", 0) * 1000) <= cur_nimg
        except json.JSONDecodeError:
            return False

    keep = [s for s in lines if before_checkpoint(s)]
    if len(keep) < len(lines):
        ckpt.atomic_write_bytes(log_path, "".join(s + "\n" for s in keep).encode())


def _next_multiple(nimg: int, kimg: float) -> int:
    step = max(int(round(kimg * 1000)), 1)
    return (nimg // step + 1) * step

"""GAN training configuration and its presets (presets are plain data: dicts of field values)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .nets.stylegan2 import DiscriminatorConfig, GeneratorConfig


@dataclass
class GanTrainConfig:
    # data / architecture
    resolution: int = 32
    channels: int = 1
    z_dim: int = 128
    w_dim: int = 128
    map_layers: int = 2
    channel_base: int = 2048
    channel_max: int = 128
    mbstd_group: int = 4
    # optimisation
    batch: int = 16                 # global batch (split over ranks under torchrun)
    lr: float = 0.0025
    gamma: float = 0.0128           # R1 weight; 'auto' formula 0.0002 * res^2 / batch
    ema_kimg: float = 5.0           # G EMA half-life in kimg; 'auto' formula batch * 10 / 32
    ema_rampup: float | None = 0.05  # half-life <= cur_nimg * rampup early on; None disables
    r1_interval: int = 16
    pl_interval: int = 4
    pl_weight: float = 2.0
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing: float = 0.9
    # augmentation
    augment: str = "ada"            # 'ada' (p tuned by r_t) | 'fixed' (p = augment_p) | 'none'
    augment_p: float = 0.0
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 100.0         # official 500; shorter runs need p to move faster
    lumaflip: bool = False          # intensity inversion: wrong for radiographs, see nets/augment.py
    # schedule / bookkeeping
    total_kimg: float = 50.0
    seed: int = 0
    log_kimg: float = 1.0           # one JSONL line per log tick
    snapshot_kimg: float = 10.0     # checkpoint `latest` + sample grid
    keep_snapshots: bool = False    # also keep network-snapshot-KKKKKK.safetensors
    swd_kimg: float = 10.0          # sliced Wasserstein distance G_ema vs reals
    swd_images: int = 256           # 0 disables SWD
    # hardware
    device: str = "auto"            # 'auto' | 'cpu' | 'cuda' | 'cuda:1' ...
    amp: str = "none"               # 'none' | 'bf16' | 'fp16' (CUDA only; main phases only)
    compile: bool = False           # torch.compile the main-phase nets (CUDA only)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GanTrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown GanTrainConfig fields: {sorted(unknown)}")
        return cls(**d)


# Fields that fix tensor shapes: a checkpoint can only be resumed/loaded with the same values.
ARCH_FIELDS = ("resolution", "channels", "z_dim", "w_dim", "map_layers", "channel_base", "channel_max")


def generator_config(cfg: GanTrainConfig) -> GeneratorConfig:
    return GeneratorConfig(
        resolution=cfg.resolution, img_channels=cfg.channels, z_dim=cfg.z_dim, w_dim=cfg.w_dim,
        mapping_layers=cfg.map_layers, channel_base=cfg.channel_base, channel_max=cfg.channel_max,
    )


def discriminator_config(cfg: GanTrainConfig) -> DiscriminatorConfig:
    return DiscriminatorConfig(
        resolution=cfg.resolution, img_channels=cfg.channels, channel_base=cfg.channel_base,
        channel_max=cfg.channel_max, mbstd_group=cfg.mbstd_group,
    )


def auto_values(resolution: int, gpus: int = 1) -> dict:
    """The official 'auto' configuration (StyleGAN2-ADA train.py, cfg='auto'), as field values.

    mb      = max(min(gpus * min(4096 // res, 32), 64), gpus)
    mbstd   = min(mb // gpus, 4)
    fmaps   = 1 if res >= 512 else 0.5  -> channel_base = fmaps * 32768, channel_max = 512
    lr      = 0.002 if res >= 1024 else 0.0025
    gamma   = 0.0002 * res**2 / mb
    ema     = mb * 10 / 32 kimg, rampup 0.05; mapping 2 layers; z = w = 512
    """
    mb = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    fmaps = 1 if resolution >= 512 else 0.5
    return dict(
        resolution=resolution, batch=mb, mbstd_group=min(mb // gpus, 4),
        channel_base=int(fmaps * 32768), channel_max=512, z_dim=512, w_dim=512, map_layers=2,
        lr=0.002 if resolution >= 1024 else 0.0025, gamma=0.0002 * resolution**2 / mb,
        ema_kimg=mb * 10 / 32, ema_rampup=0.05,
    )


PRESETS: dict[str, dict] = {
    # CPU presets: narrow nets (32-128 channels, ~1.1 M parameters each for G and D), short runs;
    # cpu64 is meant to give recognisable phantoms in 1-2 h on 2 cores. ada_kimg 25 instead of the
    # official 500: the official value was sized for 25 000-kimg runs; in a 50-100 kimg run p could
    # otherwise never rise far enough to stop D from overfitting a few hundred images.
    "cpu32": dict(
        resolution=32, batch=16, z_dim=128, w_dim=128, map_layers=2, channel_base=2048, channel_max=128,
        gamma=0.0002 * 32**2 / 16,            # 'auto' formula: 0.0128
        ema_kimg=16 * 10 / 32,                # 'auto' formula: 5 kimg
        ema_rampup=0.05, ada_kimg=25, total_kimg=50, snapshot_kimg=10, swd_kimg=10, log_kimg=1,
    ),
    "cpu64": dict(
        resolution=64, batch=16, z_dim=128, w_dim=128, map_layers=2, channel_base=2048, channel_max=128,
        gamma=0.0002 * 64**2 / 16,            # 'auto' formula: 0.0512
        ema_kimg=16 * 10 / 32,                # 5 kimg
        ema_rampup=0.05, ada_kimg=25, total_kimg=100, snapshot_kimg=10, swd_kimg=10, log_kimg=1,
    ),
    # One-GPU presets from the official 'auto' formulae (see auto_values):
    #   256 px: mb 16, mbstd 4, channel_base 16384, channel_max 512, gamma 0.8192, ema 5 kimg, map 2
    #   512 px: mb 8,  mbstd 4, channel_base 32768, channel_max 512, gamma 6.5536, ema 2.5 kimg, map 2
    # (The paper's own 'paper256' config was for 8 GPUs: mb 64, mbstd 8, gamma 1, ema 20 kimg, no
    # rampup, map 8, channel_base 16384 — pass those as overrides to reproduce it exactly.)
    "paper256": dict(auto_values(256), ada_kimg=500, total_kimg=5000, snapshot_kimg=50, swd_kimg=50,
                     log_kimg=4, swd_images=1024),
    "paper512": dict(auto_values(512), ada_kimg=500, total_kimg=5000, snapshot_kimg=50, swd_kimg=50,
                     log_kimg=4, swd_images=1024),
}


def get_preset(name: str, **overrides) -> GanTrainConfig:
    """GanTrainConfig for a named preset, with any field overridden (e.g. total_kimg=5)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return GanTrainConfig.from_dict({**PRESETS[name], **overrides})

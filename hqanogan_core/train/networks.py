"""The networks of every trained baseline, by method name: built from the architecture dict that every
checkpoint stores, and seeded. Below the trainers (they all build their nets here) and the methods (which
load them), so neither needs the other."""
from __future__ import annotations

import torch

from ..nets import autoencoder as ae_nets
from ..nets import deep_svdd as svdd_nets
from ..nets import ganomaly as ganomaly_nets
from ..nets import resnet
from ..nets import wgan

BASELINE_NETS = ("ae", "vae", "fanogan", "ganomaly", "deepsvdd", "deepsad", "cutpaste", "anatpaste")


def seeded_nets(method: str, arch: dict, seed: int) -> dict[str, torch.nn.Module]:
    """`build_nets` with the initial weights drawn from `seed`, without touching the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        nets = build_nets(method, arch)
        if method == "ganomaly":
            for net in nets.values():
                net.apply(ganomaly_nets.dcgan_init)      # the official code's initialisation
    return nets


def build_nets(method: str, arch: dict) -> dict[str, torch.nn.Module]:
    """The networks of a baseline from its architecture dict (as stored in every checkpoint)."""
    a = dict(arch)
    if method == "ae":
        return {"ae": ae_nets.ConvAutoencoder(ae_nets.AutoencoderConfig(**a))}
    if method == "vae":
        return {"vae": ae_nets.ConvVAE(ae_nets.AutoencoderConfig(**a))}
    if method == "fanogan":
        cfg = wgan.WganConfig(**a)
        return {"G": wgan.Generator(cfg), "critic": wgan.Critic(cfg), "E": wgan.Encoder(cfg)}
    if method == "ganomaly":
        cfg = ganomaly_nets.GanomalyConfig(**a)
        return {"G": ganomaly_nets.GanomalyGenerator(cfg), "D": ganomaly_nets.GanomalyDiscriminator(cfg)}
    if method in ("deepsvdd", "deepsad"):
        cfg = svdd_nets.DeepSVDDNetConfig(**a)
        return {"phi": svdd_nets.DeepSVDDEncoder(cfg), "decoder": svdd_nets.DeepSVDDDecoder(cfg)}
    if method in ("cutpaste", "anatpaste"):
        return {"net": resnet.ResNet18(resnet.ResNetConfig(**a))}
    raise ValueError(f"unknown baseline {method!r}; trainable baselines: {', '.join(BASELINE_NETS)}")


# the nets a method needs to score (what is shipped and loaded); the others only serve training
SCORING_NETS = {"deepsvdd": ("phi",), "deepsad": ("phi",)}


def scoring_nets(method: str) -> tuple[str, ...] | None:
    """Names of the nets scoring needs, None for all of them."""
    return SCORING_NETS.get(method)

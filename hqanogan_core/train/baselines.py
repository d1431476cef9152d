"""Training recipes of the generative baselines, each its own paper's, scaled to a CPU at 64 px.

    python -m hqanogan_core train-baseline METHOD --data DIR --out RUN [--steps N] [--resume]

One trainer class per method (the losses are module-level functions); they share `NetsTrainer` (seeded
batches, checkpoint state of every net and optimiser) and `loop.run_training` (JSONL log, tqdm, atomic
resumable safetensors). Configs are dataclasses whose defaults are the CPU budget; `GPU_PRESETS` holds the
papers' full-scale settings as data. AnoGAN trains nothing: it reuses f-AnoGAN's generator and critic.

Recipes (what each paper does -> what we do on 2 CPU cores, and why):
  ae        conv autoencoder, MSE, Adam 1e-3, batch 64.
  vae       Kingma & Welling: Gaussian decoder (sigma 0.1 in [-1, 1] units) + KL to N(0, I), one sample per
            image, Adam 1e-3, batch 64.
  fanogan   Schlegl et al. 2019: WGAN-GP (5 critic steps per generator step, lambda 10, Adam 1e-4, betas
            (0, 0.9), batch 64), then the izi_f encoder with the critic's features (kappa 1) and RMSProp.
            1,500 generator steps at width 8 and batch 32 (the paper: 64 and 64, ~100k steps); the paper
            trains the encoder for 50k iterations at lr 5e-5, at our 1k we use lr 5e-4.
  ganomaly  Akcay et al. 2018: w_adv 1 (L2 of D features), w_con 50 (L1), w_enc 1 (L2 of latents),
            Adam 2e-4, beta1 0.5, batch 64; D re-initialised when its loss falls below 1e-5.
  deepsvdd, deepsad    see `one_class` (Ruff et al. 2018 / 2020).
  cutpaste, anatpaste  see `self_supervised` (Li et al. 2021 / Sato et al. 2022).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from ..nets import autoencoder as ae_nets
from ..nets import ganomaly as ganomaly_nets
from ..nets import wgan
from .networks import SCORING_NETS, build_nets, scoring_nets, seeded_nets  # noqa: F401  (re-exported)
from .one_class import DeepSADConfig, DeepSADTrainer, DeepSVDDConfig, DeepSVDDTrainer
from .self_supervised import AnatPasteConfig, AnatPasteTrainer, CutPasteConfig, CutPasteTrainer
from .trainer import BASELINE_FORMAT, CHECKPOINT_NAME, STEP_SEED_STRIDE, BaselineConfig, NetsTrainer  # noqa: F401

# ----------------------------------------------------------------------------- configs


@dataclass
class AEConfig(BaselineConfig):
    latent: int = 128


@dataclass
class VAEConfig(BaselineConfig):
    latent: int = 128
    sigma: float = 0.1            # decoder std in [-1, 1] image units


@dataclass
class FAnoGANConfig(BaselineConfig):
    width: int = 8                # the paper's 64: a WGAN-GP step (5 critic steps + penalty) is ~2 s on a core at 8
    batch: int = 32
    steps: int = 2500             # gan_steps generator steps, then the rest are encoder steps
    gan_steps: int = 1500
    snapshot_every: int = 100
    lr: float = 1e-4
    betas: tuple = (0.0, 0.9)
    n_critic: int = 5
    lambda_gp: float = 10.0
    z_dim: int = 128
    encoder_lr: float = 5e-4
    kappa: float = 1.0


@dataclass
class GanomalyConfig(BaselineConfig):
    steps: int = 940              # 15 epochs of the 4,000 training normals at batch 64, the paper's schedule
    lr: float = 2e-4
    betas: tuple = (0.5, 0.999)
    nz: int = 100
    w_adv: float = 1.0
    w_con: float = 50.0
    w_enc: float = 1.0


# the papers' own scale, for a GPU (data, not code): --preset gpu
GPU_PRESETS = {
    "ae": {"width": 64, "steps": 20000, "batch": 64},
    "vae": {"width": 64, "steps": 20000, "batch": 64},
    "fanogan": {"width": 64, "gan_steps": 100000, "steps": 150000, "batch": 64, "encoder_lr": 5e-5,
                "snapshot_every": 1000},
    "ganomaly": {"width": 64, "steps": 940, "batch": 64},     # 15 epochs of 4,000 images
    "deepsvdd": {"width": 32, "batch": 128, "steps": 12500, "pretrain_steps": 7800, "lr": 1e-4},   # 250 + 150 epochs
    "deepsad": {"width": 32, "batch": 128, "steps": 12500, "pretrain_steps": 7800, "lr": 1e-4},
    "cutpaste": {"width": 64, "steps": 10000},
    "anatpaste": {"width": 64, "steps": 10000},
}


def _arch(cfg: BaselineConfig, **extra) -> dict:
    return {"resolution": cfg.resolution, "channels": cfg.channels, "width": cfg.width, **extra}


# ----------------------------------------------------------------------------- autoencoder and VAE


class AETrainer(NetsTrainer):
    method = "ae"

    def __init__(self, cfg: AEConfig, images):
        super().__init__(cfg, images)
        self.nets["ae"] = seeded_nets("ae", self.arch(), cfg.seed)["ae"].to(self.device).train()
        self.opts["ae"] = torch.optim.Adam(self.nets["ae"].parameters(), lr=cfg.lr)

    def arch(self) -> dict:
        return _arch(self.cfg, latent=self.cfg.latent)

    def step(self) -> dict:
        x, _ = self.batch()
        loss = F.mse_loss(self.nets["ae"](x), x)
        self.opts["ae"].zero_grad(set_to_none=True)
        loss.backward()
        self.opts["ae"].step()
        self.step_idx += 1
        return {"loss": loss.item()}


def vae_loss(vae, x: torch.Tensor, sigma: float, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(negative ELBO per image [N], KL per image [N]) with one reparameterised sample."""
    mu, logvar = vae.encode(x)
    eps = torch.randn(mu.shape, generator=generator).to(mu.device)
    x_hat = vae.decoder(mu + eps * (0.5 * logvar).exp())
    kl = ae_nets.kl_to_standard_normal(mu, logvar)
    return ae_nets.gaussian_nll(x, x_hat, sigma) + kl, kl


class VAETrainer(NetsTrainer):
    method = "vae"

    def __init__(self, cfg: VAEConfig, images):
        super().__init__(cfg, images)
        self.nets["vae"] = seeded_nets("vae", self.arch(), cfg.seed)["vae"].to(self.device).train()
        self.opts["vae"] = torch.optim.Adam(self.nets["vae"].parameters(), lr=cfg.lr)

    def arch(self) -> dict:
        return _arch(self.cfg, latent=self.cfg.latent)

    def step(self) -> dict:
        x, g = self.batch()
        neg_elbo, kl = vae_loss(self.nets["vae"], x, self.cfg.sigma, g)
        loss = neg_elbo.mean() / x[0].numel()          # per pixel, so the learning rate does not depend on R
        self.opts["vae"].zero_grad(set_to_none=True)
        loss.backward()
        self.opts["vae"].step()
        self.step_idx += 1
        return {"loss": loss.item(), "neg_elbo": neg_elbo.mean().item(), "kl": kl.mean().item()}


# ----------------------------------------------------------------------------- f-AnoGAN


def izif_loss(E, G, critic, x: torch.Tensor, kappa: float):
    """f-AnoGAN's izi_f per image: MSE(x, G(E(x))) + kappa * MSE(f(x), f(G(E(x)))).

    -> (loss [N], residual [N], feature [N], G(E(x)) [N, C, R, R])."""
    x_rec = G(E(x))
    _, f_real = critic(x, return_features=True)
    _, f_rec = critic(x_rec, return_features=True)
    residual = ((x - x_rec) ** 2).flatten(1).mean(dim=1)
    feature = ((f_real - f_rec) ** 2).mean(dim=1)
    return residual + kappa * feature, residual, feature, x_rec


class FAnoGANTrainer(NetsTrainer):
    """Steps 0 .. gan_steps-1: WGAN-GP; then izi_f encoder training with G and the critic frozen."""

    method = "fanogan"

    def __init__(self, cfg: FAnoGANConfig, images):
        super().__init__(cfg, images)
        if not 0 < cfg.gan_steps <= cfg.steps:
            raise ValueError(f"fanogan: need 0 < gan_steps ({cfg.gan_steps}) <= steps ({cfg.steps})")
        self.nets.update({k: v.to(self.device).train()
                          for k, v in seeded_nets("fanogan", self.arch(), cfg.seed).items()})
        self.opts["G"] = torch.optim.Adam(self.nets["G"].parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        self.opts["critic"] = torch.optim.Adam(self.nets["critic"].parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        self.opts["E"] = torch.optim.RMSprop(self.nets["E"].parameters(), lr=cfg.encoder_lr)

    def arch(self) -> dict:
        return _arch(self.cfg, z_dim=self.cfg.z_dim)

    def step(self) -> dict:
        stats = self._gan_step() if self.step_idx < self.cfg.gan_steps else self._encoder_step()
        self.step_idx += 1
        return stats

    def _gan_step(self) -> dict:
        cfg, G, critic = self.cfg, self.nets["G"], self.nets["critic"]
        x_all, g = self.batch(cfg.batch * cfg.n_critic)
        for k in range(cfg.n_critic):
            real = x_all[k * cfg.batch:(k + 1) * cfg.batch]
            with torch.no_grad():
                fake = G(torch.randn(cfg.batch, cfg.z_dim, generator=g).to(self.device))
            wdist = critic(real).mean() - critic(fake).mean()
            gp = wgan.gradient_penalty(critic, real, fake, generator=g)
            loss_c = -wdist + cfg.lambda_gp * gp
            self.opts["critic"].zero_grad(set_to_none=True)
            loss_c.backward()
            self.opts["critic"].step()
        critic.requires_grad_(False)
        loss_g = -critic(G(torch.randn(cfg.batch, cfg.z_dim, generator=g).to(self.device))).mean()
        self.opts["G"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.opts["G"].step()
        critic.requires_grad_(True)
        return {"loss": loss_c.item(), "wasserstein": wdist.item(), "gp": gp.item(), "loss_g": loss_g.item()}

    def _encoder_step(self) -> dict:
        G, critic, E = self.nets["G"], self.nets["critic"], self.nets["E"]
        G.eval().requires_grad_(False)          # frozen: BN uses its running statistics from here on
        critic.eval().requires_grad_(False)
        x, _ = self.batch()
        loss, residual, feature, _ = izif_loss(E, G, critic, x, self.cfg.kappa)
        self.opts["E"].zero_grad(set_to_none=True)
        loss.mean().backward()
        self.opts["E"].step()
        return {"loss": loss.mean().item(), "izi_residual": residual.mean().item(),
                "izi_feature": feature.mean().item()}


# ----------------------------------------------------------------------------- GANomaly


def ganomaly_generator_loss(G, D, x: torch.Tensor, cfg: GanomalyConfig) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """w_adv * ||f(x) - f(x_hat)||^2 + w_con * |x - x_hat| + w_enc * ||z - z_hat||^2 (batch means); also x_hat."""
    x_hat, z, z_hat = G(x)
    _, f_real = D(x)
    _, f_fake = D(x_hat)
    adv = F.mse_loss(f_fake, f_real.detach())
    con = F.l1_loss(x_hat, x)
    enc = F.mse_loss(z_hat, z)
    terms = {"adv": adv.item(), "con": con.item(), "enc": enc.item()}
    return cfg.w_adv * adv + cfg.w_con * con + cfg.w_enc * enc, terms, x_hat


class GanomalyTrainer(NetsTrainer):
    method = "ganomaly"
    D_RESET_BELOW = 1e-5          # the official code re-initialises D when its loss collapses

    def __init__(self, cfg: GanomalyConfig, images):
        super().__init__(cfg, images)
        self.nets.update({k: v.to(self.device).train()
                          for k, v in seeded_nets("ganomaly", self.arch(), cfg.seed).items()})
        self.opts["G"] = torch.optim.Adam(self.nets["G"].parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        self.opts["D"] = torch.optim.Adam(self.nets["D"].parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        self.d_resets = 0

    def arch(self) -> dict:
        return _arch(self.cfg, nz=self.cfg.nz)

    def counters(self) -> dict:
        return {"d_resets": self.d_resets}

    def set_counters(self, values: dict) -> None:
        self.d_resets = int(values.get("d_resets", 0))

    def step(self) -> dict:
        G, D = self.nets["G"], self.nets["D"]
        x, _ = self.batch()
        loss_g, terms, x_hat = ganomaly_generator_loss(G, D, x, self.cfg)
        self.opts["G"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.opts["G"].step()
        real_logit, _ = D(x)                  # D learns on the fake of this step's forward pass (official order)
        fake_logit, _ = D(x_hat.detach())
        loss_d = 0.5 * (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                        + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
        self.opts["D"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.opts["D"].step()
        if loss_d.item() < self.D_RESET_BELOW:
            D.apply(ganomaly_nets.dcgan_init)          # as the official code: D starts over, G keeps going
            self.d_resets += 1
        self.step_idx += 1
        return {"loss": loss_g.item(), "loss_d": loss_d.item(), **terms}


# ----------------------------------------------------------------------------- building and running


# method -> (config class, trainer class): a plain dict
RECIPES = {
    "ae": (AEConfig, AETrainer),
    "vae": (VAEConfig, VAETrainer),
    "fanogan": (FAnoGANConfig, FAnoGANTrainer),
    "ganomaly": (GanomalyConfig, GanomalyTrainer),
    "deepsvdd": (DeepSVDDConfig, DeepSVDDTrainer),
    "deepsad": (DeepSADConfig, DeepSADTrainer),
    "cutpaste": (CutPasteConfig, CutPasteTrainer),
    "anatpaste": (AnatPasteConfig, AnatPasteTrainer),
}

def baseline_config(method: str, preset: str = "cpu", **overrides) -> BaselineConfig:
    """The method's config: CPU defaults, or `preset="gpu"` for the paper's scale; then `overrides`."""
    if method not in RECIPES:
        raise ValueError(f"unknown baseline {method!r}; trainable baselines: {', '.join(RECIPES)}")
    if preset not in ("cpu", "gpu"):
        raise ValueError(f"unknown preset {preset!r}: use 'cpu' or 'gpu'")
    cls = RECIPES[method][0]
    values = {**(GPU_PRESETS[method] if preset == "gpu" else {}), **overrides}
    unknown = sorted(set(values) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"{method} has no setting(s) {unknown}")
    return cls(**values)


def labelled_from_folder(data, cfg) -> torch.Tensor:
    """cfg.n_labelled anomalies of DATA/valid (data.splits.labelled_anomalies, seeded by cfg.seed). [K, C, R, R]"""
    from ..data.splits import labelled_images, load_split

    if isinstance(data, torch.Tensor):
        raise ValueError("deepsad: pass `labelled` images when training from a tensor")
    return labelled_images(load_split(data, "valid"), cfg.n_labelled, cfg.seed, cfg.resolution, cfg.channels)


def train_baseline(method: str, data, out_dir, config: BaselineConfig | None = None, resume: bool = False,
                   progress: bool = True, labelled: torch.Tensor | None = None) -> dict:
    """Train one baseline on normals: `data` is an MVTec-layout folder (train/good) or images [N, C, R, R].

    labelled: anomalies [K, C, R, R] for the semi-supervised recipe (deepsad); never test images."""
    from .gan import load_images
    from .loop import run_training

    cfg = config or baseline_config(method)
    images = data if isinstance(data, torch.Tensor) else load_images(data, cfg.resolution, cfg.channels)
    if method == "deepsad":
        if labelled is None:          # from the folder's validation split, as DeepSAD.fit picks them
            labelled = labelled_from_folder(data, cfg)
        trainer = RECIPES[method][1](cfg, images, labelled)
    else:
        trainer = RECIPES[method][1](cfg, images)
    start = {"method": method, "config": cfg.to_dict(), "device": str(trainer.device), "n_images": len(images),
             "n_labelled": 0 if labelled is None else len(labelled),
             "parameters": {k: sum(p.numel() for p in v.parameters()) for k, v in trainer.nets.items()}}
    return run_training(trainer, out_dir, cfg.steps, checkpoint_name=CHECKPOINT_NAME, log_every=cfg.log_every,
                        snapshot_every=cfg.snapshot_every, resume=resume, progress=progress,
                        desc=f"train-{method}", start_info=start)

"""Deep SVDD (Ruff et al., ICML 2018) and Deep SAD (Ruff et al., ICLR 2020): one network, two phases.

    steps 0 .. pretrain_steps-1   autoencoder pretraining of phi with its mirror decoder (MSE)
    at step pretrain_steps        c = mean of phi over the training normals (eval mode), entries near 0
                                  moved to +-eps; c is stored in the encoder and never changes
    the remaining steps           minimise deep_sad_loss: mean ||phi(x) - c||^2 over a batch of normals,
                                  plus (Deep SAD) eta * mean over labelled anomalies of 1 / ||phi(x) - c||^2

Recipe (the papers -> what we do on 2 CPU cores): Adam with weight decay 0.5e-6 (Deep SVDD) / 1e-6 (Deep SAD);
the papers use batch 128-200 and lr 1e-4 for 250 + 150 epochs (~10k steps); at our 800 + 800 steps of 64 we
use 1e-3. Deep SAD's labelled anomalies are `labelled` images (the caller takes them from the validation split,
never the test split); each step sees all of them up to `batch_labelled`, so a handful of labels has an effect
(the authors' reference code averages the loss over the two groups separately, as here).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..nets import deep_svdd as svdd_nets
from .networks import seeded_nets
from .trainer import BaselineConfig, NetsTrainer

CENTRE_BATCH = 256        # images per forward pass when computing c


@dataclass
class DeepSVDDConfig(BaselineConfig):
    width: int = 8                # 8 / 16 / 32 / 64 filters (the paper: 32 / 64 / 128 at 32 px; 32 in --preset gpu)
    stages: int = 4
    rep_dim: int = 128
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.5e-6
    steps: int = 1600             # pretrain_steps of autoencoder, then one-class steps
    pretrain_steps: int = 800
    eps: float = 0.1              # |c_i| below this is moved to +-eps
    snapshot_every: int = 250


@dataclass
class DeepSADConfig(DeepSVDDConfig):
    weight_decay: float = 1e-6    # Deep SAD's (Deep SVDD's is 0.5e-6)
    eta: float = 1.0
    batch_labelled: int = 32
    n_labelled: int = 20          # labelled anomalies taken from the validation split (data.splits.labelled_anomalies)


def svdd_arch(cfg: DeepSVDDConfig) -> dict:
    return {"resolution": cfg.resolution, "channels": cfg.channels, "width": cfg.width, "stages": cfg.stages,
            "rep_dim": cfg.rep_dim}


class DeepSVDDTrainer(NetsTrainer):
    method = "deepsvdd"

    def __init__(self, cfg: DeepSVDDConfig, images, labelled: torch.Tensor | None = None):
        super().__init__(cfg, images)
        if not 0 <= cfg.pretrain_steps < cfg.steps:
            raise ValueError(f"{self.method}: need 0 <= pretrain_steps ({cfg.pretrain_steps}) < steps ({cfg.steps})")
        nets = seeded_nets(self.method, self.arch(), cfg.seed)
        self.nets["phi"] = nets["phi"].to(self.device).train()
        self.nets["decoder"] = nets["decoder"].to(self.device).train()
        params = list(self.nets["phi"].parameters()) + list(self.nets["decoder"].parameters())
        self.opts["pretrain"] = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.opts["svdd"] = torch.optim.Adam(self.nets["phi"].parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.labelled = labelled

    def arch(self) -> dict:
        return svdd_arch(self.cfg)

    def step(self) -> dict:
        if self.step_idx < self.cfg.pretrain_steps:
            stats = self._pretrain_step()
        else:
            if self.step_idx == self.cfg.pretrain_steps:
                self._set_centre()
            stats = self._svdd_step()
        self.step_idx += 1
        return stats

    def _pretrain_step(self) -> dict:
        x, _ = self.batch()
        loss = F.mse_loss(self.nets["decoder"](self.nets["phi"](x)), x)
        self.opts["pretrain"].zero_grad(set_to_none=True)
        loss.backward()
        self.opts["pretrain"].step()
        return {"loss": loss.item(), "reconstruction": loss.item()}

    @torch.no_grad()
    def _set_centre(self) -> None:
        phi = self.nets["phi"].eval()
        feats = torch.cat([phi(self.images[i:i + CENTRE_BATCH].to(self.device))
                           for i in range(0, len(self.images), CENTRE_BATCH)])
        phi.centre.copy_(svdd_nets.svdd_centre(feats, self.cfg.eps))
        phi.train()

    def _labelled_batch(self, g: torch.Generator) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return None, None

    def _svdd_step(self) -> dict:
        phi = self.nets["phi"]
        x, g = self.batch()
        x_l, y_l = self._labelled_batch(g)
        if x_l is None:
            dist_u, dist_l = phi.distance(x), None
        else:
            dist = phi.distance(torch.cat([x, x_l]))
            dist_u, dist_l = dist[:len(x)], dist[len(x):]
        loss = svdd_nets.deep_sad_loss(dist_u, dist_l, y_l, getattr(self.cfg, "eta", 1.0))
        self.opts["svdd"].zero_grad(set_to_none=True)
        loss.backward()
        self.opts["svdd"].step()
        out = {"loss": loss.item(), "dist_normal": dist_u.mean().item()}
        if dist_l is not None:
            out["dist_labelled"] = dist_l.mean().item()
        return out


class DeepSADTrainer(DeepSVDDTrainer):
    """Deep SVDD plus labelled anomalies (label -1) in every one-class step."""

    method = "deepsad"

    def __init__(self, cfg: DeepSADConfig, images, labelled: torch.Tensor | None = None):
        if labelled is None or len(labelled) == 0:
            raise ValueError("deepsad needs labelled anomalies (images [K, C, R, R], K >= 1); "
                             "with none it is deepsvdd")
        r, c = cfg.resolution, cfg.channels
        assert labelled.shape[1:] == (c, r, r), (f"labelled images must be [K, {c}, {r}, {r}], "
                                                 f"got {tuple(labelled.shape)}")
        super().__init__(cfg, images, labelled)

    def _labelled_batch(self, g: torch.Generator):
        n = min(len(self.labelled), self.cfg.batch_labelled)
        idx = torch.randperm(len(self.labelled), generator=g)[:n]
        return self.labelled[idx].to(self.device), -torch.ones(n, device=self.device)

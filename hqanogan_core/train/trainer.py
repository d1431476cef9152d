"""What every baseline trainer shares: a config base class and `NetsTrainer` (nets and optimisers by name,
seeded batches, and the checkpoint state of all of them). The recipes live in `baselines`, `one_class`
and `self_supervised`; `loop.run_training` runs any of them."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from .. import checkpoint as ckpt

BASELINE_FORMAT = "hqanogan-baseline-checkpoint-v1"
CHECKPOINT_NAME = "checkpoint.safetensors"
STEP_SEED_STRIDE = 1_000_003    # the batch of step t comes from a generator seeded seed * STRIDE + t


@dataclass
class BaselineConfig:
    resolution: int = 64
    channels: int = 1
    width: int = 16
    steps: int = 1500
    batch: int = 64
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"
    log_every: int = 25
    snapshot_every: int = 250

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


class NetsTrainer:
    """Nets and optimisers by name, seeded batches, and the checkpoint state of all of them."""

    method = "baseline"

    def __init__(self, cfg: BaselineConfig, images: torch.Tensor):
        r, c = cfg.resolution, cfg.channels
        assert images.ndim == 4 and images.shape[1:] == (c, r, r), (f"expected images [N, {c}, {r}, {r}], "
                                                                    f"got {tuple(images.shape)}")
        self.cfg, self.images, self.device = cfg, images, torch.device(cfg.device)
        self.nets: dict[str, torch.nn.Module] = {}
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self.step_idx = 0

    def arch(self) -> dict:
        raise NotImplementedError

    def batch(self, n: int | None = None) -> tuple[torch.Tensor, torch.Generator]:
        """A batch of training images for this step, and the step's generator for any other noise."""
        g = torch.Generator().manual_seed(self.cfg.seed * STEP_SEED_STRIDE + self.step_idx)
        idx = torch.randint(len(self.images), (n or self.cfg.batch,), generator=g)
        return self.images[idx].to(self.device), g

    def state(self) -> tuple[dict, dict]:
        tensors, meta = {}, {"kind": "baseline", "baseline_format": BASELINE_FORMAT, "method": self.method,
                             "config": self.cfg.to_dict(), "arch": self.arch(), "step": self.step_idx,
                             "opt": {}, "torch": torch.__version__}
        for name, net in self.nets.items():
            tensors.update(ckpt.prefixed(f"net.{name}", net.state_dict()))
        for name, opt in self.opts.items():
            t, m = ckpt.optimizer_state(opt, f"opt.{name}")
            tensors.update(t)
            meta["opt"][name] = m
        t, meta["rng"] = ckpt.rng_state()
        tensors.update(t)
        meta["counters"] = self.counters()
        return tensors, meta

    def counters(self) -> dict:
        """Extra integers a trainer keeps (saved and restored with the checkpoint)."""
        return {}

    def set_counters(self, values: dict) -> None:
        pass

    def save(self, path) -> Path:
        tensors, meta = self.state()
        return ckpt.save_checkpoint(path, tensors, meta)

    def load(self, path) -> None:
        tensors, meta = ckpt.load_checkpoint(path)
        if meta.get("kind") != "baseline" or meta.get("method") != self.method:
            raise ValueError(f"{path} is not a {self.method} checkpoint (kind {meta.get('kind')!r}, "
                             f"method {meta.get('method')!r})")
        ckpt.check_config(path, meta["arch"], self.arch(), sorted(self.arch()))
        changed = sorted(k for k, v in self.cfg.to_dict().items()           # a longer run (steps) is the usual case
                         if k != "steps" and json.loads(json.dumps(v)) != meta["config"].get(k))
        if changed:
            print(f"note: resuming {path} with changed settings {changed} (was "
                  f"{ {k: meta['config'].get(k) for k in changed} })")
        for name, net in self.nets.items():
            net.load_state_dict(ckpt.unprefixed(f"net.{name}", tensors))
        for name, opt in self.opts.items():
            ckpt.load_optimizer_state(opt, f"opt.{name}", tensors, meta["opt"][name])
        self.step_idx = int(meta["step"])
        ckpt.set_rng_state(tensors, meta["rng"])
        self.set_counters(meta.get("counters", {}))

"""Lookahead (Zhang et al. 2019) and Ranger = RAdam + Lookahead, the optimiser pSp trains with.

Lookahead keeps a second, "slow" copy of the weights. The inner optimiser takes k ordinary ("fast")
steps; then the slow weights move a fraction alpha toward the fast ones and the fast weights are reset
onto them:
    slow <- slow + alpha * (fast - slow);   fast <- slow            (every k inner steps)

State layout: the slow copy (made at a parameter's first update) lives in the inner optimiser's
per-parameter state under "slow_buffer"; k, alpha and the step counter live in its param groups
("lookahead_k", "lookahead_alpha", "lookahead_step").
`Lookahead.state_dict()` is therefore the inner optimiser's own state dict (tensors + JSON-able scalars),
so `checkpoint.optimizer_state` / `load_optimizer_state` save and restore it with safetensors.
"""
from __future__ import annotations

import torch


class Lookahead:
    """Wrap any torch optimiser. `step()` = inner step, then every k-th call the slow/fast synchronisation."""

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 6, alpha: float = 0.5):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("lookahead_k", k)
            group.setdefault("lookahead_alpha", alpha)
            group.setdefault("lookahead_step", 0)

    # the optimiser interface the training loops use
    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure=None):
        # The slow copy starts as the weights before a parameter's first update. It is added to the state
        # only after the inner step, because torch optimisers initialise a parameter's state when it is empty.
        fresh = [(p, p.detach().clone()) for g in self.optimizer.param_groups for p in g["params"]
                 if p.grad is not None and "slow_buffer" not in self.optimizer.state[p]]
        loss = self.optimizer.step(closure)
        for p, slow in fresh:
            self.optimizer.state[p]["slow_buffer"] = slow
        for group in self.optimizer.param_groups:
            group["lookahead_step"] += 1
            if group["lookahead_step"] % group["lookahead_k"]:
                continue
            alpha = group["lookahead_alpha"]
            for p in group["params"]:
                slow = self.optimizer.state[p].get("slow_buffer")
                if slow is None:  # never updated yet: nothing to synchronise
                    continue
                slow.add_(p - slow, alpha=alpha)
                p.copy_(slow)
        return loss

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.optimizer.load_state_dict(state_dict)
        for group in self.optimizer.param_groups:
            group["lookahead_step"] = int(group.get("lookahead_step", 0))

    def __repr__(self):
        g = self.optimizer.param_groups[0]
        return f"Lookahead(k={g['lookahead_k']}, alpha={g['lookahead_alpha']}, {self.optimizer!r})"


def ranger(params, lr: float = 1e-4, betas: tuple[float, float] = (0.95, 0.999), eps: float = 1e-5,
           weight_decay: float = 0.0, k: int = 6, alpha: float = 0.5) -> Lookahead:
    """Ranger (Wright 2019, as used by pSp): torch's RAdam wrapped in Lookahead(k=6, alpha=0.5).
    eps 1e-5 is Ranger's default."""
    return Lookahead(torch.optim.RAdam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay), k, alpha)

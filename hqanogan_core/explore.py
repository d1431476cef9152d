"""One image through a fitted HQ-AnoGAN, everything a reader may want to look at: the latent view.

    view = latent_view(method, images)                  # method: a fitted methods.HQAnoGAN (or _repair)
    view["d2"][i]          per-slot squared Mahalanobis distance of image i's W+ code   [L]
    view["band"]           5th / 95th percentile of the same over held-out normals       [2, L]
    view["restored"][i]    G(E(x)) in [0, 1];  view["repaired"][i]  after latent repair  [R, R]
    view["map"][i], view["map_repaired"][i]   the scorer's anomaly map, and the same with the repair as the
                                              restoration (`scores.HQAnoGANScorer.anomaly_maps`)  [R, R]

`repair_slots` chooses which slots are repaired: None = the rule (unusual for normals, `repair.py`, moved
back to the threshold), or a bool mask [L] / [N, L] (a reader's own choice; "shrink" then moves each chosen
slot to the held-out normals' median distance, so a slot that is merely usual still visibly changes).
`SLOT_GROUPS` names StyleGAN's coarse / middle / fine groups. The explorer widgets and the `explain` report
are drawn from this one function.
"""
from __future__ import annotations

import numpy as np
import torch

from .data.splits import to_model_input
from .methods.hqanogan import REPAIR_DEFAULT
from .nets.psp import style_split
from .terms import Evidence
from .repair import slot_thresholds


CHOSEN_TARGET_QUANTILE = 0.5      # where "shrink" moves the slots a reader chose: the normals' median distance


def slot_groups(num_ws: int) -> dict[str, np.ndarray]:
    """{"coarse" | "middle" | "fine": bool mask [L]} (nets.psp.style_split); empty groups are left out."""
    sizes = style_split(num_ws)
    out, start = {}, 0
    for name, size in zip(("coarse", "middle", "fine"), sizes):
        if size:
            mask = np.zeros(num_ws, bool)
            mask[start:start + size] = True
            out[name] = mask
        start += size
    return out


def latent_view(method, images: np.ndarray, repair_slots: np.ndarray | None = None,
                restoration: tuple | None = None) -> dict:
    """The latent view of images [N, H, W] in [0, 1] (see the module docstring) under a fitted HQ-AnoGAN.

    restoration: (ws, restored) from `scorer.restore` of these images, when already computed (the
    explorer asks for several repair choices of the same images)."""
    scorer = getattr(method, "scorer", None)
    if scorer is None:
        raise RuntimeError("latent_view needs a fitted HQ-AnoGAN method (call fit first)")
    images = np.asarray(images, np.float32)
    assert images.ndim == 3, f"expected images [N, H, W], got {images.shape}"
    x = to_model_input(images, method.pipe.resolution)                             # [N, 1, R, R]
    ws, rec = scorer.restore(x) if restoration is None else restoration
    config = dict(getattr(method, "repair", REPAIR_DEFAULT))
    flagged = None
    if repair_slots is not None:
        flagged = np.broadcast_to(np.asarray(repair_slots, bool), (len(images), ws.shape[1])).copy()
        config["target_quantile"] = CHOSEN_TARGET_QUANTILE
    rep = scorer.repair(x, ws=ws, flagged=flagged, **config)
    x_np, rec_np = x.numpy().mean(axis=1), rec.numpy().mean(axis=1)                 # [N, R, R] in [-1, 1]
    repaired = rep["repaired"].mean(axis=1)
    ev = Evidence(scorer, x, ws, rec)
    return {"input": (x_np + 1) / 2, "restored": (rec_np + 1) / 2, "repaired": (repaired + 1) / 2,
            "map": scorer.anomaly_maps(x, ev),
            "map_repaired": scorer.anomaly_maps(x, ev.with_restoration(torch.from_numpy(rep["repaired"]))),
            "d2": rep["d2"], "d2_repaired": rep["d2_repaired"], "flagged": rep["flagged"],
            "band": np.percentile(scorer.held_out_slots, [5, 95], axis=0),
            "threshold": slot_thresholds(scorer.held_out_slots, config["quantile"]),
            "target": slot_thresholds(scorer.held_out_slots, config["target_quantile"] or config["quantile"]),
            "repair": config}


def score_percentile(score: float, normal_scores: np.ndarray) -> float:
    """Percent of `normal_scores` strictly below `score` (100 = above every normal)."""
    normal_scores = np.asarray(normal_scores, np.float64)
    return float(100.0 * np.mean(normal_scores < score))

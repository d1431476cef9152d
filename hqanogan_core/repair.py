"""Latent repair: put back to normal only the W+ slots that are unusual, then re-synthesise.

The encoder's restoration G(E(x)) is already "x made normal" as far as the encoder's prior goes, but an
anomaly that the encoder did capture lives on in a few slots of E(x). Latent repair finds them and pulls
only them back, so the re-synthesised image keeps everything else of the patient:

    d2[n, l]      squared Mahalanobis distance of slot l of code n to that slot's normal Gaussian
                  (scores.latent_mahalanobis; the Gaussians are fitted on training normals)
    t[l]          the `quantile` of d2[:, l] over held-out normals: above it, slot l is unusual
    flagged       d2 > t                                                              [N, L] bool
    repaired      flagged slots replaced, the others kept bit for bit:
        "shrink"    w' = mu + (w - mu) sqrt(target / d2): radially along the slot's own offset from
                    the mean, to distance^2 `target` (a quantile of held-out normals: at the threshold
                    itself it is the smallest move that makes the slot usual); never pushed outwards
        "retrieve"  the mean of that slot over the k training codes nearest to w on its *unflagged*
                    slots (SCRPS's latent code retrieval and partial swap, MICCAI 2025); with no
                    unflagged slot, nearest on all slots

Pure numpy functions; `HQAnoGANScorer.repair` applies them to images.
"""
from __future__ import annotations

import numpy as np

REPAIR_MODES = ("shrink", "retrieve")


def slot_thresholds(held_out_d2: np.ndarray, quantile: float = 0.95) -> np.ndarray:
    """Per-slot threshold: the `quantile` of held-out normals' per-slot distances. [N, L] -> [L]"""
    assert held_out_d2.ndim == 2, f"expected per-slot distances [N, L], got {held_out_d2.shape}"
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    return np.quantile(held_out_d2, quantile, axis=0)


def unusual_slots(d2: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Which slots are above their threshold. d2 [N, L], thresholds [L] -> [N, L] bool"""
    assert d2.ndim == 2 and d2.shape[1:] == thresholds.shape, (d2.shape, thresholds.shape)
    return d2 > thresholds[None]


def shrink_slots(ws: np.ndarray, means: np.ndarray, d2: np.ndarray, target: np.ndarray,
                 flagged: np.ndarray) -> np.ndarray:
    """Flagged slots moved along (w - mu) to Mahalanobis distance^2 = target (when farther); others unchanged.

    ws [N, L, D], means [L, D], d2 [N, L], target [L], flagged [N, L] -> [N, L, D]"""
    assert ws.ndim == 3 and ws.shape[1:] == means.shape and flagged.shape == ws.shape[:2], (
        ws.shape, means.shape, flagged.shape)
    ratio = np.sqrt(np.maximum(target, 0.0)[None] / np.maximum(d2, 1e-12))               # [N, L]
    # only slots that are flagged AND farther than target move; a flagged slot already within target is
    # kept bit for bit (mu + (w - mu) * 1 is not always w in floating point)
    move = flagged & (ratio < 1.0)
    shrunk = means[None] + (ws - means[None]) * ratio[..., None]
    return np.where(move[..., None], shrunk, ws).astype(ws.dtype)


def retrieve_slots(ws: np.ndarray, bank: np.ndarray, flagged: np.ndarray, k: int = 8) -> np.ndarray:
    """Flagged slots replaced by their mean over the k bank codes nearest on the unflagged slots.

    ws [N, L, D], bank [M, L, D] (normal training codes), flagged [N, L] -> [N, L, D]"""
    assert ws.ndim == 3 and bank.ndim == 3 and ws.shape[1:] == bank.shape[1:], (ws.shape, bank.shape)
    if not 1 <= k <= len(bank):
        raise ValueError(f"k must be in [1, {len(bank)}] (the bank's size), got {k}")
    out = ws.copy()
    for n in np.flatnonzero(flagged.any(axis=1)):
        keep = ~flagged[n] if (~flagged[n]).any() else np.ones(ws.shape[1], bool)
        dist = ((bank[:, keep] - ws[n, keep][None]) ** 2).sum(axis=(1, 2))                # [M]
        nearest = np.argpartition(dist, k - 1)[:k]
        out[n, flagged[n]] = bank[nearest][:, flagged[n]].mean(axis=0)
    return out


def repair_codes(ws: np.ndarray, d2: np.ndarray, thresholds: np.ndarray, means: np.ndarray,
                 mode: str = "shrink", target: np.ndarray | None = None, bank: np.ndarray | None = None,
                 k: int = 8, flagged: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(repaired codes [N, L, D], flagged [N, L]).

    target [L]: where "shrink" moves a slot to (default: the threshold); `flagged` overrides the threshold
    rule (a reader's own choice of slots); `bank` [M, L, D] is needed for mode "retrieve"."""
    flagged = unusual_slots(d2, thresholds) if flagged is None else np.asarray(flagged, bool)
    assert flagged.shape == ws.shape[:2], (flagged.shape, ws.shape)
    if mode == "shrink":
        return shrink_slots(ws, means, d2, thresholds if target is None else target, flagged), flagged
    if mode == "retrieve":
        if bank is None:
            raise ValueError("mode 'retrieve' needs a bank of normal codes")
        return retrieve_slots(ws, bank, flagged, k), flagged
    raise ValueError(f"unknown repair mode {mode!r}; choose one of {REPAIR_MODES}")

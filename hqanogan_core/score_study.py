"""Which score? Every candidate term, aggregation and restoration measured on the validation split; the
choice, and the semi-supervised variant, reported on the test split.

    python -m hqanogan_core score-study --data DIR --out data/pretrained/score_study64 [--valid SEL] [--run ENC]

The validation split is DIR's valid/, or SEL's with --valid (`valid_data`): the phantom book chooses on a
1,000-image phantom of its own seed (`data.default.selection_phantom`), because 200 validation images
cannot tell a gain of 0.01-0.02 AUROC from noise. The training normals and the test split are always DIR's.

`run_score_study` does, in order (no choice ever looks at the test split):

  1. fit the scorer on the training normals (`fit_scorer`: W+ Gaussians; the usual 10 % held out)
  2. for every restoration in REFINE_CANDIDATES (G(E(x)), or the encoder-initialised refinement on pixel MSE
     or on the robust L1 loss, keyed by `ScoreConfig.restoration`: "0", "20", "l1-40", ...):
     `Evidence` for the held-out normals, the validation and the test split, then every candidate term
     under every aggregation in AGGREGATIONS; each column z-scored by the held-out normals
  3. the anomaly map, per restoration (`choose_map`): every non-empty set of MAP_CANDIDATES (each map in units
     of its held-out normals' pixel std, summed) under every sigma in SIGMA_CANDIDATES; the best validation
     pixel AUROC wins, ties to fewer maps. Its sigma smooths every map term, and the map itself becomes the
     candidate column `anomaly_map`. The detection map (`choose_detection_map`): the same sets at that sigma,
     the best validation *image* AUROC (under the best aggregation) wins, ties to fewer maps; it becomes
     the column `detection_map`. What outlines a finding best and what tells an abnormal image from a
     normal one best need not be the same sum (a map that is noisy at the few brightest pixels of a normal
     image can still outline findings well)
  4. `choose_score`: for every (restoration, aggregation, sum or max) a greedy forward selection of
     equal-weight terms on validation AUROC (a term joins only if its gain is more than noise: GAIN_RULE); the best
     validation AUROC wins, ties to fewer terms and less computation. Only restorations that still come
     back normal compete (`restoration_keeps_findings`): a refinement whose residual is less concentrated on
     the validation findings than G(E(x))'s has started to draw the findings, and is reported, not chosen
  5. test: AUROC with a 95 % bootstrap CI, overall and per type, of every column, of the chosen score and of
     the previous default (the four global terms of G(E(x)), equal weights)
  6. the semi-supervised variant (`semi_supervised_curve`): with k labelled abnormal validation images
     (k in K_LABELS, DRAWS random draws each), the weights of the standardised terms are fitted by a
     logistic regression pulled towards the unsupervised weights; k = 0 is the unsupervised default

Steps 1-3 (`measure_study`) take ten-odd minutes per restoration on two CPU cores; steps 4-6
(`study_report`) take seconds on the measured columns. So the CLI runs it once and ships the numbers, and
`score_study(...)` loads `results.json` + `columns.safetensors` when the key matches; when only the
selection rule changed (SELECTION_FIELDS of the key), it re-selects from the stored columns
(`reselect_study`); otherwise it runs `run_score_study` itself, the same functions.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

from . import metrics
from .data.splits import SplitArrays, load_split, to_model_input
from .localisation import inside_outside
from .pipeline import Pipeline, fit_scorer, split_held_out
from .provenance import images_signature, keys_match, portable_path, tensor_digest
from .scores import Evidence, fit_standardisation, standardise
from .terms import ENCODER_MAPS, TERMS, ScoreConfig, aggregate, fit_map_scales, restoration_settings

FORMAT = "hqanogan-score-study-v1"
# candidate terms (and every slot's latent_l<k>, added per generator)
CANDIDATE_TERMS = ("image_residual", "residual_added", "residual_encoder", "perceptual", "perceptual_encoder",
                   "feature_residual", "discriminator_blocks", "latent", "latent_coarse", "latent_middle",
                   "latent_fine", "cycle", "repair_residual", "anomaly_map", "detection_map")
# maps the anomaly and detection maps may sum
MAP_CANDIDATES = ("image_residual", "residual_added", "residual_encoder", "perceptual", "perceptual_encoder")
AGGREGATIONS = {"mean": ("mean", 1.0), "top1": ("topk", 1.0), "top5": ("topk", 5.0), "max": ("max", 1.0)}
# restorations (`terms.restoration_settings`): G(E(x)); that many steps of pixel-MSE refinement in W+; that many
# of the robust pixel-L1 refinement (`project.pixel_loss`)
REFINE_CANDIDATES = ("0", "10", "20", "30", "40", "l1-40", "l1-60")
SIGMA_CANDIDATES = (0.5, 1.0, 2.0, 3.0)
GAIN_BOOT = 1000                            # paired bootstrap resamples behind "does this term add more than noise?"
GAIN_RULE = f"a term joins while the 95 % CI of its paired-bootstrap AUROC gain ({GAIN_BOOT} resamples) is above 0"
K_LABELS = (0, 5, 20, 100)
DRAWS = 20
PRIOR_STRENGTH = 1.0                        # lambda of the pull towards the unsupervised weights
SELECTION_FIELDS = ("gain_rule", "ks", "draws", "prior_strength",    # key fields only steps 4-6 read
                    "min_gain")                                      # (the fixed bar of studies before GAIN_RULE)
PREVIOUS_DEFAULT = ScoreConfig()            # four global terms of G(E(x)), equal weights (until this study)


def column_name(term: str, aggregation: str) -> str:
    return f"{term}@{aggregation}" if TERMS[term].is_map else term


def column_config(column: str, restoration: str, sigma: float, map_terms=("image_residual",),
                  detect_terms=()) -> ScoreConfig:
    """The one-term ScoreConfig that computes `column` ("perceptual@top1", "latent", ...) under `restoration`."""
    term, _, agg = column.partition("@")
    how, top = AGGREGATIONS[agg or "mean"]
    return ScoreConfig(terms=(term,), aggregation=how, top_percent=top, map_sigma=sigma,
                       map_terms=tuple(map_terms), detect_terms=tuple(detect_terms),
                       **restoration_settings(restoration))


def config_of(choice: dict, anomaly_map: dict) -> ScoreConfig:
    """The ScoreConfig of a `choose_score` result under its restoration's maps (`choose_map` and
    `choose_detection_map` results, merged)."""
    how, top = AGGREGATIONS[choice["aggregation"]]
    return ScoreConfig(terms=tuple(c.partition("@")[0] for c in choice["columns"]), combine=choice["combine"],
                       aggregation=how, top_percent=top, map_sigma=anomaly_map["sigma"],
                       map_terms=tuple(anomaly_map["terms"]), detect_terms=tuple(anomaly_map["detect_terms"]),
                       **restoration_settings(choice["restoration"]))


# ----------------------------------------------------------------------------- pure selection math


def combined(z: dict[str, np.ndarray], columns, how: str = "sum", weights=None) -> np.ndarray:
    stack = np.stack([z[c] * (1.0 if weights is None else weights[i]) for i, c in enumerate(columns)])
    return stack.sum(axis=0) if how == "sum" else stack.max(axis=0)


def greedy_selection(z: dict[str, np.ndarray], labels: np.ndarray, candidates, how: str = "sum",
                     n_boot: int = GAIN_BOOT, seed: int = 0) -> tuple[list[str], float]:
    """Forward selection of equal-weight z-scored columns on AUROC: start from the best single column, then
    take the column that raises the AUROC most, but only if its gain is more than noise: the 95 % CI of a
    paired bootstrap of the gain over these images (`metrics.paired_bootstrap`) lies above 0. Stop at the
    first that fails. -> (columns, AUROC)"""
    chosen, best = [], -np.inf
    remaining = list(candidates)
    while remaining:
        gains = {c: metrics.auroc(combined(z, chosen + [c], how), labels) for c in remaining}
        c = max(gains, key=gains.get)
        if chosen:
            gain = metrics.paired_bootstrap(metrics.auroc, combined(z, chosen + [c], how), combined(z, chosen, how),
                                            labels, n_boot=n_boot, seed=seed)
            if gain["ci95"][0] <= 0:
                break
        chosen.append(c)
        remaining.remove(c)
        best = gains[c]
    return chosen, float(best)


def fit_term_weights(z: np.ndarray, y: np.ndarray, prior: np.ndarray, strength: float = PRIOR_STRENGTH) -> np.ndarray:
    """Logistic regression on standardised terms z [n, T] with labels y [n], its weights pulled towards
    `prior` [T]: minimise the class-balanced mean log-loss + strength / 2 ||w - prior||^2 (the intercept is
    free). With no abnormal example (or strength -> inf) the answer is the prior. -> weights [T]"""
    assert z.ndim == 2 and len(z) == len(y) and prior.shape == (z.shape[1],), (z.shape, y.shape, prior.shape)
    y = np.asarray(y, dtype=np.float64)
    if y.sum() == 0 or y.sum() == len(y):
        return prior.astype(np.float64)
    balance = np.where(y == 1, 0.5 / y.sum(), 0.5 / (len(y) - y.sum()))       # each class weighs one half

    def loss(params):
        w, b = params[:-1], params[-1]
        t = z @ w + b
        log_loss = np.logaddexp(0, t) - y * t                                 # -log p(y | z)
        p = 1 / (1 + np.exp(-t))
        grad_t = balance * (p - y)
        value = (balance * log_loss).sum() + strength / 2 * np.square(w - prior).sum()
        grad = np.r_[z.T @ grad_t + strength * (w - prior), grad_t.sum()]
        return value, grad

    res = minimize(loss, np.r_[prior, 0.0], jac=True, method="L-BFGS-B")
    return res.x[:-1]


def semi_supervised_curve(z_valid: dict, valid_labels: np.ndarray, z_test: dict, test, columns, prior_columns,
                          unsupervised: np.ndarray, ks=K_LABELS, draws: int = DRAWS, n_boot: int = 1000,
                          seed: int = 0) -> dict:
    """Test AUROC against the number k of labelled abnormal validation images (all validation normals are
    used as the normal class). k = 0 is the `unsupervised` test score itself; k > 0 a linear score z @ w with
    w fitted by `fit_term_weights`, pulled towards 1 on `prior_columns` and 0 elsewhere. Per k: the mean over
    `draws` random draws of the k images, the 2.5-97.5 % range over draws, the bootstrap CI of the median
    draw, per type."""
    Zv = np.stack([z_valid[c] for c in columns], axis=1)
    Zt = np.stack([z_test[c] for c in columns], axis=1)
    prior = np.array([1.0 if c in prior_columns else 0.0 for c in columns])
    abnormal, normal = np.flatnonzero(valid_labels == 1), np.flatnonzero(valid_labels == 0)
    rng = np.random.default_rng(seed)
    out = {}
    for k in ks:
        if k > len(abnormal):
            continue
        n_draws = 1 if k in (0, len(abnormal)) else draws
        runs = []
        for _ in range(n_draws):
            pick = np.r_[normal, rng.choice(abnormal, k, replace=False)]
            w = fit_term_weights(Zv[pick], valid_labels[pick], prior)
            s = unsupervised if k == 0 else Zt @ w
            runs.append((metrics.auroc(s, test.labels), s, w))
        values = np.array([r[0] for r in runs])
        median = runs[int(np.argsort(values)[len(values) // 2])]
        _, lo, hi = metrics.bootstrap_ci(metrics.auroc, median[1], test.labels, n_boot=n_boot, seed=seed)
        out[str(k)] = {"k": k, "draws": n_draws, "auroc_mean": float(values.mean()),
                       "draw_range": [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))],
                       "median_draw": {"auroc": float(median[0]), "ci95": [lo, hi]},
                       "per_type_mean": per_type_auroc_mean([r[1] for r in runs], test),
                       "weights_mean": dict(zip(columns, np.mean([r[2] for r in runs], axis=0).tolist()))}
    return out


def per_type_auroc_mean(score_sets, test) -> dict:
    """Per anomaly type (against all normals of `test`, any split): the AUROC of each score set [N], averaged."""
    normal = test.labels == 0
    kinds = sorted(set(test.types[test.labels == 1]))
    return {k: float(np.mean([metrics.auroc(s[normal | (test.types == k)], test.labels[normal | (test.types == k)])
                              for s in score_sets])) for k in kinds}


def auroc_report(scores: np.ndarray, split, n_boot: int, seed: int) -> dict:
    """AUROC [95 % CI] overall and per anomaly type (each type against all normals)."""
    value, lo, hi = metrics.bootstrap_ci(metrics.auroc, scores, split.labels, n_boot=n_boot, seed=seed)
    normal = split.labels == 0
    per_type = {}
    for kind in sorted(set(split.types[split.labels == 1])):
        pick = normal | (split.types == kind)
        v, a, b = metrics.bootstrap_ci(metrics.auroc, scores[pick], split.labels[pick], n_boot=n_boot, seed=seed)
        per_type[str(kind)] = {"value": v, "ci95": [a, b]}
    return {"value": value, "ci95": [lo, hi], "per_type": per_type}


# ----------------------------------------------------------------------------- the study


def restoration_quality(ev: Evidence, split, seconds: float) -> dict:
    """PSNR of the restored normals and, on abnormal images with masks, the mean residual inside the finding
    over the mean residual outside it (chapter 3's contrast: does the finding stay in the residual?)."""
    from .project import psnr

    normal = split.labels == 0
    out = {"psnr_normals": float(psnr(ev.x[normal], ev.rec[normal]).mean()), "n_normals": int(normal.sum()),
           "seconds_per_image": seconds / len(ev.x)}
    if split.masks is not None and split.masks.any():
        abnormal = split.labels == 1
        inside, outside = (v.mean() for v in inside_outside(ev.residual()[abnormal], split.masks[abnormal]))
        out.update(contrast=float(inside / outside), change_inside=float(inside), change_outside=float(outside))
    return out


def restoration_keeps_findings(quality: dict, encoder: dict) -> bool:
    """Does a restoration still leave the findings in the residual? Its validation contrast (mean residual
    inside the masks over outside, `restoration_quality`) must be at least G(E(x))'s: refinement may fit
    the normal anatomy better, not the finding. True without masks (nothing to check against)."""
    if "contrast" not in quality or "contrast" not in encoder:
        return True
    return quality["contrast"] >= encoder["contrast"]


def refinement_cost(pipe: Pipeline, images: torch.Tensor, config: ScoreConfig, prior=None) -> float:
    """Seconds per image to refine `images` [N, C, H, W] from scratch under `config` (nothing read from a
    store of refined codes): the cost a new image pays. prior: the scorer's Gaussians, when
    `config.refine_prior` > 0."""
    from .project import refine
    from .recon import encode_images

    if config.refine_prior > 0 and prior is None:
        raise ValueError("refine_prior > 0: refinement_cost needs the Gaussians of the prior")
    ws, _ = encode_images(pipe.G, pipe.E, images)
    t0 = time.perf_counter()
    refine(pipe.G, images, ws, steps=config.refine_steps, lr=config.refine_lr,
           prior=prior if config.refine_prior > 0 else None, lambda_prior=config.refine_prior, loss=config.refine_loss)
    return (time.perf_counter() - t0) / len(images)


@dataclass(frozen=True)
class StudySplits:
    """The three splits a study reads, loaded once (`study_splits`)."""
    train: SplitArrays    # DATA's training normals: the scorer is fitted on them
    valid: SplitArrays    # the split every choice is made on: SEL's valid/ with --valid, else DATA's
    test: SplitArrays     # DATA's test split: reported, never chosen on


def study_splits(data, valid_data=None) -> StudySplits:
    """`data`'s train/ and test/, and the valid/ split of `valid_data` (default: `data`'s own)."""
    return StudySplits(load_split(data, "train"), load_split(valid_data if valid_data is not None else data, "valid"),
                       load_split(data, "test"))


def study_key(pipe: Pipeline, splits: StudySplits, percep_name: str) -> dict:
    """What a stored study depends on: the networks, the three splits' images, the candidates and the rule."""
    return {"generator_sha256": tensor_digest(pipe.G), "encoder_sha256": tensor_digest(pipe.E),
            "discriminator_sha256": tensor_digest(pipe.D) if pipe.D is not None else None,
            "valid_signature": images_signature(splits.valid.images),
            "test_signature": images_signature(splits.test.images),
            "train_signature": images_signature(splits.train.images),
            "terms": list(CANDIDATE_TERMS), "aggregations": list(AGGREGATIONS), "refine": list(REFINE_CANDIDATES),
            "sigmas": list(SIGMA_CANDIDATES), "maps": list(MAP_CANDIDATES), "perceptual": percep_name,
            "gain_rule": GAIN_RULE, "ks": list(K_LABELS), "draws": DRAWS, "prior_strength": PRIOR_STRENGTH}


def study_evidence(scorer, images: torch.Tensor, restoration: str) -> Evidence:
    """`Evidence` for `images` under one restoration label (refined codes from the scorer's store, which
    `pipeline.fit_scorer` set up: each image is refined once per setting)."""
    scorer.config = ScoreConfig(terms=("latent",), **restoration_settings(restoration))
    return Evidence(scorer, images)


def map_sets(scorer, refined: bool) -> list[tuple[str, ...]]:
    """Every non-empty set of MAP_CANDIDATES the scorer can compute (without the maps against G(E(x)) when
    that is the restoration, `refined` false: they would repeat the others)."""
    from itertools import combinations

    maps = [m for m in scorer.usable(MAP_CANDIDATES) if refined or m not in ENCODER_MAPS]
    return [terms for size in range(1, len(maps) + 1) for terms in combinations(maps, size)]


def choose_map(scorer, ev_held: Evidence, ev_valid: Evidence, masks: np.ndarray, seed: int = 0) -> dict:
    """The anomaly map with the best validation pixel AUROC over every set of `map_sets` and every sigma
    (ties to fewer maps, then the smaller sigma). Sets `scorer.map_scales` to the winner's sigma's: every map
    term's held-out pixel std (a term's scale is its own, whatever set it is in, so one fit per sigma serves
    every set and, later, the detection map).
    -> {"terms", "sigma", "pixel_auroc", "aupro", "scales", "candidates": [{"terms", "sigma", "pixel_auroc"}]}"""
    candidates, sets = [], map_sets(scorer, ev_valid.refined)
    for sigma in SIGMA_CANDIDATES:
        every = ScoreConfig(terms=("latent",), map_sigma=sigma, map_terms=sets[-1])     # the last set: every map
        scorer.map_scales = fit_map_scales(ev_held, every)
        for terms in sets:
            cfg = ScoreConfig(terms=("latent",), map_sigma=sigma, map_terms=terms)
            candidates.append({"terms": list(terms), "sigma": sigma, "scales": scorer.map_scales,
                               "pixel_auroc": metrics.pixel_auroc(ev_valid.anomaly_map(cfg), masks, seed=seed)})
    best = max(candidates, key=lambda c: (round(c["pixel_auroc"], 4), -len(c["terms"]), -c["sigma"]))
    cfg = ScoreConfig(terms=("latent",), map_sigma=best["sigma"], map_terms=tuple(best["terms"]))
    scorer.map_scales = best["scales"]
    return {**best, "aupro": metrics.aupro(ev_valid.anomaly_map(cfg), masks, fpr_limit=0.3),
            "candidates": [{k: c[k] for k in ("terms", "sigma", "pixel_auroc")} for c in candidates]}


def choose_detection_map(scorer, ev_held: Evidence, ev_valid: Evidence, labels: np.ndarray, anomaly_map: dict
                         ) -> dict:
    """The detection map: of every set of `map_sets` at the anomaly map's sigma, the one whose aggregate
    (under the best of AGGREGATIONS but "mean", which barely sees a map's peaks) has the best validation
    image AUROC, ties to fewer maps. -> `anomaly_map` with "detect_terms", "detect_auroc" and
    "detect_candidates": [{"terms", "aggregation", "image_auroc"}] added, its "scales" covering every map
    term at that sigma (`choose_map`'s; fitted here when the split has no masks to choose a map by)"""
    sigma, sets = anomaly_map["sigma"], map_sets(scorer, ev_valid.refined)
    scales = anomaly_map.get("scales") or {}
    if not set(sets[-1]) <= set(scales):
        scales = fit_map_scales(ev_held, ScoreConfig(terms=("latent",), map_sigma=sigma, map_terms=sets[-1]))
    scorer.map_scales = scales
    candidates = []
    for terms in sets:
        cfg = ScoreConfig(terms=("latent",), map_sigma=sigma, map_terms=terms)
        maps = ev_valid.anomaly_map(cfg)                     # [N, H, W]
        by_agg = {agg: metrics.auroc(aggregate(maps, *AGGREGATIONS[agg]), labels) for agg in AGGREGATIONS
                  if agg != "mean"}
        agg = max(by_agg, key=by_agg.get)
        candidates.append({"terms": list(terms), "aggregation": agg, "image_auroc": by_agg[agg]})
    best = max(candidates, key=lambda c: (round(c["image_auroc"], 4), -len(c["terms"])))
    return {**anomaly_map, "scales": scorer.map_scales, "detect_terms": best["terms"],
            "detect_auroc": best["image_auroc"], "detect_candidates": candidates}


def term_columns(scorer, ev: Evidence, anomaly_map: dict, log=print) -> dict[str, np.ndarray]:
    """Every candidate column for the images of `ev` under its restoration and the chosen anomaly and
    detection maps (`choose_map`, `choose_detection_map`: the sigma smooths every map term): {column: [N]}."""
    t0 = time.perf_counter()
    restoration, sigma, map_terms = scorer.config.restoration, anomaly_map["sigma"], tuple(anomaly_map["terms"])
    detect_terms = tuple(anomaly_map["detect_terms"])
    scorer.config = ScoreConfig(terms=("latent",), map_sigma=sigma, map_terms=map_terms, detect_terms=detect_terms,
                                **restoration_settings(restoration))
    scorer.map_scales = anomaly_map["scales"]
    cols = {}
    for term in scorer.usable(CANDIDATE_TERMS):
        for agg in (AGGREGATIONS if TERMS[term].is_map else ["mean"]):
            cfg = column_config(column_name(term, agg), restoration, sigma, map_terms, detect_terms)
            cols[column_name(term, agg)] = scorer.terms_of(ev, (term,), cfg)[term]
    for k in range(ev.ws.shape[1]):                                   # every W+ slot on its own
        cols[f"latent_l{k}"] = ev.slot_distances()[:, k].astype(np.float64)
    log(f"[score-study] restoration {restoration}: {len(cols)} columns for {len(ev.x)} images "
        f"in {time.perf_counter() - t0:.0f} s")
    return cols


def measure_study(pipe: Pipeline, splits: StudySplits, percep=None, seed: int = 0, log=print) -> dict:
    """Steps 1-3 of the module docstring (the expensive part): every candidate column of the validation and
    test split, z-scored by the held-out normals, per restoration; each restoration's quality and map.
    -> {"z_valid": {r: {column: [N]}}, "z_test": ..., "columns": {r: [column, ...]}, "restorations": {r: ..},
        "maps": {r: choose_map result}}, r the restoration labels of REFINE_CANDIDATES"""
    train, valid, test = splits.train, splits.valid, splits.test
    R = pipe.G.resolution
    x_train = to_model_input(train.images, R)
    from .paths import cache_dir

    scorer = fit_scorer(pipe, x_train, ScoreConfig(terms=("latent",)), seed=seed, percep=percep,
                        cache=cache_dir() / "scorers")
    held = x_train[split_held_out(len(x_train), ScoreConfig().held_out_fraction, seed)[1]]
    x_valid, x_test = to_model_input(valid.images, R), to_model_input(test.images, R)
    has_masks = valid.masks is not None and valid.masks.any()
    no_masks = {"terms": ["image_residual"], "sigma": ScoreConfig().map_sigma, "scales": None}

    z_valid, z_test, columns, restorations, maps = {}, {}, {}, {}, {}
    for r in REFINE_CANDIDATES:
        ev_held = study_evidence(scorer, held, r)
        t0 = time.perf_counter()
        ev_valid = study_evidence(scorer, x_valid, r)
        maps[r] = choose_map(scorer, ev_held, ev_valid, valid.masks, seed) if has_masks else no_masks
        if has_masks:
            log(f"[score-study] restoration {r}: map {' + '.join(maps[r]['terms'])}, sigma {maps[r]['sigma']:g}: "
                f"validation pixel AUROC {maps[r]['pixel_auroc']:.4f}")
        maps[r] = choose_detection_map(scorer, ev_held, ev_valid, valid.labels, maps[r])
        log(f"[score-study] restoration {r}: detection map {' + '.join(maps[r]['detect_terms'])}: validation "
            f"image AUROC {maps[r]['detect_auroc']:.4f}")
        stats = fit_standardisation(term_columns(scorer, ev_held, maps[r], log))
        valid_cols = term_columns(scorer, ev_valid, maps[r], log)
        z_valid[r] = standardise(valid_cols, stats)
        restorations[r] = restoration_quality(ev_valid, valid, time.perf_counter() - t0)
        columns[r] = list(valid_cols)
        z_test[r] = standardise(term_columns(scorer, study_evidence(scorer, x_test, r), maps[r], log), stats)
        del ev_held, ev_valid
    return {"z_valid": z_valid, "z_test": z_test, "columns": columns, "restorations": restorations, "maps": maps}


def eligible_restorations(restorations: dict) -> dict[int, bool]:
    """Which restorations may be chosen (`restoration_keeps_findings` against G(E(x))'s): label -> bool."""
    return {r: restoration_keeps_findings(restorations[r], restorations["0"]) for r in REFINE_CANDIDATES}


def choose_score(measured: dict, valid_labels: np.ndarray, seed: int = 0) -> tuple[list[dict], dict]:
    """Step 4: for every (restoration, aggregation, sum or max) the greedy selection on validation; the best
    option of an eligible restoration (`eligible_restorations`) wins (ties to fewer terms, less computation).
    -> (options, best option)"""
    z_valid, columns = measured["z_valid"], measured["columns"]
    eligible = eligible_restorations(measured["restorations"])
    options = []
    for r in REFINE_CANDIDATES:
        for agg in AGGREGATIONS:
            pool = [c for c in columns[r] if "@" not in c or c.endswith("@" + agg)]
            for how in ("sum", "max"):
                chosen, value = greedy_selection(z_valid[r], valid_labels, pool, how, seed=seed)
                options.append({"restoration": r, **restoration_settings(r), "aggregation": agg, "combine": how,
                                "columns": chosen, "valid_auroc": value})
    cost = {r: i for i, r in enumerate(REFINE_CANDIDATES)}
    best = max((o for o in options if eligible[o["restoration"]]),
               key=lambda o: (round(o["valid_auroc"], 4), -len(o["columns"]), -cost[o["restoration"]],
                              o["aggregation"] == "mean"))
    return options, best


def study_report(measured: dict, valid, test, n_boot: int = 1000, seed: int = 0) -> dict:
    """Steps 4-6 from the measured columns alone (seconds): the choice on validation, then the test split's
    AUROCs of every column, of the choice and of the previous default, and the semi-supervised curve."""
    z_valid, z_test, columns, maps = (measured[k] for k in ("z_valid", "z_test", "columns", "maps"))
    options, best = choose_score(measured, valid.labels, seed)
    r = best["restoration"]
    chosen = config_of(best, maps[r])
    chosen_test = combined(z_test[r], best["columns"], best["combine"])
    previous = [c for c in columns["0"] if c.partition("@")[0] in PREVIOUS_DEFAULT.terms and
                ("@" not in c or c.endswith("@mean"))]
    report = {
        "chosen": {"config": chosen.to_dict(), "describe": chosen.describe(), **best,
                   "valid_per_type": per_type_auroc_mean([combined(z_valid[r], best["columns"], best["combine"])],
                                                         valid),
                   "test": auroc_report(chosen_test, test, n_boot, seed)},
        "previous_default": {"config": PREVIOUS_DEFAULT.to_dict(), "columns": previous,
                             "valid_auroc": metrics.auroc(combined(z_valid["0"], previous), valid.labels),
                             "test": auroc_report(combined(z_test["0"], previous), test, n_boot, seed)},
        "options": options, "sigma": chosen.map_sigma,
        "restorations": {k: {**measured["restorations"][k], "keeps_findings": ok}
                         for k, ok in eligible_restorations(measured["restorations"]).items()},
        "maps": {k: {f: v for f, v in m.items() if f != "scales"} for k, m in maps.items()},
        "columns": {k: {c: {"valid": metrics.auroc(z_valid[k][c], valid.labels),
                                 "valid_per_type": per_type_auroc_mean([z_valid[k][c]], valid),
                                 "test": auroc_report(z_test[k][c], test, n_boot, seed)} for c in columns[k]}
                    for k in REFINE_CANDIDATES},
    }
    pool = [c for c in columns[r] if "@" not in c or c.endswith("@" + best["aggregation"])]
    report["semi_supervised"] = semi_supervised_curve(
        z_valid[r], valid.labels, z_test[r], test, pool, best["columns"], chosen_test, ks=K_LABELS, draws=DRAWS,
        n_boot=n_boot, seed=seed)
    report["semi_supervised_columns"] = pool
    return report


def best_valid_auroc(report: dict) -> dict[str, float]:
    """The best validation AUROC of any option on each restoration of a study's report (restoration label ->
    AUROC): how far each restoration can take detection, whichever terms ride on it."""
    return {r: max(o["valid_auroc"] for o in report["options"] if o["restoration"] == r)
            for r in report["restorations"]}


def study_tensors(measured: dict) -> dict[str, torch.Tensor]:
    """The z-scored columns as stored: "valid/<r>/<column>" and "test/<r>/<column>"."""
    return {f"{split}/{r}/{c}": torch.from_numpy(np.asarray(measured[f"z_{split}"][r][c], np.float32))
            for split in ("valid", "test") for r in REFINE_CANDIDATES for c in measured["columns"][r]}


def measured_from_stored(found: dict) -> dict:
    """`measure_study`'s result rebuilt from a stored study (its report and z-scored columns), so that a new
    selection rule costs seconds, not a re-measurement (stored in float32, as the stored choice used)."""
    rep = found["report"]
    columns = {r: list(rep["columns"][r]) for r in REFINE_CANDIDATES}
    return {"z_valid": {r: z_columns(found, "valid", r) for r in REFINE_CANDIDATES},
            "z_test": {r: z_columns(found, "test", r) for r in REFINE_CANDIDATES},
            "columns": columns, "restorations": {k: dict(v) for k, v in rep["restorations"].items()},
            "maps": {r: rep["maps"][r] for r in REFINE_CANDIDATES}}


def run_score_study(pipe: Pipeline, splits: StudySplits, percep=None, seed: int = 0, n_boot: int = 1000,
                    log=print) -> dict:
    """The study of the module docstring on `splits` (`study_splits`; masks on valid/ for the map choice)."""
    measured = measure_study(pipe, splits, percep, seed, log)
    report = study_report(measured, splits.valid, splits.test, n_boot, seed)
    return {"report": report, "tensors": study_tensors(measured)}


def reselect_study(found: dict, splits: StudySplits, n_boot: int = 1000, seed: int = 0) -> dict:
    """A stored study's measurements under today's selection rule (`study_report`): {"report", "tensors"}."""
    measured = measured_from_stored(found)
    report = study_report(measured, splits.valid, splits.test, n_boot, seed)
    return {"report": report, "tensors": study_tensors(measured)}


def default_study_path() -> Path:
    from .paths import data_dir

    return data_dir() / "pretrained" / "score_study64"


def save_study(out, result: dict, key: dict, command: str, device: str) -> Path:
    from safetensors.torch import save_file

    from .checkpoint import atomic_write_json
    from .provenance import code_revision

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(result["tensors"], str(out / "columns.safetensors"))
    atomic_write_json(out / "results.json", {"format": FORMAT, "key": key, "command": command, "device": device,
                                             "code": code_revision(), "report": result["report"]})
    return out


def load_study(where, key: dict, measured_only: bool = False) -> dict | None:
    """The study stored in `where` if its key matches `key` (measured_only: all but SELECTION_FIELDS), else None."""
    from safetensors.torch import load_file

    file = Path(where) / "results.json"
    if not file.is_file():
        return None
    doc = json.loads(file.read_text())
    stored = doc.get("key", {})
    if measured_only:
        stored, key = ({k: v for k, v in d.items() if k not in SELECTION_FIELDS} for d in (stored, key))
    if doc.get("format") != FORMAT or not keys_match(stored, key):
        return None
    tensors = load_file(str(Path(where) / "columns.safetensors"))
    return {"report": doc["report"], "tensors": tensors, "command": doc.get("command"), "loaded_from": str(file)}


def z_columns(result: dict, split: str, restoration: str) -> dict[str, np.ndarray]:
    """{column: z-scores [N]} of one split and restoration (label, `ScoreConfig.restoration`) from a study result."""
    prefix = f"{split}/{restoration}/"
    return {k[len(prefix):]: v.numpy().astype(np.float64) for k, v in result["tensors"].items() if k.startswith(prefix)}


def score_study(pipe: Pipeline, data, percep=None, shipped=None, out=None, log=print, valid_data=None) -> dict:
    """The shipped study if its key matches (networks, data, the validation split of `valid_data` (default:
    `data`'s), candidates, selection rule); a stored study whose measurements match, re-selected under today's
    rule (`reselect_study`, seconds); else `run_score_study`. What is not the shipped study is written to `out`
    (default cache/score_study)."""
    from .benchmark import device_description
    from .nets.perceptual import PerceptualDistance
    from .paths import cache_dir

    percep = percep or PerceptualDistance()
    splits = study_splits(data, valid_data)          # loaded once: the key, the measurements and the report
    key = study_key(pipe, splits, percep.backend_name)
    out = Path(out) if out is not None else cache_dir() / "score_study"
    places = (Path(shipped) if shipped is not None else default_study_path(), out)
    for where in places:
        if (found := load_study(where, key)) is not None:
            log(f"[score-study] loaded {found['loaded_from']} (command: {found['command']})")
            return found
    for where in places:
        if (found := load_study(where, key, measured_only=True)) is not None:
            log(f"[score-study] {found['loaded_from']} was selected under another rule: re-selecting (seconds)")
            result = reselect_study(found, splits)
            save_study(out, result, key, f"score_study() (re-selected from {portable_path(found['loaded_from'])})",
                       device_description())
            return {**result, "loaded_from": None}
    log("[score-study] no stored study matches these networks and data: running it (minutes)")
    result = run_score_study(pipe, splits, percep, log=log)
    save_study(out, result, key, "score_study() (recomputed, not shipped)", device_description())
    return {**result, "loaded_from": None}

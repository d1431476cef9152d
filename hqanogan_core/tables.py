"""Markdown tables and comparison words for the book, built from benchmark reports (never typed by hand)."""
from __future__ import annotations


def _ci(entry: dict, digits: int = 3) -> str:
    return f"{entry['value']:.{digits}f} [{entry['ci95'][0]:.{digits}f}, {entry['ci95'][1]:.{digits}f}]"


def _opt(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _duration(seconds) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def method_table(report: dict, methods=None, bold: str | None = None, memory: bool = False,
                 notes: dict | None = None) -> str:
    """One row per method: image AUROC / AP / sensitivity at 95 % specificity [95 % CI], pixel AUROC, AUPRO,
    training time (the networks' training steps for learned methods, else the harness's fit time), ms per
    image, parameters (for methods that only fit statistics: the numbers they store), images scored; with
    `memory`, the peak resident memory the method added while it was fitted and scored (peak minus the
    process's memory before it started); `notes`:
    {method: a few words printed after its name}, e.g. what it was trained on."""
    rows = []
    for name in methods or report["methods"]:
        r = report["methods"][name]
        info = r.get("info") or {}
        label = f"**{name}**" if name == bold else name
        if notes and name in notes:
            label += f" ({notes[name]})"
        row = [label, _ci(r["image"]["auroc"]), _ci(r["image"]["ap"]), _ci(r["image"]["sens_at_95spec"], 2),
               _opt(r.get("pixel_auroc"), ".3f"), _opt(r.get("aupro"), ".3f"),
               _duration(info.get("train_seconds") or r.get("train_seconds")),
               _opt(r.get("ms_per_image"), ".1f"), _opt(info.get("parameters"), ",")]
        if memory:
            row.append(_opt(r.get("peak_added_mb"), ",.0f"))
        rows.append(row + [str(r.get("n_test", "–"))])
    header = ["method", "AUROC [95 % CI]", "AP [95 % CI]", "sens. @ 95 % spec.", "pixel AUROC", "AUPRO",
              "training", "ms / image", "parameters"] + (["peak MB added"] if memory else []) + ["images"]
    return md_table(header, rows)


def phantom_seeds_table(entries: dict[str, dict]) -> str:
    """One method on several phantoms: {row label: its benchmark entry (report["methods"][name])} -> image
    AUROC [95 % CI], each type's AUROC and the map's pixel AUROC, one row per phantom."""
    kinds = sorted({k for e in entries.values() for k in e["per_type"]})
    rows = [[label, _ci(e["image"]["auroc"])] + [f"{e['per_type'][k]['auroc']['value']:.3f}" for k in kinds]
            + [_opt(e.get("pixel_auroc"), ".3f")] for label, e in entries.items()]
    return md_table(["phantom", "image AUROC [95 % CI]", *kinds, "pixel AUROC"], rows)


def per_type_table(report: dict, methods=None) -> str:
    """AUROC [95 % CI] of each anomaly type (that type vs all normals), one row per method."""
    methods = list(methods or report["methods"])
    kinds = sorted({k for m in methods for k in report["methods"][m]["per_type"]})
    rows = [[m] + [_ci(report["methods"][m]["per_type"][k]["auroc"], 2) for k in kinds] for m in methods]
    return md_table(["method", *kinds], rows)


def ranking(report: dict, methods=None) -> list[str]:
    """Methods by overall AUROC, best first."""
    methods = list(methods or report["methods"])
    return sorted(methods, key=lambda m: -report["methods"][m]["image"]["auroc"]["value"])


def versus(report: dict, ours: str, other: str) -> dict:
    """Words comparing two methods' overall AUROC: "above"/"below" and whether the 95 % CIs overlap."""
    a, b = report["methods"][ours]["image"]["auroc"], report["methods"][other]["image"]["auroc"]
    overlap = a["ci95"][0] <= b["ci95"][1] and b["ci95"][0] <= a["ci95"][1]
    return {"word": "above" if a["value"] > b["value"] else "below", "gap": a["value"] - b["value"],
            "overlap": "overlap" if overlap else "do not overlap"}


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone), so a family of tests keeps its error rate."""
    names = sorted(pvalues, key=pvalues.get)
    adjusted, running = {}, 0.0
    for i, name in enumerate(names):
        running = max(running, min(1.0, (len(names) - i) * pvalues[name]))
        adjusted[name] = running
    return adjusted


def paired_verdicts(comparisons: dict, alpha: float = 0.05, exclude=()) -> dict:
    """Which methods ours is significantly better than, not distinguishable from, worse than: DeLong
    p-values Holm-adjusted over the compared methods (those in `exclude`, e.g. semi-supervised ones, are
    left out of the family and listed under "excluded")."""
    family = {m: c["p_delong"] for m, c in comparisons.items() if m not in exclude}
    adjusted = holm(family)
    out = {"ours_better": [], "tie": [], "ours_worse": [], "excluded": sorted(set(comparisons) & set(exclude)),
           "p_holm": adjusted}
    for name, p in adjusted.items():
        key = "tie" if p >= alpha else ("ours_better" if comparisons[name]["diff"] > 0 else "ours_worse")
        out[key].append(name)
    return out


def paired_table(comparisons: dict, ours: str = "hqanogan", alpha: float = 0.05, exclude=()) -> str:
    """One row per method: AUROC difference (ours - method) [paired-bootstrap 95 % CI], DeLong's p, the same
    Holm-adjusted over the methods compared, the bootstrap p, and the verdict at `alpha` (Holm-adjusted
    DeLong); "(borderline)" where the bootstrap interval and the adjusted test disagree."""
    verdicts = paired_verdicts(comparisons, alpha, exclude)
    rows = []
    for name, c in sorted(comparisons.items(), key=lambda kv: -kv[1]["diff"]):
        p_holm = verdicts["p_holm"].get(name)
        if p_holm is None:
            verdict = "not in the family (uses labels)"
        else:
            verdict = "no significant difference" if p_holm >= alpha else (
                f"{ours} better" if c["diff"] > 0 else f"{name} better")
            excludes_zero = c["ci95"][0] > 0 or c["ci95"][1] < 0
            if excludes_zero == (p_holm >= alpha):
                verdict += " (borderline)"
        rows.append([name, str(c["n"]), f"{c['diff']:+.3f} [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]",
                     _p(c["p_delong"]), "–" if p_holm is None else _p(p_holm), _p(c["p_bootstrap"]), verdict])
    return md_table(["method", "images", f"AUROC {ours} − method [95 % CI]", "p (DeLong)", "p (Holm)",
                     "p (bootstrap)", f"at α = {alpha}"], rows)


def claim_sentence(comparisons: dict, verdicts: dict, ours: str = "hqanogan") -> str:
    """Whether "ours detects as well as or better than the others" survives the paired tests, in words."""
    if verdicts["ours_worse"]:
        names = ", ".join(sorted(verdicts["ours_worse"]))
        return (f"does not hold here: {names} detect{'s' if len(verdicts['ours_worse']) == 1 else ''}"
                " significantly better")
    compared = [m for m in comparisons if m not in verdicts["excluded"]]
    if compared and len(verdicts["ours_better"]) == len(compared):
        return f"holds here: {ours} is significantly better than every unsupervised method compared"
    worst = min(compared, key=lambda m: comparisons[m]["diff"])
    c = comparisons[worst]
    if c["diff"] >= 0:
        return (f"is not contradicted: no unsupervised method scores above {ours}, though some differences are "
                f"too small to call")
    return (f"is neither confirmed nor contradicted: no difference is significant, and the largest deficit is "
            f"{-c['diff']:.3f} against {worst} (paired 95 % CI of {ours} − {worst}: "
            f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}])")


def headline(report: dict, ours: str, methods) -> str:
    """Where `ours` ranks among `methods` by image AUROC, in one sentence that is true whichever way it went."""
    order = ranking(report, methods)
    auc = {m: report["methods"][m]["image"]["auroc"]["value"] for m in order}
    if order[0] == ours:
        other = order[1]
        vs = versus(report, ours, other)
        return (f"{ours} ranks first ({auc[ours]:.3f}); the runner-up, {other} ({auc[other]:.3f}), is "
                f"{abs(vs['gap']):.3f} lower, and the two 95 % intervals {vs['overlap']}")
    leader = order[0]
    vs = versus(report, ours, leader)
    if abs(vs["gap"]) < 5e-4:
        return f"{ours} ties with the best method, {leader} ({auc[leader]:.3f})"
    return (f"the best method is {leader} ({auc[leader]:.3f}); {ours} ({auc[ours]:.3f}) ranks "
            f"{order.index(ours) + 1} of {len(order)}, {abs(vs['gap']):.3f} below it, and the two 95 % intervals "
            f"{vs['overlap']}")


def type_leaders(report: dict, methods, tol: float = 5e-4) -> dict[str, list[str]]:
    """Per anomaly type, every method within `tol` of the best AUROC (ties are shared, not broken by order)."""
    kinds = sorted({k for m in methods for k in report["methods"][m]["per_type"]})
    out = {}
    for k in kinds:
        values = {m: report["methods"][m]["per_type"][k]["auroc"]["value"] for m in methods}
        best = max(values.values())
        out[k] = [m for m in methods if values[m] >= best - tol]
    return out


def family_medians(report: dict, families: dict, methods) -> dict[str, float]:
    """Median image AUROC of each family over its methods among `methods`."""
    import numpy as np

    out = {}
    for family, names in families.items():
        values = [report["methods"][m]["image"]["auroc"]["value"] for m in names if m in methods]
        if values:
            out[family] = float(np.median(values))
    return out


def family_sentence(ours: dict, theirs: dict, families: list[str]) -> str:
    """One sentence comparing families' median AUROC on the phantom (`ours`, 0-1) and in a published column
    (`theirs`, percent), and whether the order of the families agrees."""
    common = [f for f in families if f in ours and f in theirs]
    here = ", ".join(f"{f} {ours[f]:.3f}" for f in common)
    there = ", ".join(f"{f} {theirs[f]:.1f} %" for f in common)
    same = sorted(common, key=ours.get) == sorted(common, key=theirs.get)
    return (f"median AUROC per family on the phantom: {here}; in BMAD's RSNA column: {there}. "
            f"The order of the families {'is the same' if same else 'differs'}.")


def sizes_table(sizes: dict[str, int]) -> str:
    """Shipped folders and their size in MB, with the total."""
    rows = [[k, f"{v / 2**20:.1f}"] for k, v in sizes.items()]
    return md_table(["shipped baseline", "MB"], rows + [["all", f"{sum(sizes.values()) / 2**20:.1f}"]])


def published_table(rows: list[dict], sources: dict) -> str:
    """Published AUROC (%) quoted from the literature: one row per method, one column per (source, dataset)."""
    columns = list(dict.fromkeys((r["source"], r["dataset"]) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    value = {(r["source"], r["dataset"], r["method"]): r["auroc"] for r in rows}
    body = [[m] + [_opt(value.get((s, d, m)), ".1f") for s, d in columns] for m in methods]
    header = ["method"] + [f"{d} ({sources[s]['short']})" for s, d in columns]
    return md_table(header, body)


def preset_table(rows: list[dict]) -> str:
    """The run presets (workflow.preset_summary): sizes, lengths and expected training time."""
    def hours(v):
        if v is None:
            return "–"
        return f"{v[0]:.0f}–{v[1]:.0f} h" if isinstance(v, tuple) and round(v[0]) != round(v[1]) else \
            f"{(v[0] if isinstance(v, tuple) else v):.1f} h"

    body = [[f"`{r['preset']}`", str(r["resolution"]), f"{r['gan_kimg']:g}", str(r["batch"]), r["g_channels"],
             f"{r['encoder_steps']:,}", r["baselines"], hours(r["v100_hours"]), hours(r["cpu_hours"])] for r in rows]
    return md_table(["preset", "px", "GAN kimg", "batch", "channel base / max", "encoder steps", "baselines",
                     "GAN on one V100 (official s/kimg)", "GAN + encoder, 2 CPU cores (measured)"], body)


# ----------------------------------------------------------------------------- localisation and naturalness


def _ci_pair(value, ci, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def localisation_order(report: dict, methods) -> list[str]:
    """Methods with maps, by AUPRO, best first."""
    return sorted((m for m in methods if report["methods"][m].get("aupro") is not None),
                  key=lambda m: -report["methods"][m]["aupro"])


def localisation_table(report: dict, methods, bold: str | None = None) -> str:
    """Pixel AUROC and AUPRO (FPR <= 0.3) with image-bootstrap 95 % CIs, and the mean Dice over all abnormal
    test images at the one threshold best on validation, one row per method that gives a map."""
    rows = []
    for name in localisation_order(report, methods):
        r = report["methods"][name]
        dice = (r.get("dice") or {}).get("all")
        rows.append([f"**{name}**" if name == bold else name, _ci_pair(r["pixel_auroc"], r["pixel_auroc_ci95"]),
                     _ci_pair(r["aupro"], r["aupro_ci95"]),
                     "–" if dice is None else _ci_pair(dice["value"], dice["ci95"], 2), str(r["n_test"])])
    return md_table(["method", "pixel AUROC [95 % CI]", "AUPRO [95 % CI]", "Dice, one threshold [95 % CI]",
                     "images"], rows)


def dice_table(report: dict, methods) -> str:
    """Best achievable Dice per anomaly type (threshold chosen on that type's validation images, mean per-image
    Dice on its test images [95 % CI])."""
    methods = localisation_order(report, methods)
    kinds = sorted({k for m in methods for k in report["methods"][m].get("dice", {}) if k != "all"})
    rows = [[m] + [_ci_pair(report["methods"][m]["dice"][k]["value"], report["methods"][m]["dice"][k]["ci95"], 2)
                   if k in report["methods"][m].get("dice", {}) else "–" for k in kinds] for m in methods]
    return md_table(["method", *kinds], rows)


def naturalness_table(report: dict, methods) -> str:
    """Per restoring method: SWD x1e3 of its restorations of abnormal test images to real normals (with the
    two ends of the scale: the abnormal inputs unrestored, and other real normals), and the mean change
    |x - x_hat| inside and outside the finding with their ratio."""
    ref = report["naturalness_reference"]
    names = sorted((m for m in methods if "naturalness" in report["methods"][m]),
                   key=lambda m: report["methods"][m]["naturalness"]["swd"])
    rows = [["*real normals (floor)*", f"{ref['swd_normals']:.2f}", "–", "–", "–"],
            ["*abnormal inputs, unrestored*", f"{ref['swd_inputs']:.2f}", "0", "0", "–"]]
    for name in names:
        n = report["methods"][name]["naturalness"]
        rows.append([name, f"{n['swd']:.2f}", f"{n['change_inside']:.3f}", f"{n['change_outside']:.3f}",
                     f"{n['contrast']:.2f}"])
    return md_table(["restorations of", "SWD x1e3 to real normals", "change inside finding",
                     "change outside", "inside / outside"], rows)


def repair_label(config: dict | None) -> str:
    if config is None:
        return "no repair (plain map)"
    target = "" if config.get("target_quantile") is None else f", to the {config['target_quantile']:.2f} quantile"
    return f"{config['mode']} slots above the {config['quantile']:.2f} quantile{target}"


def repair_sweep_table(rows: list[dict]) -> str:
    """The latent-repair settings on validation (`ablation.repair_sweep`), best AUPRO first."""
    out = []
    for r in sorted(rows, key=lambda r: -r["aupro"]):
        out.append([repair_label(r["config"]), f"{r['aupro']:.3f}", f"{r['pixel_auroc']:.3f}",
                    f"{100 * r['flagged_normal']:.0f} %", f"{100 * r['flagged_abnormal']:.0f} %",
                    f"{100 * r['latent_kept']:.0f} %"])
    return md_table(["validation map", "AUPRO", "pixel AUROC", "slots flagged, normals", "slots flagged, abnormal",
                     "latent term kept (abnormal)"], out)


def term_table(registry: dict) -> str:
    """The score terms of `terms.TERMS`: name, whether it is a map term, what it needs, what it measures."""
    rows = [[f"`{name}`", "map" if t.is_map else "number", ", ".join(t.needs) or "G, E", t.doc]
            for name, t in registry.items()]
    return md_table(["term", "kind", "needs", "what it measures"], rows)


def restoration_name(label: str) -> str:
    """A score study's restoration label in words: "0" -> G(E(x)), "20" -> "MSE refinement, 20 steps", ..."""
    from .terms import restoration_settings

    r = restoration_settings(label)
    return "G(E(x))" if r["refine_steps"] == 0 else f"{r['refine_loss'].upper()} refinement, {r['refine_steps']} steps"


def restoration_table(restorations: dict) -> str:
    """One row per restoration of a score study's report: PSNR on validation normals, the findings'
    inside/outside residual contrast, eligibility and the study's ms per image."""
    rows = [[restoration_name(r), f"{q['psnr_normals']:.2f}", _opt(q.get("contrast"), ".2f"),
             "yes" if q.get("keeps_findings", True) else "no", f"{1000 * q['seconds_per_image']:.0f}"]
            for r, q in restorations.items()]
    return md_table(["restoration", "PSNR on validation normals (dB)", "residual inside / outside the finding",
                     "eligible (contrast ≥ G(E(x))'s)", "ms / image (study, all terms)"], rows)


def score_options_table(options: list[dict], restorations: dict, n: int = 8) -> str:
    """The best `n` combinations of a score study, by validation AUROC (an option whose restoration draws the
    findings, `restorations[label]["keeps_findings"]` false, is marked: it may not be chosen). The restoration
    is its label: "0" is G(E(x)), "20" 20 steps of MSE refinement, "l1-40" 40 steps of L1 refinement."""
    best = sorted(options, key=lambda o: -o["valid_auroc"])[:n]
    keeps = {k: q["keeps_findings"] for k, q in restorations.items()}
    rows = [[o["restoration"] + ("" if keeps[o["restoration"]] else " (draws the findings: not eligible)"),
             o["aggregation"], o["combine"], ", ".join(o["columns"]), f"{o['valid_auroc']:.3f}"] for o in best]
    return md_table(["restoration", "aggregation", "combine", "terms (greedy order)", "validation AUROC"], rows)


def semi_supervised_table(curve: dict) -> str:
    """k, mean test AUROC over draws [range over draws], median draw [95 % CI], per type (mean over draws)."""
    points = sorted(curve.values(), key=lambda p: p["k"])
    kinds = sorted(points[0]["per_type_mean"])
    rows = [[str(p["k"]), str(p["draws"]),
             f"{p['auroc_mean']:.3f} [{p['draw_range'][0]:.3f}, {p['draw_range'][1]:.3f}]",
             _ci({"value": p["median_draw"]["auroc"], "ci95": p["median_draw"]["ci95"]})]
            + [f"{p['per_type_mean'][k]:.2f}" for k in kinds] for p in points]
    return md_table(["k", "draws", "test AUROC, mean [range over draws]", "median draw [95 % CI]", *kinds], rows)

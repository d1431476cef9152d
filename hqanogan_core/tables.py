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


def method_table(report: dict, methods=None, bold: str | None = None, memory: bool = False) -> str:
    """One row per method: image AUROC / AP / sensitivity at 95 % specificity [95 % CI], pixel AUROC, AUPRO,
    training time (the networks' training steps for learned methods, else the harness's fit time), ms per
    image, parameters (for methods that only fit statistics: the numbers they store), images scored; with
    `memory`, the process's peak resident memory while the method was fitted and scored."""
    rows = []
    for name in methods or report["methods"]:
        r = report["methods"][name]
        info = r.get("info") or {}
        label = f"**{name}**" if name == bold else name
        row = [label, _ci(r["image"]["auroc"]), _ci(r["image"]["ap"]), _ci(r["image"]["sens_at_95spec"], 2),
               _opt(r.get("pixel_auroc"), ".3f"), _opt(r.get("aupro"), ".3f"), _duration(info.get("train_seconds") or r.get("train_seconds")),
               _opt(r.get("ms_per_image"), ".1f"), _opt(info.get("parameters"), ",")]
        if memory:
            row.append(_opt(r.get("peak_rss_mb"), ",.0f"))
        rows.append(row + [str(r.get("n_test", "–"))])
    header = ["method", "AUROC [95 % CI]", "AP [95 % CI]", "sens. @ 95 % spec.", "pixel AUROC", "AUPRO",
              "training", "ms / image", "parameters"] + (["peak MB"] if memory else []) + ["images"]
    return md_table(header, rows)


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


def paired_table(comparisons: dict, ours: str = "hqanogan", alpha: float = 0.05) -> str:
    """One row per method: AUROC difference (ours - method) [paired-bootstrap 95 % CI], both p-values, and
    the verdict at `alpha` (DeLong)."""
    rows = []
    for name, c in sorted(comparisons.items(), key=lambda kv: -kv[1]["diff"]):
        verdict = "no significant difference" if c["p_delong"] >= alpha else (
            f"{ours} better" if c["diff"] > 0 else f"{name} better")
        rows.append([name, str(c["n"]), f"{c['diff']:+.3f} [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]",
                     _p(c["p_delong"]), _p(c["p_bootstrap"]), verdict])
    return md_table(["method", "images", f"AUROC {ours} − method [95 % CI]", "p (DeLong)", "p (bootstrap)",
                     f"at α = {alpha}"], rows)


def paired_verdicts(comparisons: dict, alpha: float = 0.05) -> dict[str, list[str]]:
    """Methods that are significantly worse than ours, not different, and significantly better (DeLong)."""
    out = {"worse": [], "tie": [], "better": []}
    for name, c in comparisons.items():
        key = "tie" if c["p_delong"] >= alpha else ("worse" if c["diff"] > 0 else "better")
        out[key].append(name)
    return out


def published_table(rows: list[dict], sources: dict) -> str:
    """Published AUROC (%) quoted from the literature: one row per method, one column per (source, dataset)."""
    columns = list(dict.fromkeys((r["source"], r["dataset"]) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    value = {(r["source"], r["dataset"], r["method"]): r["auroc"] for r in rows}
    body = [[m] + [_opt(value.get((s, d, m)), ".1f") for s, d in columns] for m in methods]
    header = ["method"] + [f"{d} ({sources[s]['short']})" for s, d in columns]
    return md_table(header, body)

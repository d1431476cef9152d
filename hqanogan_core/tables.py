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


def method_table(report: dict, methods=None, bold: str | None = None) -> str:
    """One row per method: image AUROC / AP / sensitivity at 95 % specificity [95 % CI], pixel AUROC, AUPRO,
    training time (the networks' training steps for learned methods, else the harness's fit time), ms per
    image, parameters, images scored."""
    rows = []
    for name in methods or report["methods"]:
        r = report["methods"][name]
        info = r.get("info") or {}
        label = f"**{name}**" if name == bold else name
        rows.append([label, _ci(r["image"]["auroc"]), _ci(r["image"]["ap"]), _ci(r["image"]["sens_at_95spec"], 2),
                     _opt(r.get("pixel_auroc"), ".3f"), _opt(r.get("aupro"), ".3f"), _duration(info.get("train_seconds") or r.get("train_seconds")),
                     _opt(r.get("ms_per_image"), ".1f"), _opt(info.get("parameters"), ","), str(r.get("n_test", "–"))])
    header = ["method", "AUROC [95 % CI]", "AP [95 % CI]", "sens. @ 95 % spec.", "pixel AUROC", "AUPRO",
              "training", "ms / image", "parameters", "images"]
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

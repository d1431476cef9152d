"""A per-image report for people who will not open a notebook (`python -m hqanogan_core explain`).

    explain(IMAGE.png, out="report.html", run=None, data=None)

fits (or loads the cached fit of) HQ-AnoGAN on DATA/train/good, scores the image, ranks its score among
the held-out normals, states the verdict at the threshold with the best Youden's J (sensitivity +
specificity - 1) on DATA/valid, and writes one self-contained HTML page (images embedded as base64):
the input, the restored normal, the map with the finding's likely place, the per-slot latent bars and
every score term. DATA defaults to the book's phantom (`data.default.phantom_dataset`), RUN to the
shipped 64 px encoder.
"""
from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import metrics, plots
from .data.folder import read_grayscale
from .data.splits import load_split
from .explore import latent_view, score_percentile
from .methods.hqanogan import HQAnoGAN
from .widgets import figure_png

GRAYSCALE_MODES = ("L", "1", "P", "I", "I;16", "I;16L", "I;16B", "I;16N", "F", "LA", "PA", "La")


def read_query_image(path, size: int) -> np.ndarray:
    """The image to explain as [H, W] in [0, 1]; a ValueError naming the file if it is not a grayscale
    image of `size` x `size` pixels."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an image")
    try:
        with Image.open(path) as im:
            mode, (width, height) = im.mode, im.size
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path} is not an image this tool can read ({type(err).__name__})") from err
    if mode not in GRAYSCALE_MODES:
        raise ValueError(f"{path} is a colour image (mode {mode}); explain needs a grayscale radiograph")
    if (width, height) != (size, size):
        raise ValueError(f"{path} is {width}x{height} px; this model scores {size}x{size} px images "
                         f"(convert your data with `python -m hqanogan_core convert ... --size {size}`)")
    return read_grayscale(path)


def youden_threshold(scores: np.ndarray, labels: np.ndarray) -> dict:
    """The score threshold (call >= t abnormal) with the largest sensitivity + specificity - 1."""
    fpr, tpr, thresholds = metrics.roc_curve(scores, labels)
    best = int(np.argmax(tpr - fpr))
    return {"threshold": float(thresholds[best]), "sensitivity": float(tpr[best]), "specificity": float(1 - fpr[best])}


def explain(image_path, out, run=None, data=None) -> dict:
    """Write the report for one image to `out` (HTML); returns the numbers it shows."""
    from .data.default import phantom_dataset

    method = HQAnoGAN(run=run)
    data = Path(data) if data is not None else phantom_dataset()
    train = load_split(data, "train")
    image = read_query_image(image_path, train.images.shape[1])
    method.fit(train.images)
    valid = load_split(data, "valid")
    valid_scores = method.score(valid.images)["pred_score"]
    verdict_rule = youden_threshold(valid_scores, valid.labels)
    out_terms = method.score(image[None])
    score = float(out_terms["pred_score"][0])
    percentile = score_percentile(score, method.scorer.held_out_scores())
    abnormal = score >= verdict_rule["threshold"]
    view = latent_view(method, image[None])
    panel = figure_png(plots.latent_panel(view, 0, repaired=False, title=Path(image_path).name))
    repaired = (figure_png(plots.latent_panel(view, 0, repaired=True, title="after latent repair of the unusual slots"))
                if view["flagged"][0].any() else None)
    terms = {k: float(v[0]) for k, v in out_terms.items()
             if k != "pred_score" and not k.startswith(("latent_l", "z_latent_l"))}
    facts = {"image": str(image_path), "score": score, "percentile": percentile, "abnormal": bool(abnormal),
             **verdict_rule, "n_valid": int(len(valid.labels)), "terms": terms,
             "flagged_slots": np.flatnonzero(view["flagged"][0]).tolist(),
             "repair_quantile": float(view["repair"]["quantile"]), "run": method.pipe.info.get("encoder"),
             "data": str(data), "score_rule": method.config.describe(), "map_rule": method.config.describe_map()}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(_html(facts, panel, repaired))
    return facts


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _repair_section(f: dict, repaired: bytes | None) -> str:
    if repaired is None:
        return (f"<p>No W+ slot is unusual for normals (above the {100 * f['repair_quantile']:g}th percentile of "
                "held-out normals' distances), so latent repair would leave the code unchanged.</p>")
    return (f"<p>Slots unusual for normals: {f['flagged_slots']}. With only those pulled back to normal "
            f"(latent repair):</p>\n{_img(repaired, 'after latent repair')}")


def _html(f: dict, panel: bytes, repaired: bytes | None) -> str:
    verdict = "ABNORMAL" if f["abnormal"] else "normal"
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>" for k, v in f["terms"].items())
    made = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HQ-AnoGAN report: {html.escape(Path(f['image']).name)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;color:#111}} .verdict{{font-size:1.6em}}
.abnormal{{color:#c0392b}} .normal{{color:#1e8449}} table{{border-collapse:collapse}} td{{padding:2px 10px;
border-bottom:1px solid #ddd}} img{{max-width:100%}} .small{{color:#555;font-size:.9em}}</style></head><body>
<h1>HQ-AnoGAN report</h1>
<p class="small">{html.escape(f['image'])} &middot; model {html.escape(str(f['run']))} &middot; fitted on
{html.escape(f['data'])}/train/good &middot; {made}</p>
<p class="verdict {'abnormal' if f['abnormal'] else 'normal'}">{verdict}</p>
<p>Anomaly score <b>{f['score']:.3f}</b>: higher than {f['percentile']:.1f} % of the held-out normal images.
The verdict uses the threshold {f['threshold']:.3f}, chosen on the validation split ({f['n_valid']} labelled
images) as the one with the largest sensitivity + specificity &minus; 1: there it called
{100 * f['sensitivity']:.0f} % of abnormal images abnormal and {100 * f['specificity']:.0f} % of normal images
normal. It is a research tool on this model's data, not a diagnosis.</p>
<h2>Where</h2>
<p>Input, restored normal, the anomaly map (bright = where the model thinks the image departs from normal:
{html.escape(f['map_rule'])}), and each W+ slot's distance to normal codes (grey band: 5&ndash;95 % of
held-out normals).</p>
{_img(panel, "input, restoration, map, slot distances")}
{_repair_section(f, repaired)}
<h2>Score terms</h2>
<p class="small">Raw terms and their z-scores against held-out normals; the score combines the z-scores of
the configured terms: {html.escape(f['score_rule'])}.</p>
<table>{rows}</table>
</body></html>
"""

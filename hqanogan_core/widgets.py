"""Widgets that keep working in the built book, with no kernel behind them.

The trick: precompute every view in Python, put them in an `ipywidgets.Stack`, and
`jslink` a slider to the stack's `selected_index`. The link lives in the browser, so
the saved widget state in the HTML page is enough to drive it.
"""
from __future__ import annotations

import io

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from hqanogan_core import plots
from hqanogan_core.plots import MASK_COLOR


def image_png(image: np.ndarray, mask: np.ndarray | None = None, title: str | None = None,
              inches: float = 2.6) -> bytes:
    """One grayscale image [H, W] in [0, 1] (optional red mask outline and title) as PNG bytes."""
    assert image.ndim == 2, f"expected [H, W], got {image.shape}"
    fig, ax = plt.subplots(figsize=(inches, inches + (0.3 if title else 0)), dpi=100)
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    if mask is not None and np.any(mask):
        ax.contour(mask.astype(float), levels=[0.5], colors=MASK_COLOR, linewidths=1)
    if title:
        ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout(pad=0.2)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def slider_over_views(views: list[bytes], labels: list[str], description: str = "") -> widgets.VBox:
    """A selection slider that flips through precomputed PNG views, linked in JavaScript."""
    if len(views) != len(labels) or not views:
        raise ValueError(f"need one label per view, got {len(views)} views and {len(labels)} labels")
    images = [widgets.Image(value=png, format="png") for png in views]
    stack = widgets.Stack(images, selected_index=0)
    slider = widgets.SelectionSlider(options=labels, value=labels[0], description=description,
                                     style={"description_width": "initial"},
                                     layout=widgets.Layout(width="230px"))
    widgets.jslink((slider, "index"), (stack, "selected_index"))
    return widgets.VBox([slider, stack])



# ----------------------------------------------------------------------------- the latent-score explorer

EXPLORER_CLASS, CONTROL_CLASS, VIEW_CLASS = "hq-explorer", "hq-control", "hq-view"   # .ci/check_book.py finds these


def figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def repair_choices(num_ws: int) -> dict:
    """The slot choices a reader can flip through without a kernel: {label: None (no repair) | "rule" | mask [L]}."""
    from hqanogan_core.explore import slot_groups

    return {"no repair": None, "unusual slots": "rule",
            **{f"{name} slots": mask for name, mask in slot_groups(num_ws).items()}}


def explorer_states(method, images: np.ndarray, masks: np.ndarray | None, titles: list[str],
                    thresholds: list[float]) -> dict:
    """Everything the kernel-free explorer shows, precomputed: {"titles", "choices", "thresholds",
    "panels": [image][choice] PNG, "binary": [image][choice][threshold] PNG, "dice": same layout, floats}."""
    from hqanogan_core.explore import latent_view
    from hqanogan_core.localisation import dice

    from hqanogan_core.data.splits import to_model_input

    choices = repair_choices(method.pipe.G.num_ws)
    restoration = method.scorer.restore(to_model_input(np.asarray(images, np.float32), method.pipe.resolution))
    panels, binary, dices = [[] for _ in images], [[] for _ in images], [[] for _ in images]
    for label, slots in choices.items():
        view = latent_view(method, images, repair_slots=None if slots is None or isinstance(slots, str) else slots,
                           restoration=restoration)
        amaps = view["map" if slots is None else "map_repaired"]
        for i in range(len(images)):
            mask = None if masks is None else masks[i]
            panels[i].append(figure_png(plots.latent_panel(view, i, repaired=slots is not None, mask=mask,
                                                           title=f"{titles[i]} | {label}")))
            row_png, row_dice = [], []
            for t in thresholds:
                d = None if mask is None or not np.any(mask) else float(dice(amaps[i][None], mask[None], t)[0])
                row_png.append(figure_png(plots.binary_panel(amaps[i], mask, t, d)))
                row_dice.append(d)
            binary[i].append(row_png)
            dices[i].append(row_dice)
    return {"titles": list(titles), "choices": list(choices), "thresholds": [float(t) for t in thresholds],
            "panels": panels, "binary": binary, "dice": dices}


def static_latent_explorer(states: dict) -> widgets.VBox:
    """Browse precomputed explorer states with no kernel: an image menu, repair choice buttons and a
    threshold slider, each `jslink`ed to stacks of images (the saved widget state drives it in the page)."""
    titles, choices, thresholds = states["titles"], states["choices"], states["thresholds"]
    pick = widgets.Dropdown(options=titles, value=titles[0], description="image")
    repair = widgets.ToggleButtons(options=choices, value=choices[0], description="repair",
                                   style={"button_width": "110px"})
    level = widgets.SelectionSlider(options=[f"{t:.3f}" for t in thresholds], description="map threshold",
                                    style={"description_width": "initial"}, layout=widgets.Layout(width="330px"))
    per_image = []
    for i in range(len(titles)):
        per_choice = []
        for c in range(len(choices)):
            binaries = widgets.Stack([widgets.Image(value=png, format="png") for png in states["binary"][i][c]],
                                     selected_index=0)
            widgets.jslink((level, "index"), (binaries, "selected_index"))
            # one under the other: side by side, the thresholded map falls outside a narrow page
            per_choice.append(widgets.VBox([widgets.Image(value=states["panels"][i][c], format="png"), binaries]))
        stack = widgets.Stack(per_choice, selected_index=0)
        widgets.jslink((repair, "index"), (stack, "selected_index"))
        per_image.append(stack)
    view = widgets.Stack(per_image, selected_index=0)
    widgets.jslink((pick, "index"), (view, "selected_index"))
    for control in (pick, repair, level):
        control.add_class(CONTROL_CLASS)
    view.add_class(VIEW_CLASS)
    box = widgets.VBox([widgets.HBox([pick, level]), repair, view])
    box.add_class(EXPLORER_CLASS)
    return box


def latent_explorer(method, split, picks=None, thresholds=(0.05, 0.1, 0.15, 0.2)) -> widgets.VBox:
    """The live explorer (needs a kernel): choose a test image (or upload a PNG of your own), tick the W+
    slots to repair and see the restoration, map and per-slot bars update; a threshold slider binarises the
    map and shows Dice against the mask. method: a fitted HQ-AnoGAN; split: data.splits.SplitArrays."""
    from hqanogan_core.data.folder import read_grayscale
    from hqanogan_core.data.splits import resize_batch
    from hqanogan_core.explore import latent_view
    from hqanogan_core.localisation import dice

    picks = list(range(len(split))) if picks is None else list(picks)
    labels = [f"{split.types[i]} #{i}" for i in picks]
    num_ws = method.pipe.G.num_ws
    pick = widgets.Dropdown(options=list(zip(labels, picks)), description="image")
    upload = widgets.FileUpload(accept=".png", multiple=False, description="your PNG")
    boxes = [widgets.Checkbox(value=False, description=f"slot {k}", indent=False, layout=widgets.Layout(width="80px"))
             for k in range(num_ws)]
    rule = widgets.Button(description="unusual slots")
    level = widgets.FloatSlider(value=float(thresholds[1]), min=0.0, max=float(max(thresholds)) * 2, step=0.005,
                                description="map threshold", style={"description_width": "initial"})
    panel, binary, status = widgets.Image(format="png"), widgets.Image(format="png"), widgets.HTML()
    current = {"image": None, "mask": None}

    def draw(*_):
        slots = np.array([b.value for b in boxes])
        view = latent_view(method, current["image"][None], repair_slots=slots)
        repaired = bool(slots.any())
        amap = view["map_repaired" if repaired else "map"][0]
        mask = current["mask"]
        panel.value = figure_png(plots.latent_panel(view, 0, repaired=repaired, mask=mask))
        d = None if mask is None or not np.any(mask) else float(dice(amap[None], mask[None], level.value)[0])
        binary.value = figure_png(plots.binary_panel(amap, mask, level.value, d))
        status.value = f"repairing slots {np.flatnonzero(slots).tolist() or 'none'}"

    def load_test(*_):
        i = pick.value
        current["image"], current["mask"] = split.images[i], None if split.masks is None else split.masks[i]
        suggest = latent_view(method, current["image"][None])["flagged"][0]
        for b, f in zip(boxes, suggest):
            b.value = False
        draw()
        status.value += f" | unusual for normals: {np.flatnonzero(suggest).tolist() or 'none'}"

    def load_upload(change):
        files = upload.value
        if not files:
            return
        import tempfile
        from pathlib import Path

        item = files[0] if isinstance(files, (list, tuple)) else next(iter(files.values()))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / item.get("name", "upload.png")
            path.write_bytes(bytes(item["content"]))
            image = read_grayscale(path)
        current["image"] = resize_batch(image[None], split.images.shape[1])[0]
        current["mask"] = None
        draw()

    def use_rule(*_):
        suggest = latent_view(method, current["image"][None])["flagged"][0]
        for b, f in zip(boxes, suggest):
            b.unobserve(draw, "value")
            b.value = bool(f)
            b.observe(draw, "value")
        draw()

    pick.observe(load_test, "value")
    upload.observe(load_upload, "value")
    rule.on_click(use_rule)
    level.observe(draw, "value")
    for b in boxes:
        b.observe(draw, "value")
    load_test()
    return widgets.VBox([widgets.HBox([pick, upload]), widgets.HBox([*boxes, rule]), level,
                         widgets.HBox([panel, binary]), status])

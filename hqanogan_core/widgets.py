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

from hqanogan_core.plots import MASK_COLOR


def image_png(image: np.ndarray, mask: np.ndarray | None = None, title: str | None = None, inches: float = 2.6) -> bytes:
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


"""Kernel-free widgets: structure and the JavaScript link."""
import io

import ipywidgets
import numpy as np
import pytest
from PIL import Image

from hqanogan_core.widgets import image_png, slider_over_views


def test_image_png_is_a_png_of_the_image():
    png = image_png(np.linspace(0, 1, 64).reshape(8, 8), mask=np.eye(8, dtype=bool), title="t")
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.size[0] > 100


def test_slider_is_jslinked_to_the_stack():
    views = [image_png(np.full((4, 4), v)) for v in (0.2, 0.8)]
    panel = slider_over_views(views, ["a", "b"], "x")
    slider, stack = panel.children
    assert isinstance(stack, ipywidgets.Stack) and len(stack.children) == 2
    assert [im.value for im in stack.children] == views
    from ipywidgets.widgets.widget import _instances  # every live widget, links included

    links = [w for w in _instances.values() if isinstance(w, ipywidgets.widgets.widget_link.Link)]
    assert any(l.source == (slider, "index") and l.target == (stack, "selected_index") for l in links)


def test_mismatched_labels_are_an_error():
    with pytest.raises(ValueError, match="one label per view"):
        slider_over_views([b"x"], ["a", "b"])

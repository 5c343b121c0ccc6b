"""The explorer kit re-renders on every control change, headlessly."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt

from course_lib.viz.widgets import explorer, widget_check


def test_widget_check_follows_its_slider():
    w = widget_check()
    assert w.result == "3 squared is 9" and w.renders == 1
    w.controls["n"].value = 7
    assert w.result == "7 squared is 49" and w.renders == 2


def test_explorer_passes_every_control_value_and_closes_figures():
    seen = []

    def render(a, b):
        seen.append((a, b))
        plt.plot([a, b])
        return a + b

    w = explorer(render, a=widgets.IntSlider(value=1), b=widgets.Dropdown(options=[10, 20], value=10))
    w.controls["b"].value = 20
    assert seen == [(1, 10), (1, 20)] and w.result == 21
    assert plt.get_fignums() == [], "figures are shown into the output and not left open"

"""The small widget kit every explorer is built from, on ipywidgets 8.

Taught in notebooks/00_start_here (the widget check) and used by every chapter's explorer.

An explorer is a function returning a widget. Its drawing or computing logic lives in a pure
function of the control values, and :func:`explorer` wires controls to it: every change of a
control re-renders into one ``Output``. Tests drive an explorer headlessly by setting a
control's ``.value`` and reading ``explorer.result`` (what the pure function returned last).

Built on the kit: :mod:`course_lib.viz.prediction_browser` (ground truth vs prediction, image
by image, with the per-image score) and :mod:`course_lib.viz.live_curves` (a Keras callback
that redraws the training curves in the notebook at every epoch end).
"""

from __future__ import annotations

import base64
import contextlib
import io
import traceback
from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt


def _figure_output(fig) -> dict:
    """One notebook ``display_data`` output holding a PNG of ``fig`` (what inline display shows)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return {"output_type": "display_data",
            "data": {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                     "text/plain": f"<Figure size {fig.bbox.width:.0f}x{fig.bbox.height:.0f}>"},
            "metadata": {}}


class Explorer(widgets.VBox):
    """Controls above an output area; ``render(**values)`` runs on every change.

    Attributes:
        controls: name -> control widget (sliders, dropdowns, ...).
        output: the ``ipywidgets.Output`` the render function draws into.
        result: what ``render`` returned the last time it ran (for tests and notebooks).
        renders: how many times ``render`` has run.

    Taught in notebooks/00_start_here.
    """

    def __init__(self, render: Callable[..., object], controls: dict[str, widgets.Widget],
                 title: str | None = None):
        self.controls = controls
        self.output = widgets.Output()
        self.result = None
        self.renders = 0
        self._render = render
        header = [widgets.HTML(f"<b>{title}</b>")] if title else []
        super().__init__(header + [widgets.HBox(list(controls.values()),
                                                layout=widgets.Layout(flex_flow="row wrap")),
                                   self.output])
        for control in controls.values():
            control.observe(self._on_change, names="value")
        self.refresh()

    def values(self) -> dict[str, object]:
        return {name: control.value for name, control in self.controls.items()}

    def _on_change(self, _change) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Re-run ``render`` with the current control values into the output area.

        The output is built here, in the kernel, and assigned to ``output.outputs`` in one go
        (printed text, then an image of each figure the render drew; a traceback if it
        failed). We do not use ``with output:`` + ``display``: that routes the kernel's display
        messages through the front end's Output widget, and a headless executor
        (``jupyter nbconvert --execute``, nbclient, papermill) answers each such message on the
        kernel's shell channel while it is waiting for the cell's reply on that same channel,
        a race that now and then leaves it waiting forever (nbclient issue 312). Assigning
        ``outputs`` sends only a widget-state update, which needs no answer.
        """
        before = set(plt.get_fignums())
        printed = io.StringIO()
        outputs: list[dict] = []
        try:
            with contextlib.redirect_stdout(printed):
                self.result = self._render(**self.values())
            # Show the figures this render drew (not figures a notebook cell left open).
            outputs = [_figure_output(plt.figure(n)) for n in plt.get_fignums() if n not in before]
        except Exception:
            # Shown in the output area instead of vanishing into the log console; re-raised
            # so a test (or a notebook cell that set a control) sees it.
            outputs = [{"output_type": "stream", "name": "stderr",
                        "text": traceback.format_exc()}]
            raise
        finally:
            if printed.getvalue():
                outputs.insert(0, {"output_type": "stream", "name": "stdout",
                                   "text": printed.getvalue()})
            self.output.outputs = tuple(outputs)
            # Close them even when the render failed half-way: a slider dragged a hundred
            # times must not leave a hundred figures open.
            for number in set(plt.get_fignums()) - before:
                plt.close(number)
        self.renders += 1


def explorer(render: Callable[..., object], title: str | None = None,
             **controls: widgets.Widget) -> Explorer:
    """Build an :class:`Explorer` from a pure ``render`` function and named controls.

    Taught in notebooks/00_start_here.
    """
    return Explorer(render, controls, title=title)


def widget_check() -> Explorer:
    """A one-slider explorer: if moving the slider changes the text, widgets work here.

    Taught in notebooks/00_start_here.
    """

    def render(n: int) -> str:
        text = f"{n} squared is {n * n}"
        print(text)
        return text

    return explorer(render, title="Widget check: move the slider",
                    n=widgets.IntSlider(value=3, min=0, max=10, description="n"))

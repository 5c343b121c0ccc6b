"""Live training curves: a Keras callback that redraws loss and metrics in the notebook.

Taught in notebooks/10_unet (training and browsing its predictions).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from course_lib.viz import plots


def _make_live_curves():
    """Define :class:`LiveCurves` on first use, so importing this module never imports Keras
    (and TensorFlow with it: seconds a widget-only notebook should not wait)."""
    import keras

    class LiveCurves(keras.callbacks.Callback):
        """Redraws the training curves into a notebook output at every epoch end.

        Pass it to ``fit`` and display ``.widget`` (before or after ``fit``)::

            live = LiveCurves()
            display(live.widget)
            model.fit(x, y, epochs=10, callbacks=[live])

        Attributes:
            history: metric name -> list of per-epoch values, across every ``fit`` this
                callback was given to (a second ``fit`` continues the curves).
            output: the ``ipywidgets.Output`` the curves are drawn into.
            widget: what to display (a title above the output).
            redraws: how many times the curves were drawn.

        Args:
            keys: metrics to plot (default: every metric in the logs).
            every: redraw every ``every`` epochs (the last epoch is always drawn).
            title: shown above the plot.
            ylabel: the y axis label (the x axis is the epoch).

        Taught in notebooks/10_unet (training and browsing its predictions).
        """

        def __init__(self, keys: Sequence[str] | None = None, every: int = 1,
                     title: str = "Training curves", ylabel: str = "loss or metric value"):
            super().__init__()
            if every < 1:
                raise ValueError(f"LiveCurves: every={every}; pass a positive number of epochs")
            self.keys = list(keys) if keys is not None else None
            self.every = every
            self.ylabel = ylabel
            self.history: dict[str, list[float]] = {}
            self.redraws = 0
            self.output = widgets.Output()
            self.widget = widgets.VBox([widgets.HTML(f"<b>{title}</b>"), self.output])
            self._epochs = None

        def on_train_begin(self, logs=None):
            self._epochs = (self.params or {}).get("epochs")

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            last = self._epochs is not None and epoch + 1 >= self._epochs
            if (epoch + 1) % self.every == 0 or last:
                self.redraw()

        def redraw(self) -> None:
            """Draw ``history`` into the output, replacing the previous drawing."""
            keys = [k for k in (self.keys or self.history) if k in self.history]
            fig, ax = plt.subplots(figsize=(6, 4))
            if keys:
                plots.training_curves({k: self.history[k] for k in keys}, ax=ax, keys=keys)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # epochs are whole numbers
            ax.set_xlabel("epoch")
            ax.set_ylabel(self.ylabel)
            if max((len(v) for v in self.history.values()), default=0) == 1:
                for line in ax.get_lines():      # one epoch: a line of one point is invisible
                    line.set_marker("o")
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
            plt.close(fig)
            # Replace the output's content in one assignment rather than `with output:`:
            # it syncs straight to the browser while `fit` is still running, the old plot
            # stays until the new one arrives (no flicker), and it needs no kernel, so a test
            # can read it back.
            self.output.outputs = ({
                "output_type": "display_data",
                "data": {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                         "text/plain": f"<training curves, {len(keys)} metrics>"},
                "metadata": {},
            },)
            self.redraws += 1

    return LiveCurves


_LAZY = {"LiveCurves": _make_live_curves}


def __getattr__(name: str):
    # PEP 562: `from course_lib.viz.live_curves import LiveCurves` builds the class on first use.
    if name in _LAZY:
        value = _LAZY[name]()
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The small widget kit every explorer is built from, on ipywidgets 8.

Taught in notebooks/00_start_here (the widget check) and used by every chapter's explorer.

An explorer is a function returning a widget. Its drawing or computing logic lives in a pure
function of the control values, and :func:`explorer` wires controls to it: every change of a
control re-renders into one ``Output``. Tests drive an explorer headlessly by setting a
control's ``.value`` and reading ``explorer.result`` (what the pure function returned last).

Besides the kit: :func:`prediction_browser` (ground truth vs prediction, image by image, with
the per-image score) and :class:`LiveCurves` (a Keras callback that redraws the training
curves in the notebook at every epoch end).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from matplotlib.ticker import MaxNLocator

from course_lib.viz import plots


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
        """Re-run ``render`` with the current control values into the output area."""
        self.output.clear_output(wait=True)
        before = set(plt.get_fignums())
        try:
            # In a kernel, an exception inside `with output` is shown there as a traceback
            # (ipywidgets' Output does that) instead of vanishing into the log console.
            with self.output:
                self.result = self._render(**self.values())
                # Show the figures this render drew (not figures a notebook cell left open).
                for number in plt.get_fignums():
                    if number not in before:
                        display(plt.figure(number))
        finally:
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


# ---------------------------------------------------------------------------------------
# Browsing predictions
# ---------------------------------------------------------------------------------------


def _as_mask_stack(item, name: str, index: int) -> np.ndarray:
    """``H×W×N`` bool from an ``H×W×N`` mask stack or an ``H×W`` label image (0 background)."""
    item = np.asarray(item)
    if item.ndim == 3:
        return item.astype(bool)
    if item.ndim == 2:
        ids = np.unique(item)
        ids = ids[ids != 0]
        return item[..., None] == ids[None, None, :]
    raise ValueError(
        f"prediction_browser: {name}[{index}] has shape {item.shape}; pass an H×W×N bool mask "
        "stack or an H×W label image (0 = background)"
    )


def _image_scores(true_masks: np.ndarray, pred_masks: np.ndarray) -> dict[str, float] | None:
    """DSB average precision and the mean best IoU of the true objects, or None.

    ``course_lib.metrics`` is imported here, not at module level, so the widget kit loads
    even where the metrics module is absent or broken (the browser then shows no score).
    """
    try:
        from course_lib.metrics import dsb_average_precision, iou_matrix
    except ImportError:
        return None
    iou = iou_matrix(true_masks, pred_masks)
    best = iou.max(axis=1) if iou.size else np.zeros(iou.shape[0])
    return {"dsb_ap": float(dsb_average_precision(true_masks, pred_masks)),
            "mean_best_iou": float(best.mean()) if best.size else float("nan")}


def prediction_browser(images: Sequence[np.ndarray], true_masks: Sequence[np.ndarray],
                       pred_masks: Sequence[np.ndarray], scores: Sequence[float] | None = None,
                       names: Sequence[str] | None = None) -> Explorer:
    """A slider over images: ground truth and prediction side by side, with the image's score.

    Args:
        images: ``n`` images, ``H×W×3`` uint8 (sizes may differ between images).
        true_masks, pred_masks: per image, an ``H×W×N`` bool mask stack or an ``H×W`` label
            image (0 background); ``N`` may differ between truth and prediction and be 0.
        scores: per-image scores to show instead of computing them (e.g. from a run's
            results table). By default each image gets its Data Science Bowl average precision
            (``course_lib.metrics.dsb_average_precision``) and the mean best IoU of its true
            objects, computed once for all images, when ``course_lib.metrics`` is there.
        names: per-image names for the title (default: the index).

    Returns:
        An :class:`Explorer` with controls ``index`` (slider) and ``order`` (dropdown: as
        given, worst first, best first; worst first is how one finds what the model gets
        wrong). ``result`` is a dict: ``index`` (into the inputs), ``position``, ``score``,
        ``mean_best_iou``, ``n_true``, ``n_pred`` and the printed ``text``.

    Taught in notebooks/10_unet (training and browsing its predictions).
    """
    n = len(images)
    if n == 0:
        raise ValueError("prediction_browser: `images` is empty; pass at least one image")
    if len(true_masks) != n or len(pred_masks) != n:
        raise ValueError(
            f"prediction_browser: {n} images but {len(true_masks)} true_masks and "
            f"{len(pred_masks)} pred_masks; pass one of each per image"
        )
    if scores is not None and len(scores) != n:
        raise ValueError(f"prediction_browser: {n} images but {len(scores)} scores")
    if names is not None and len(names) != n:
        raise ValueError(f"prediction_browser: {n} images but {len(names)} names")
    truths = [_as_mask_stack(m, "true_masks", i) for i, m in enumerate(true_masks)]
    preds = [_as_mask_stack(m, "pred_masks", i) for i, m in enumerate(pred_masks)]
    for i, (image, t, p) in enumerate(zip(images, truths, preds, strict=True)):
        if np.shape(image)[:2] != t.shape[:2] or t.shape[:2] != p.shape[:2]:
            raise ValueError(
                f"prediction_browser: image {i} is {np.shape(image)[:2]} but its masks are "
                f"{t.shape[:2]} (truth) and {p.shape[:2]} (prediction); they must match"
            )
    if scores is not None:
        per_image = [{"dsb_ap": float(s), "mean_best_iou": float("nan")} for s in scores]
        label = "score"
    else:
        # All at once: the "worst first" order needs every score, and each is one bincount.
        per_image = [_image_scores(t, p) for t, p in zip(truths, preds, strict=True)]
        label = "DSB AP"
    has_scores = per_image[0] is not None
    orders = ["as given"] + (["worst first", "best first"] if has_scores else [])

    def order_of(order: str) -> list[int]:
        if order == "as given":
            return list(range(n))
        key = np.array([s["dsb_ap"] for s in per_image])
        ranked = np.argsort(key, kind="stable")          # stable: ties keep the given order
        return [int(i) for i in (ranked if order == "worst first" else ranked[::-1])]

    def render(index: int, order: str) -> dict:
        i = order_of(order)[index]
        t, p = truths[i], preds[i]
        name = names[i] if names is not None else f"image {i}"
        score = per_image[i]
        parts = [f"{name} ({index + 1}/{n}): {t.shape[-1]} true, {p.shape[-1]} predicted"]
        if score is not None:
            parts.append(f"{label} {score['dsb_ap']:.3f}")
            if not np.isnan(score["mean_best_iou"]):
                parts.append(f"mean best IoU {score['mean_best_iou']:.3f}")
        text = ", ".join(parts)
        print(text)
        plots.compare_instances(np.asarray(images[i]), t, p,
                                titles=(f"ground truth ({t.shape[-1]})",
                                        f"prediction ({p.shape[-1]})"))
        return {"index": i, "position": index, "score": None if score is None else score["dsb_ap"],
                "mean_best_iou": None if score is None else score["mean_best_iou"],
                "n_true": int(t.shape[-1]), "n_pred": int(p.shape[-1]), "text": text}

    return explorer(render, title="Predictions: ground truth vs model",
                    index=widgets.IntSlider(value=0, min=0, max=n - 1, description="image",
                                            continuous_update=False),
                    order=widgets.Dropdown(options=orders, value="as given",
                                           description="order"))


# ---------------------------------------------------------------------------------------
# Live training curves
# ---------------------------------------------------------------------------------------


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

        Taught in notebooks/10_unet (training and browsing its predictions).
        """

        def __init__(self, keys: Sequence[str] | None = None, every: int = 1,
                     title: str = "Training curves"):
            super().__init__()
            if every < 1:
                raise ValueError(f"LiveCurves: every={every}; pass a positive number of epochs")
            self.keys = list(keys) if keys is not None else None
            self.every = every
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
    # PEP 562: `from course_lib.viz.widgets import LiveCurves` builds the class on first use.
    if name in _LAZY:
        value = _LAZY[name]()
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

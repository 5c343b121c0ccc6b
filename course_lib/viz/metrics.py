"""Pictures and an explorer for the segmentation metrics: IoU matrices, matches, precision.

Taught in notebooks/02_metrics.

The drawing logic lives in pure functions (:func:`match_summary`, :func:`draw_matches`,
:func:`plot_iou_matrix`, :func:`plot_precision_per_threshold`); the widget
:func:`threshold_explorer` only wires a slider and a checkbox to them, so a test can move the
slider and read what changed.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from course_lib import metrics

#: Colours of the match outcomes: true positive, false positive, false negative.
OUTCOME_COLORS = {"TP": (0.20, 0.75, 0.30), "FP": (0.90, 0.25, 0.20), "FN": (0.20, 0.45, 0.95)}


def match_summary(true_labels: np.ndarray, pred_labels: np.ndarray, threshold: float,
                  strict: bool = True) -> dict:
    """Which objects match at one IoU threshold.

    Returns:
        dict with ``tp``, ``fp``, ``fn`` counts, ``precision`` (``TP / (TP + FP + FN)``),
        ``true_hit`` ``(N,)`` and ``pred_hit`` ``(M,)`` bool (object matched or not), the
        ``iou`` matrix and the label ids of its rows and columns, and a one-line ``text``.

    Taught in notebooks/02_metrics.
    """
    iou, true_ids, pred_ids = metrics.iou_matrix(true_labels, pred_labels, return_labels=True)
    hits = iou > threshold if strict else iou >= threshold
    n_true, n_pred = iou.shape
    tp, _, _ = metrics.match_counts(iou, threshold, strict)
    precision = metrics.precision_at(iou, threshold, strict)
    sign = ">" if strict else ">="
    return {
        "tp": tp, "fp": n_pred - tp, "fn": n_true - tp, "precision": precision,
        "true_hit": hits.any(axis=1), "pred_hit": hits.any(axis=0),
        "iou": iou, "true_ids": true_ids, "pred_ids": pred_ids,
        "text": (f"IoU {sign} {threshold:.2f}: TP = {tp}, FP = {n_pred - tp}, "
                 f"FN = {n_true - tp}, precision = {precision:.3f}"),
    }


def _outcome_image(labels: np.ndarray, ids: np.ndarray, hit: np.ndarray, miss: str) -> np.ndarray:
    """RGB image: matched objects green, unmatched ones in the ``miss`` colour."""
    from skimage.segmentation import find_boundaries

    out = np.full((*labels.shape, 3), 0.93)  # light grey background shows the image frame
    for label, is_hit in zip(ids, hit, strict=True):
        out[labels == label] = OUTCOME_COLORS["TP" if is_hit else miss]
    # Darken each object's outline so touching objects (a split, a merged pair) stay apart.
    edges = find_boundaries(labels, mode="inner") & (labels > 0)
    out[edges] *= 0.55
    return out


def draw_matches(true_labels: np.ndarray, pred_labels: np.ndarray, threshold: float,
                 strict: bool = True, axes=None) -> dict:
    """Ground truth (missed objects blue) and prediction (false positives red), matches green.

    Args:
        true_labels, pred_labels: ``H×W`` label images.
        threshold: IoU threshold.
        strict: ``>`` (DSB) or ``>=``.
        axes: two matplotlib axes (a new figure when None).

    Returns:
        :func:`match_summary`'s dict, plus ``figure``.

    Taught in notebooks/02_metrics.
    """
    summary = match_summary(true_labels, pred_labels, threshold, strict)
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 4))
    panels = [
        (true_labels, summary["true_ids"], summary["true_hit"], "FN", "ground truth (blue: missed)"),
        (pred_labels, summary["pred_ids"], summary["pred_hit"], "FP",
         "prediction (red: false positive)"),
    ]
    for ax, (labels, ids, hit, miss, title) in zip(axes, panels, strict=True):
        ax.clear()
        ax.imshow(_outcome_image(np.asarray(labels), ids, hit, miss), interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    axes[0].figure.suptitle(summary["text"], fontsize=10)
    summary["figure"] = axes[0].figure
    return summary


def plot_iou_matrix(iou: np.ndarray, true_ids=None, pred_ids=None, ax=None,
                    annotate: bool = True) -> plt.Axes:
    """The IoU matrix as a heat map (true objects in rows), values written in the cells.

    Taught in notebooks/02_metrics.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    iou = np.asarray(iou)
    image = ax.imshow(iou, vmin=0, vmax=1, cmap="viridis")
    ax.figure.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xlabel("predicted object")
    ax.set_ylabel("true object")
    if true_ids is not None:
        ax.set_yticks(range(len(true_ids)), [str(i) for i in true_ids])
    if pred_ids is not None:
        ax.set_xticks(range(len(pred_ids)), [str(j) for j in pred_ids])
    if annotate and iou.size <= 400:
        for (i, j), value in np.ndenumerate(iou):
            if value > 0:
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if value > 0.6 else "white")
    return ax


def plot_precision_per_threshold(details: dict, ax=None, label: str | None = None,
                                 **style) -> plt.Axes:
    """Precision ``TP / (TP + FP + FN)`` against the IoU threshold, with its mean dashed.

    Args:
        details: the dict :func:`course_lib.metrics.dsb_average_precision` returns with
            ``return_details=True``.

    Taught in notebooks/02_metrics.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    line, = ax.plot(details["thresholds"], details["precision"], marker="o", label=label,
                    **style)
    ax.axhline(float(np.mean(details["precision"])), color=line.get_color(), linestyle="--",
               linewidth=1)
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("TP / (TP + FP + FN)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    if label:
        ax.legend()
    return ax


def threshold_explorer(true_labels: np.ndarray, pred_labels: np.ndarray):
    """A slider over the ten DSB thresholds and a ``>`` / ``>=`` checkbox, redrawing the matches.

    Returns:
        ``ipywidgets.VBox([slider, checkbox, text, output])``; ``.children[2].value`` holds the
        current :func:`match_summary` text.

    Taught in notebooks/02_metrics.
    """
    import ipywidgets as widgets

    slider = widgets.SelectionSlider(
        options=[(f"{t:.2f}", float(t)) for t in metrics.DSB_THRESHOLDS], value=0.5,
        description="IoU threshold", continuous_update=False,
        style={"description_width": "initial"})
    strict = widgets.Checkbox(value=True, description="strict > (DSB); untick for >=")
    text = widgets.Label()
    output = widgets.Output()

    def redraw(_=None):
        with output:
            output.clear_output(wait=True)
            summary = draw_matches(true_labels, pred_labels, slider.value, strict.value)
            plt.show()
        text.value = summary["text"]

    slider.observe(redraw, names="value")
    strict.observe(redraw, names="value")
    redraw()
    return widgets.VBox([slider, strict, text, output])

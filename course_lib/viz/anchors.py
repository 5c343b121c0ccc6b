"""Pictures and explorers for anchors, anchor targets and NMS.

Taught in notebooks/06_anchors_and_rpn.

Pure functions compute (:func:`anchor_labels_view`) or draw (:func:`draw_anchors`,
:func:`draw_nms`); the explorers (:func:`anchor_explorer`, :func:`nms_explorer`) only wire
ipywidgets controls to them through :func:`course_lib.viz.widgets.explorer`, so a test can move a
control and read ``explorer.result``.
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection

from course_lib.layers.rpn import match_anchors_np
from course_lib.ops.anchors import DEFAULT_RATIOS, level_anchors
from course_lib.ops.nms import nms
from course_lib.viz.plots import draw_boxes
from course_lib.viz.widgets import Explorer, explorer

#: Colours of anchor labels: positive, neutral (ignored), negative.
LABEL_COLORS = {1: "lime", -1: "orange", 0: "red"}

RATIO_CHOICES = {"1": (1.0,), "0.5, 1, 2": (0.5, 1.0, 2.0), "0.25 … 4": (0.25, 0.5, 1.0, 2.0, 4.0)}
LEVELS = {"P2 (stride 4)": 4, "P3 (stride 8)": 8, "P4 (stride 16)": 16, "P5 (stride 32)": 32,
          "P6 (stride 64)": 64}


def _frame(ax, shape):
    """Keep the view on the image: anchors reaching past the border must not zoom out."""
    ax.set_xlim(-0.5, shape[1] - 0.5)
    ax.set_ylim(shape[0] - 0.5, -0.5)


def _show(ax, image, shape):
    if image is not None:
        ax.imshow(image)
    else:
        ax.set_xlim(-0.5, shape[1] - 0.5)
        ax.set_ylim(shape[0] - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])


def outline_boxes(ax: plt.Axes, boxes: np.ndarray, color, linewidth: float = 0.6,
             linestyle: str = "-") -> LineCollection:
    """All boxes as one ``LineCollection`` (thousands of anchors draw in milliseconds, where
    one ``Rectangle`` patch each takes seconds). Edges at -0.5 as in ``draw_boxes``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    b = np.asarray(boxes, dtype=float).reshape(-1, 4) - 0.5
    y1, x1, y2, x2 = b.T
    rings = np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1), np.stack([x2, y2], 1),
                      np.stack([x1, y2], 1), np.stack([x1, y1], 1)], axis=1)
    lines = LineCollection(rings, colors=color, linewidths=linewidth, linestyles=linestyle)
    ax.add_collection(lines)
    return lines


def draw_anchors(ax: plt.Axes, anchors: np.ndarray, labels: np.ndarray | None = None,
                 image: np.ndarray | None = None, gt_boxes: np.ndarray | None = None,
                 show_negatives: int = 0, show_neutrals: bool = True,
                 image_shape=None) -> dict[int, int]:
    """Draw anchors coloured by label (lime positive, orange neutral, red negative).

    Args:
        ax: where to draw.
        anchors: ``(A, 4)`` boxes.
        labels: ``(A,)`` in {1, 0, -1}; ``None`` draws every anchor in grey.
        image: optional ``H×W×3`` background.
        gt_boxes: optional ``(G, 4)`` boxes drawn thick in yellow.
        show_negatives: how many negatives to draw (there are thousands; 0 draws none).
        show_neutrals: draw the neutral (-1) anchors; turn off after sampling, when every
            anchor left out of the 256 is -1.
        image_shape: extent when there is no image.

    Returns:
        how many anchors of each label were drawn (one ``LineCollection`` per label).

    Taught in notebooks/06_anchors_and_rpn.
    """
    anchors = np.asarray(anchors, dtype=float).reshape(-1, 4)
    shape = image.shape if image is not None else (image_shape or
                                                   (anchors[:, 2].max(), anchors[:, 3].max()))
    _show(ax, image, shape)
    drawn: dict[int, int] = {}
    if labels is None:
        outline_boxes(ax, anchors, "0.7")
        drawn[-2] = len(anchors)
    else:
        labels = np.asarray(labels)
        for label in (0, -1, 1):  # positives last, on top
            idx = np.flatnonzero(labels == label)
            if label == 0:
                idx = idx[:: max(1, len(idx) // show_negatives)][:show_negatives] \
                    if show_negatives else idx[:0]
            if label == -1 and not show_neutrals:
                idx = idx[:0]
            outline_boxes(ax, anchors[idx], LABEL_COLORS[label], linewidth=1.0 if label == 1 else 0.6,
                     linestyle="-" if label == 1 else "--")
            drawn[label] = len(idx)
    if gt_boxes is not None and len(gt_boxes):
        draw_boxes(ax, gt_boxes, colors=["yellow"] * len(gt_boxes), linewidth=2.0)
    _frame(ax, shape)
    return drawn


def anchor_labels_view(image_shape, gt_boxes, scale: float, ratios, stride: int,
                       positive_iou: float = 0.7, negative_iou: float = 0.3,
                       anchor_stride: int = 1) -> dict:
    """Anchors of one level and their labels against ``gt_boxes`` (before sampling).

    Returns:
        dict with ``anchors (A, 4)``, ``labels (A,)``, ``max_iou (A,)`` and the counts
        ``n_anchors``, ``n_positive``, ``n_negative``, ``n_neutral``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    anchors = level_anchors(image_shape, scale, ratios, stride, anchor_stride)
    gt_boxes = np.asarray(gt_boxes, dtype=float).reshape(-1, 4)
    labels, _, max_iou = match_anchors_np(anchors, gt_boxes, None, positive_iou, negative_iou)
    return {"anchors": anchors, "labels": labels, "max_iou": max_iou,
            "n_anchors": len(anchors), "n_positive": int((labels == 1).sum()),
            "n_negative": int((labels == 0).sum()), "n_neutral": int((labels == -1).sum())}


def anchor_explorer(image: np.ndarray, gt_boxes: np.ndarray) -> Explorer:
    """Explorer: pick a level (stride), a scale, the ratios and the two IoU thresholds; see
    which anchors become positive (lime), neutral (orange) or negative (red, a sample drawn).

    ``explorer.result`` is the dict of :func:`anchor_labels_view` for the current controls.

    Taught in notebooks/06_anchors_and_rpn.
    """
    image = np.asarray(image)
    gt_boxes = np.asarray(gt_boxes, dtype=float).reshape(-1, 4)

    def render(level, scale, ratios, positive_iou, negative_iou):
        view = anchor_labels_view(image.shape, gt_boxes, scale, RATIO_CHOICES[ratios],
                                  LEVELS[level], positive_iou, min(negative_iou, positive_iou))
        fig, ax = plt.subplots(figsize=(6, 6))
        draw_anchors(ax, view["anchors"], view["labels"], image=image, gt_boxes=gt_boxes,
                     show_negatives=30)
        ax.set_title(f"{view['n_anchors']} anchors: {view['n_positive']} positive, "
                     f"{view['n_neutral']} neutral, {view['n_negative']} negative", fontsize=9)
        return view

    return explorer(
        render, title="Anchor explorer",
        level=widgets.Dropdown(options=list(LEVELS), value="P3 (stride 8)", description="level"),
        scale=widgets.SelectionSlider(options=[4, 8, 16, 32, 64, 128, 256, 512], value=32,
                                      description="scale"),
        ratios=widgets.Dropdown(options=list(RATIO_CHOICES), value="0.5, 1, 2",
                                description="ratios"),
        positive_iou=widgets.FloatSlider(value=0.7, min=0.3, max=0.95, step=0.05,
                                         description="pos IoU ≥"),
        negative_iou=widgets.FloatSlider(value=0.3, min=0.0, max=0.6, step=0.05,
                                         description="neg IoU ≤"),
    )


def draw_nms(ax: plt.Axes, boxes: np.ndarray, scores: np.ndarray, kept: np.ndarray,
             image: np.ndarray | None = None, image_shape=None) -> None:
    """All boxes faint and dashed, the kept ones solid with their scores.

    Taught in notebooks/06_anchors_and_rpn.
    """
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    shape = image.shape if image is not None else (image_shape or
                                                   (boxes[:, 2].max() + 1, boxes[:, 3].max() + 1))
    _show(ax, image, shape)
    outline_boxes(ax, boxes, "0.6", linewidth=0.5, linestyle="--")
    kept = np.asarray(kept, dtype=int)
    draw_boxes(ax, boxes[kept], scores=np.asarray(scores)[kept], linewidth=1.8)
    _frame(ax, shape)


def nms_explorer(boxes: np.ndarray, scores: np.ndarray, image: np.ndarray | None = None) -> Explorer:
    """Explorer: move the IoU threshold and watch which boxes NMS keeps.

    ``explorer.result`` is the kept indices (best first) from :func:`course_lib.ops.nms.nms`.

    Taught in notebooks/06_anchors_and_rpn.
    """
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    scores = np.asarray(scores, dtype=float).reshape(-1)

    def render(iou_threshold):
        kept = nms(boxes, scores, iou_threshold)
        fig, ax = plt.subplots(figsize=(6, 6))
        draw_nms(ax, boxes, scores, kept, image=image)
        ax.set_title(f"IoU threshold {iou_threshold:.2f}: kept {len(kept)} of {len(boxes)}",
                     fontsize=9)
        return kept

    return explorer(render, title="NMS explorer",
                    iou_threshold=widgets.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05,
                                                      description="IoU >"))


__all__ = ["DEFAULT_RATIOS", "outline_boxes", "anchor_explorer", "anchor_labels_view", "draw_anchors", "draw_nms",
           "nms_explorer"]

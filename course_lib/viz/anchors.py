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
from course_lib.ops.anchors import DEFAULT_RATIOS, cell_anchors, feature_shape, level_anchors
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
    ax.set_xlabel("x (image px)")
    ax.set_ylabel("y (image px)")


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
    anchors = level_anchors(image_shape, scale, ratios, stride, anchor_stride=anchor_stride)
    gt_boxes = np.asarray(gt_boxes, dtype=float).reshape(-1, 4)
    labels, _, max_iou = match_anchors_np(anchors, gt_boxes, None, positive_iou,
                                          negative_iou=negative_iou)
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


def cross_boundary(anchors: np.ndarray, image_shape, allowed_border: float = 0.0) -> np.ndarray:
    """``(A,)`` bool: anchors reaching more than ``allowed_border`` px past the image edge.

    Faster R-CNN ignores these in training (its ``allowed_border`` is 0); torchvision and
    matterport label them like any other anchor.

    Taught in notebooks/06_anchors_and_rpn.
    """
    a = np.asarray(anchors, dtype=float).reshape(-1, 4)
    h, w = image_shape[0], image_shape[1]
    inside = ((a[:, 0] >= -allowed_border) & (a[:, 1] >= -allowed_border)
              & (a[:, 2] <= h + allowed_border) & (a[:, 3] <= w + allowed_border))
    return ~inside


def draw_level_anchors(ax: plt.Axes, image_shape, scale: float, ratios, stride: int,
                       image: np.ndarray | None = None, gt_boxes: np.ndarray | None = None,
                       cell: tuple[int, int] | None = None, offset: float = 0.5,
                       extent: float | None = None) -> np.ndarray:
    """One pyramid level drawn to scale: the image (or its outline), the level's anchor centres
    as dots, and the anchors of one cell (one per ratio) in colour.

    Args:
        image_shape: ``(H, W[, C])``; image: optional picture to show in it.
        scale, ratios, stride: the level's anchors (ratio = width / height).
        gt_boxes: optional ``(G, 4)`` boxes drawn in yellow, for size comparison.
        cell: ``(i, j)`` whose anchors are drawn (default: the middle cell).
        offset: anchor centres at ``(i + offset) * stride``.
        extent: half-width in pixels of the view around the image centre (default: the image
            with a margin, or more when the anchors are larger).

    Returns:
        the ``(len(ratios), 4)`` anchors drawn.

    Taught in notebooks/06_anchors_and_rpn.
    """
    h, w = image_shape[0], image_shape[1]
    hf, wf = feature_shape((h, w), stride)
    i, j = cell if cell is not None else (hf // 2, wf // 2)
    centre = np.array([(i + offset) * stride, (j + offset) * stride])
    cell_boxes = cell_anchors(scale, ratios) + np.concatenate([centre, centre])[None]
    if image is not None:
        ax.imshow(image, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    ax.add_patch(plt.Rectangle((-0.5, -0.5), w, h, fill=False, edgecolor="0.5", linewidth=1.0))
    cy = (np.arange(hf) + offset) * stride
    cx = (np.arange(wf) + offset) * stride
    yy, xx = np.meshgrid(cy, cx, indexing="ij")
    ax.plot(xx.ravel() - 0.5, yy.ravel() - 0.5, ".", color="0.2" if image is None else "white",
            markersize=max(0.5, min(3.0, stride / 8)))
    if gt_boxes is not None and len(gt_boxes):
        draw_boxes(ax, gt_boxes, colors=["yellow"] * len(gt_boxes), linewidth=1.0)
    colours = ["cyan", "magenta", "orange", "lime", "red"]
    draw_boxes(ax, cell_boxes, colors=colours[:len(cell_boxes)],
               labels=[f"r={r:g}" for r in _as_tuple(ratios)], linewidth=1.5)
    largest = np.abs(cell_anchors(scale, ratios)).max() * 2          # longest anchor side
    half = extent if extent is not None else max(0.6 * max(h, w), 0.75 * largest)
    mid_y, mid_x = h / 2, w / 2
    ax.set_xlim(mid_x - half, mid_x + half)
    ax.set_ylim(mid_y + half, mid_y - half)
    ax.set_aspect("equal")
    ax.set_xlabel("x (image px)")
    ax.set_ylabel("y (image px)")
    return cell_boxes


def _as_tuple(values) -> tuple:
    return tuple(np.atleast_1d(np.asarray(values, dtype=float)).tolist())


def draw_delta(ax: plt.Axes, image: np.ndarray, gt_box, anchor, decoded=None,
               pad: int = 10) -> np.ndarray:
    """Anchor (dashed orange), ground truth (yellow) and optionally a decoded box (dotted lime)
    on a crop around them, with an arrow from the anchor's centre to the object's centre.

    Returns:
        ``(2,)`` the crop's top-left corner ``(y0, x0)`` in image pixels (boxes are drawn shifted
        by it; tick labels show image coordinates).

    Taught in notebooks/06_anchors_and_rpn.
    """
    gt_box = np.asarray(gt_box, dtype=float).reshape(4)
    anchor = np.asarray(anchor, dtype=float).reshape(4)
    both = np.stack([gt_box, anchor])
    y0 = int(max(np.floor(both[:, 0].min()) - pad, 0))
    x0 = int(max(np.floor(both[:, 1].min()) - pad, 0))
    y1 = int(min(np.ceil(both[:, 2].max()) + pad, image.shape[0]))
    x1 = int(min(np.ceil(both[:, 3].max()) + pad, image.shape[1]))
    ax.imshow(image[y0:y1, x0:x1], extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5))
    draw_boxes(ax, anchor[None], colors=["orange"], linestyle="--", labels=["anchor"], linewidth=2)
    draw_boxes(ax, gt_box[None], colors=["yellow"], labels=["ground truth"], linewidth=2)
    if decoded is not None:
        draw_boxes(ax, np.asarray(decoded, dtype=float).reshape(1, 4), colors=["lime"],
                   linestyle=":", linewidth=2.5)
    (acy, acx), (gcy, gcx) = [((b[0] + b[2]) / 2 - 0.5, (b[1] + b[3]) / 2 - 0.5)
                              for b in (anchor, gt_box)]
    ax.annotate("", xy=(gcx, gcy), xytext=(acx, acy),
                arrowprops=dict(arrowstyle="->", color="white", linewidth=1.5))
    ax.set_xlim(x0 - 0.5, x1 - 0.5)
    ax.set_ylim(y1 - 0.5, y0 - 0.5)
    ax.set_xlabel("x (image px)")
    ax.set_ylabel("y (image px)")
    return np.array([y0, x0])


def draw_nms_before_after(axes, before: np.ndarray, after: np.ndarray, image: np.ndarray,
                          window) -> tuple[int, int]:
    """Two panels on the same crop: the boxes before NMS and the ones it kept.

    Args:
        axes: two matplotlib axes.
        before, after: ``(N, 4)`` and ``(K, 4)`` boxes in image pixels.
        image: ``H×W×3``; window: ``(y1, x1, y2, x2)`` crop in pixels.

    Returns:
        ``(n_before, n_after)``: how many boxes of each set have their centre in the window
        (the ones drawn).

    Taught in notebooks/06_anchors_and_rpn.
    """
    y0, x0, y1, x1 = (int(v) for v in window)
    counts = []
    for ax, bxs, colour in zip(axes, (before, after), ("orange", "lime"), strict=True):
        bxs = np.asarray(bxs, dtype=float).reshape(-1, 4)
        cy, cx = (bxs[:, 0] + bxs[:, 2]) / 2, (bxs[:, 1] + bxs[:, 3]) / 2
        inside = bxs[(cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1)]
        ax.imshow(image[y0:y1, x0:x1], extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5))
        outline_boxes(ax, inside, colour, linewidth=0.9)
        ax.set_xlim(x0 - 0.5, x1 - 0.5)
        ax.set_ylim(y1 - 0.5, y0 - 0.5)
        ax.set_xlabel("x (image px)")
        ax.set_ylabel("y (image px)")
        counts.append(len(inside))
    return counts[0], counts[1]


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
           "nms_explorer", "cross_boundary", "draw_level_anchors", "draw_delta",
           "draw_nms_before_after"]

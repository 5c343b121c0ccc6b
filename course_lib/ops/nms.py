"""Non-maximum suppression: keep the best box, drop boxes that overlap it too much, repeat.

Taught in notebooks/06_anchors_and_rpn.

Two versions, as everywhere in ``course_lib.ops``:

- :func:`nms`, the NumPy reference: greedy, one vectorised IoU row per kept box.
- :func:`padded_nms` / :func:`batched_padded_nms`, the ``keras.ops`` twin a model uses: fixed
  output shape (``max_output`` indices padded with ``-1`` plus a count of valid ones), so it runs
  inside a compiled graph on every backend.

Semantics shared by both (and by ``tf.image.non_max_suppression``): a box is suppressed when its
IoU with an already kept box is *strictly greater* than ``iou_threshold``; boxes with score
``<= score_threshold`` are never kept. Ties in score keep the lower index first.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from course_lib.ops.boxes import iou, iou_ops


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5,
        max_output: int | None = None, score_threshold: float = -np.inf) -> np.ndarray:
    """Greedy NMS (NumPy reference).

    Args:
        boxes: ``(N, 4)`` boxes ``(y1, x1, y2, x2)``.
        scores: ``(N,)`` scores; higher is better.
        iou_threshold: suppress boxes whose IoU with a kept box is greater than this.
        max_output: stop after this many boxes (``None``: no limit).
        score_threshold: boxes with score ``<= score_threshold`` are dropped first.

    Returns:
        ``(K,)`` int64 indices into ``boxes``, best first.

    Taught in notebooks/06_anchors_and_rpn.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"nms: {len(boxes)} boxes but {len(scores)} scores; give one score "
                         "per box.")
    limit = len(boxes) if max_output is None else int(max_output)
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] > score_threshold]
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        order = rest[iou(boxes[best][None], boxes[rest])[0] <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_padded_nms(boxes, scores, max_output: int, iou_threshold: float = 0.5,
                       score_threshold: float = float("-inf")):
    """Fixed-shape NMS on a batch (``keras.ops`` twin of :func:`nms`).

    Args:
        boxes: ``(B, N, 4)`` tensor of boxes.
        scores: ``(B, N)`` scores.
        max_output: static number of output slots.
        iou_threshold: as in :func:`nms`.
        score_threshold: as in :func:`nms`.

    Returns:
        ``(indices, count)``: ``(B, max_output)`` int32 indices into ``N``, best first, padded
        with ``-1``; and ``(B,)`` int32 number of valid entries.

    How: the boxes are sorted by score once; then ``max_output`` steps each take the first
    still-alive box (``argmax`` of the alive mask in sorted order), record it, and kill every box
    whose IoU with it exceeds the threshold (one ``(B, N)`` IoU row per step, all masked, so the
    shapes never change). Cost ``max_output * N`` pairs instead of ``N²``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    boxes = ops.convert_to_tensor(boxes, dtype="float32")
    scores = ops.convert_to_tensor(scores, dtype="float32")
    n = boxes.shape[1]
    if n is None:
        raise ValueError("batched_padded_nms needs a static number of boxes (fixed shapes).")
    max_output = int(max_output)
    # Sort once (top_k is stable for ties, like the reference's stable argsort).
    sorted_scores, order = ops.top_k(scores, k=n, sorted=True)
    order = ops.cast(order, "int32")
    sorted_boxes = ops.take_along_axis(boxes, ops.expand_dims(order, -1), axis=1)
    alive = sorted_scores > score_threshold  # (B, N) bool
    positions = ops.arange(n, dtype="int32")[None, :]
    batch = ops.shape(boxes)[0]
    kept = ops.full((batch, max_output), -1, dtype="int32")
    slots = ops.arange(max_output, dtype="int32")[None, :]

    def step(t, state):
        alive, kept = state
        any_alive = ops.any(alive, axis=1)                                     # (B,)
        first = ops.cast(ops.argmax(ops.cast(alive, "int32"), axis=1), "int32")  # (B,)
        box = ops.take_along_axis(sorted_boxes, first[:, None, None] * ops.ones((1, 1, 4), "int32"),
                                  axis=1)                                      # (B, 1, 4)
        overlap = iou_ops(box, sorted_boxes)[:, 0, :]                          # (B, N)
        original = ops.take_along_axis(order, first[:, None], axis=1)[:, 0]   # (B,)
        value = ops.where(any_alive, original, -1)
        kept = ops.where(slots == t, value[:, None], kept)
        alive = alive & (overlap <= iou_threshold) & (positions != first[:, None])
        return alive, kept

    alive, kept = ops.fori_loop(0, max_output, step, (alive, kept))
    count = ops.sum(ops.cast(kept >= 0, "int32"), axis=1)
    return kept, count


def padded_nms(boxes, scores, max_output: int, iou_threshold: float = 0.5,
               score_threshold: float = float("-inf")):
    """Fixed-shape NMS of one image: ``(N, 4)``, ``(N,)`` -> ``((max_output,) indices, count)``.

    Indices are best first and padded with ``-1``; ``count`` is a scalar int32. See
    :func:`batched_padded_nms`.

    Taught in notebooks/06_anchors_and_rpn.
    """
    boxes = ops.convert_to_tensor(boxes, dtype="float32")
    scores = ops.convert_to_tensor(scores, dtype="float32")
    kept, count = batched_padded_nms(boxes[None], scores[None], max_output, iou_threshold,
                                     score_threshold)
    return kept[0], count[0]

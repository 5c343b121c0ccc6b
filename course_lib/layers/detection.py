"""The detection layer: the box head's outputs on the proposals -> final detections.

Taught in notebooks/09_mask_rcnn.

For every RoI and every foreground class ``k`` (1 … K-1):

1. score = softmax probability of class ``k``; box = the RoI refined by class ``k``'s deltas
   (:mod:`~course_lib.layers.box_coder`), clipped to the image window;
2. candidates with score ``<= score_threshold`` (0.05), or a box side under ``min_size``, or
   from a padding RoI, are dropped; the ``pre_nms_top_k`` best of the rest go on;
3. **per-class NMS** (IoU 0.5) in one fixed-shape pass: each class's boxes are shifted by
   ``class * (largest coordinate + 1)`` so boxes of different classes never overlap, then one
   :func:`course_lib.ops.nms.batched_padded_nms` keeps the best ``max_detections``.

Outputs are padded to ``max_detections`` rows with a ``valid`` flag, and carry no gradient (the
mask head reads features at these boxes, and the boxes are not what the mask loss trains).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from course_lib.layers.box_coder import clip_to_window_np, clip_to_window_ops
from course_lib.layers.sampler import gather_rows
from course_lib.ops import boxes as box_ops
from course_lib.ops.geometry import meta_window
from course_lib.ops.nms import batched_padded_nms, nms


def _softmax_np(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def detections_np(rois, rois_valid, class_logits, deltas, *, window, max_detections: int = 100,
                  score_threshold: float = 0.05, nms_threshold: float = 0.5,
                  pre_nms_top_k: int = 1000, min_size: float = 0.0):
    """Detections of one image (NumPy reference of :class:`DetectionLayer`, NMS class by class).

    Args:
        rois: ``(R, 4)``; rois_valid: ``(R,)`` bool; class_logits: ``(R, K)``;
        deltas: ``(R, K, 4)``; window: ``(4,)`` the image's window in the padded square.

    Returns:
        ``(boxes (D, 4), class_ids (D,), scores (D,))``, best first, ``D <= max_detections``.

    Taught in notebooks/09_mask_rcnn.
    """
    rois = np.asarray(rois, np.float64).reshape(-1, 4)
    probs = _softmax_np(np.asarray(class_logits, np.float64))
    deltas = np.asarray(deltas, np.float64)
    k = probs.shape[1]
    boxes = np.stack([clip_to_window_np(box_ops.decode(deltas[:, c], rois), window)
                      for c in range(1, k)], axis=1)                           # (R, K-1, 4)
    scores = np.where(np.asarray(rois_valid, bool)[:, None], probs[:, 1:], 0.0)
    classes = np.broadcast_to(np.arange(1, k), scores.shape)
    boxes, scores, classes = boxes.reshape(-1, 4), scores.reshape(-1), classes.reshape(-1)
    big = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    keep = np.flatnonzero((scores > score_threshold) & big)
    keep = keep[np.argsort(-scores[keep], kind="stable")][:pre_nms_top_k]
    kept = []
    for c in np.unique(classes[keep]):
        mine = keep[classes[keep] == c]
        kept.extend(mine[nms(boxes[mine], scores[mine], nms_threshold)])
    kept = np.asarray(kept, np.int64)
    kept = kept[np.argsort(-scores[kept], kind="stable")][:max_detections]
    return boxes[kept], classes[kept].astype(np.int32), scores[kept]


@keras.saving.register_keras_serializable(package="course_lib")
class DetectionLayer(keras.layers.Layer):
    """Refined, scored, per-class-suppressed detections (steps in the module docstring).

    Args:
        max_detections: ``D`` rows per image (100).
        score_threshold: drop class scores at or below this (0.05).
        nms_threshold: per-class NMS IoU (0.5).
        pre_nms_top_k: best candidates (over RoIs × classes) that enter NMS.
        min_size: minimum box side in pixels.

    Call:
        ``[rois (B, R, 4), rois_valid (B, R), class_logits (B, R, K), deltas (B, R, K, 4),
        image_meta (B, 7)]``.

    Returns:
        ``(boxes (B, D, 4), class_ids (B, D) int32, scores (B, D), valid (B, D) bool)``, best
        first; padding rows are zeros (class 0).

    Taught in notebooks/09_mask_rcnn.
    """

    def __init__(self, max_detections: int = 100, score_threshold: float = 0.05,
                 nms_threshold: float = 0.5, pre_nms_top_k: int = 1000, *, min_size: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.max_detections = int(max_detections)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_top_k = int(pre_nms_top_k)
        self.min_size = float(min_size)

    def call(self, inputs):
        rois, rois_valid, class_logits, deltas, image_meta = inputs
        rois = ops.stop_gradient(ops.cast(rois, "float32"))
        probs = ops.stop_gradient(ops.softmax(ops.cast(class_logits, "float32"), axis=-1))
        deltas = ops.stop_gradient(ops.cast(deltas, "float32"))
        r, k = int(probs.shape[1]), int(probs.shape[2])
        boxes = box_ops.decode_ops(deltas[:, :, 1:], rois[:, :, None, :])      # (B, R, K-1, 4)
        boxes = ops.reshape(boxes, (-1, r * (k - 1), 4))
        boxes = clip_to_window_ops(boxes, meta_window(image_meta))
        scores = ops.where(ops.cast(rois_valid, "bool")[..., None], probs[:, :, 1:], 0.0)
        scores = ops.reshape(scores, (-1, r * (k - 1)))
        classes = ops.tile(ops.arange(1, k, dtype="int32")[None, :], (r, 1))
        classes = ops.reshape(classes, (1, r * (k - 1)))
        if self.min_size > 0:
            big = ((boxes[..., 2] - boxes[..., 0]) >= self.min_size) & \
                  ((boxes[..., 3] - boxes[..., 1]) >= self.min_size)
            scores = ops.where(big, scores, 0.0)
        n = min(self.pre_nms_top_k, r * (k - 1))
        top_scores, top = ops.top_k(scores, k=n, sorted=True)
        top = ops.cast(top, "int32")
        top_boxes = gather_rows(boxes, top)
        top_classes = ops.take(classes[0], top, axis=0)                          # (B, n)
        # Shift each class into its own region so one NMS suppresses within classes only.
        offset = ops.max(top_boxes, axis=(1, 2), keepdims=True) + 1.0            # (B, 1, 1)
        shifted = top_boxes + ops.cast(top_classes, "float32")[..., None] * offset
        kept, _ = batched_padded_nms(shifted, top_scores, self.max_detections,
                                     self.nms_threshold, score_threshold=self.score_threshold)
        valid = kept >= 0
        safe = ops.maximum(kept, 0)
        out_boxes = ops.where(valid[..., None], gather_rows(top_boxes, safe), 0.0)
        out_classes = ops.where(valid, ops.take_along_axis(top_classes, safe, axis=1), 0)
        out_scores = ops.where(valid, ops.take_along_axis(top_scores, safe, axis=1), 0.0)
        return (ops.stop_gradient(out_boxes), ops.cast(out_classes, "int32"),
                ops.stop_gradient(out_scores), valid)

    def compute_output_shape(self, input_shape):
        b, d = input_shape[0][0], self.max_detections
        return (b, d, 4), (b, d), (b, d), (b, d)

    def get_config(self):
        return {**super().get_config(), "max_detections": self.max_detections,
                "score_threshold": self.score_threshold, "nms_threshold": self.nms_threshold,
                "pre_nms_top_k": self.pre_nms_top_k, "min_size": self.min_size}

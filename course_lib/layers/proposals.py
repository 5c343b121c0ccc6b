"""The proposal layer: RPN scores and deltas -> a fixed number of candidate boxes per image.

Taught in notebooks/06_anchors_and_rpn (and used by 09_mask_rcnn).

The steps, as Faster R-CNN and FPN describe them:

1. **top-k per pyramid level** (``pre_nms_top_k`` best logits of each level; FPN keeps 2000
   per level in training, 1000 at test), so the many P2 anchors cannot crowd out the coarse
   levels; with ``level_counts=None`` the anchors are one pool (notebook 06's first version);
2. **decode** the deltas of those anchors (:mod:`~course_lib.layers.box_coder`);
3. **clip** to the image's *window* from ``image_meta`` (the zero padding of the square holds
   nothing), or to ``image_shape`` when no ``image_meta`` is given;
4. **drop small boxes** (height or width under ``min_size`` pixels): their score becomes
   ``-inf`` so NMS never keeps them;
5. **NMS** at ``nms_threshold`` (0.7) **within each level** (``per_level_nms=True``, the
   default): a P2 proposal never suppresses a P4 one. FPN's paper does not spell this step
   out; its reference implementations do it this way (torchvision's ``batched_nms`` with the
   level as the group, detectron2's ``find_top_rpn_proposals``), in training and inference.
   ``per_level_nms=False`` runs one NMS over the candidates of all levels together
   (notebook 06 compares the two). One fixed-shape NMS does both: shifting each level's
   boxes by ``level × (image side + 1)`` pixels makes boxes of different levels disjoint
   (:func:`course_lib.ops.nms.batched_padded_nms`);
6. **top-N after NMS**: the ``post_nms_top_n`` best survivors of all levels by score, padded
   with zero rows.

Proposals carry **no gradient** (``stop_gradient``, as torchvision and detectron2 detach them):
the head losses must not push the RPN's deltas; only the RPN losses train the RPN.
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

#: Score given to candidates that must never be kept (dropped small boxes, padding).
DROPPED = -1e9


def _level_slices(n_anchors: int, level_counts):
    if level_counts is None:
        return [(0, n_anchors)]
    counts = [int(c) for c in level_counts]
    if sum(counts) != n_anchors:
        raise ValueError(f"level_counts {counts} sum to {sum(counts)} but there are {n_anchors} "
                         "anchors; pass AnchorGenerator.level_counts(image_shape).")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return [(int(s), int(s + c)) for s, c in zip(starts, counts, strict=True)]


def proposals_np(logits, deltas, anchors, image_shape, *, pre_nms_top_k: int = 6000,
                 post_nms_top_n: int = 1000, nms_threshold: float = 0.7, level_counts=None,
                 window=None, min_size: float = 0.0, per_level_nms: bool = True,
                 return_index: bool = False):
    """Proposals of one image (NumPy reference of :class:`ProposalLayer`).

    Args:
        logits: ``(A,)`` objectness logits; deltas: ``(A, 4)``; anchors: ``(A, 4)``.
        image_shape: ``(H, W[, C])`` to clip to when ``window`` is ``None``.
        pre_nms_top_k: best anchors kept (per level when ``level_counts`` is given).
        level_counts: anchors per level, or ``None`` for one pool.
        window: ``(y1, x1, y2, x2)`` to clip to instead of the image.
        min_size: drop boxes with height or width below this (pixels).
        per_level_nms: NMS within each level, then the best ``post_nms_top_n`` of all levels
            (``False``: one NMS over all levels). The same without ``level_counts``.
        return_index: also return each proposal's anchor index (which level it came from).

    Returns:
        ``(boxes (K, 4), scores (K,))``, ``K <= post_nms_top_n``, best first; scores are
        sigmoid probabilities; with ``return_index``, ``(boxes, scores, anchor_index (K,))``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    deltas = np.asarray(deltas, np.float64).reshape(-1, 4)
    anchors = np.asarray(anchors, np.float64).reshape(-1, 4)
    picked, level = [], []
    for i, (start, end) in enumerate(_level_slices(len(logits), level_counts)):
        order = np.argsort(-logits[start:end], kind="stable")[:pre_nms_top_k] + start
        picked.append(order)
        level.append(np.full(len(order), i))
    order, level = np.concatenate(picked), np.concatenate(level)
    boxes = box_ops.decode(deltas[order], anchors[order])
    boxes = box_ops.clip(boxes, image_shape) if window is None else clip_to_window_np(boxes,
                                                                                       window)
    scores = logits[order]
    big = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    boxes, scores, level, order = boxes[big], scores[big], level[big], order[big]
    if per_level_nms:   # each level on its own, then the best survivors of all levels
        keep = np.concatenate([np.flatnonzero(level == i)[nms(boxes[level == i],
                                                              scores[level == i],
                                                              nms_threshold)]
                               for i in np.unique(level)] or [np.zeros(0, int)])
        keep = keep[np.argsort(-scores[keep], kind="stable")][:post_nms_top_n]
    else:
        keep = nms(boxes, scores, nms_threshold, post_nms_top_n)
    out = boxes[keep], 1.0 / (1.0 + np.exp(-scores[keep]))
    return (*out, order[keep]) if return_index else out


@keras.saving.register_keras_serializable(package="course_lib")
class ProposalLayer(keras.layers.Layer):
    """RPN outputs -> a fixed number of proposals per image (steps in the module docstring).

    Args:
        image_shape: ``(H, W)`` of the model's input, to clip to when no ``image_meta`` is given.
        pre_nms_top_k: best anchors kept before NMS (per level with ``level_counts``).
        post_nms_top_n: proposals kept after NMS (FPN: 2000 training, 1000 inference).
        nms_threshold: IoU above which a lower-scored proposal is dropped (0.7).
        level_counts: anchors per pyramid level (``AnchorGenerator.level_counts``) or ``None``.
        min_size: minimum box height and width in pixels (0 keeps all).
        per_level_nms: suppress within each level (default, as torchvision and detectron2)
            or, ``False``, across all levels at once.

    Call:
        ``[logits (B, A), deltas (B, A, 4), anchors (A, 4)]`` or the same plus
        ``image_meta (B, 7)`` (then boxes are clipped to each image's window).

    Returns:
        ``(boxes, scores, valid)``: ``(B, N, 4)`` pixel-edge boxes best first, ``(B, N)``
        sigmoid scores, ``(B, N)`` bool (False rows are padding, zeros), ``N = post_nms_top_n``;
        all without gradient.

    Taught in notebooks/06_anchors_and_rpn.
    """

    def __init__(self, image_shape, pre_nms_top_k: int = 6000, post_nms_top_n: int = 1000,
                 nms_threshold: float = 0.7, *, level_counts=None, min_size: float = 0.0,
                 per_level_nms: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(s) for s in image_shape)[:2]
        self.pre_nms_top_k = int(pre_nms_top_k)
        self.post_nms_top_n = int(post_nms_top_n)
        self.nms_threshold = float(nms_threshold)
        self.level_counts = None if level_counts is None else [int(c) for c in level_counts]
        self.min_size = float(min_size)
        self.per_level_nms = bool(per_level_nms)

    def call(self, inputs):
        logits, deltas, anchors = inputs[:3]
        image_meta = inputs[3] if len(inputs) > 3 else None
        logits = ops.stop_gradient(ops.cast(logits, "float32"))
        deltas = ops.stop_gradient(ops.cast(deltas, "float32"))
        anchors = ops.convert_to_tensor(anchors, "float32")
        top_logits, top_deltas, top_anchors, shifts = [], [], [], []
        # shifting level i's boxes by i·(side + 1) px keeps levels apart in one NMS
        side = float(max(self.image_shape)) + 1.0
        for i, (start, end) in enumerate(_level_slices(int(logits.shape[1]),
                                                       self.level_counts)):
            k = min(self.pre_nms_top_k, end - start)
            shifts.append(np.full(k, i * side if self.per_level_nms else 0.0, "float32"))
            values, idx = ops.top_k(logits[:, start:end], k=k, sorted=True)    # (B, k)
            idx = ops.cast(idx, "int32")
            top_logits.append(values)
            top_deltas.append(gather_rows(deltas[:, start:end], idx))
            top_anchors.append(ops.take(anchors[start:end], idx, axis=0))
        top_logits = ops.concatenate(top_logits, axis=1)
        boxes = box_ops.decode_ops(ops.concatenate(top_deltas, axis=1),
                                   ops.concatenate(top_anchors, axis=1))
        if image_meta is None:
            boxes = box_ops.clip_ops(boxes, self.image_shape)
        else:
            boxes = clip_to_window_ops(boxes, meta_window(image_meta))
        if self.min_size > 0:
            big = ((boxes[..., 2] - boxes[..., 0]) >= self.min_size) & \
                  ((boxes[..., 3] - boxes[..., 1]) >= self.min_size)
            top_logits = ops.where(big, top_logits, DROPPED)
        shifted = boxes + ops.convert_to_tensor(np.concatenate(shifts))[None, :, None]
        kept, _ = batched_padded_nms(shifted, top_logits, self.post_nms_top_n,
                                     self.nms_threshold, score_threshold=DROPPED / 2)
        valid = kept >= 0
        safe = ops.maximum(kept, 0)
        out_boxes = gather_rows(boxes, safe)
        out_boxes = ops.where(valid[..., None], out_boxes, 0.0)
        scores = ops.where(valid, ops.sigmoid(ops.take_along_axis(top_logits, safe, axis=1)), 0.0)
        return ops.stop_gradient(out_boxes), ops.stop_gradient(scores), valid

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        n = self.post_nms_top_n
        return (batch, n, 4), (batch, n), (batch, n)

    def get_config(self):
        return {**super().get_config(), "image_shape": self.image_shape,
                "pre_nms_top_k": self.pre_nms_top_k, "post_nms_top_n": self.post_nms_top_n,
                "nms_threshold": self.nms_threshold, "level_counts": self.level_counts,
                "min_size": self.min_size, "per_level_nms": self.per_level_nms}

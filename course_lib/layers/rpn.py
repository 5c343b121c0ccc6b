"""The region proposal network: a head that scores and refines anchors, its training targets,
and the layer that turns its outputs into proposals.

Taught in notebooks/06_anchors_and_rpn.

Pieces, each a NumPy reference beside a ``keras.ops`` layer (fixed shapes throughout):

- :class:`RPNHead`: a shared 3×3 conv (ReLU) then two 1×1 convs per pyramid level, the *same
  weights on every level*: ``k`` objectness logits and ``4k`` deltas per cell (``k`` anchors
  per cell). Outputs are flattened in the anchor order of :mod:`course_lib.ops.anchors`.
- :class:`AnchorTargets` / :func:`anchor_targets_np`: label anchors 1 (object), 0 (background)
  or -1 (ignored) and give the deltas a positive anchor should predict.
- :class:`ProposalLayer` / :func:`proposals_np`: top-k by score, decode, clip, NMS, keep N.

Anchors are passed *as an input* (the ``(A, 4)`` constant from
:func:`course_lib.ops.anchors.pyramid_anchors`), so the layers hold no image-size state beyond
what their config says and serialise with ``get_config``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from course_lib.ops import boxes as box_ops
from course_lib.ops.nms import batched_padded_nms, nms

#: Anchors within this IoU of an object's best IoU count as tied for best. Symmetric anchors
#: often tie exactly; float32 (model) and float64 (reference) rounding would break such ties
#: differently, so the rule is stated with a tolerance both can meet (the first tied anchor wins).
BEST_IOU_TOLERANCE = 1e-5


# ------------------------------------------------------------------------------ RPN head

@keras.saving.register_keras_serializable(package="course_lib")
class RPNHead(keras.layers.Layer):
    """RPN head shared over pyramid levels.

    Args:
        anchors_per_location: ``k`` = len(scales per level) * len(ratios).
        channels: filters of the shared 3×3 conv (256 in FPN).

    Call:
        ``features``: one ``(B, H, W, C)`` tensor or a list of them (P2..P6), all with ``C``
        channels.

    Returns:
        ``(logits, deltas)``: ``(B, A)`` objectness logits (sigmoid gives P(object)) and
        ``(B, A, 4)`` deltas, ``A = sum(H * W * k)`` over levels, level by level, each level in
        (row, column, anchor) order: the order of ``pyramid_anchors``.

    Taught in notebooks/06_anchors_and_rpn.
    """

    def __init__(self, anchors_per_location: int = 3, channels: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.anchors_per_location = int(anchors_per_location)
        self.channels = int(channels)
        self.shared = keras.layers.Conv2D(self.channels, 3, padding="same", activation="relu",
                                          name="rpn_conv_shared")
        self.objectness = keras.layers.Conv2D(self.anchors_per_location, 1, name="rpn_class_logits")
        self.box = keras.layers.Conv2D(4 * self.anchors_per_location, 1, name="rpn_bbox")

    def build(self, input_shape):
        # One feature shape (B, H, W, C) or a list of them; every level has the same C.
        shape = input_shape[0] if isinstance(input_shape[0], (list, tuple)) else input_shape
        self.shared.build(shape)
        hidden = tuple(shape[:-1]) + (self.channels,)
        self.objectness.build(hidden)
        self.box.build(hidden)

    def call(self, features):
        if not isinstance(features, (list, tuple)):
            features = [features]
        logits, deltas = [], []
        for f in features:
            h = self.shared(f)
            batch = ops.shape(f)[0]
            logits.append(ops.reshape(self.objectness(h), (batch, -1)))
            deltas.append(ops.reshape(self.box(h), (batch, -1, 4)))
        return ops.concatenate(logits, axis=1), ops.concatenate(deltas, axis=1)

    def compute_output_shape(self, input_shape):
        shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
        total = 0
        for s in shapes:
            if s[1] is None or s[2] is None:
                total = None
                break
            total += s[1] * s[2] * self.anchors_per_location
        batch = shapes[0][0]
        return (batch, total), (batch, total, 4)

    def get_config(self):
        return {**super().get_config(), "anchors_per_location": self.anchors_per_location,
                "channels": self.channels}


# ------------------------------------------------------------------------ anchor targets

def match_anchors_np(anchors, gt_boxes, gt_valid=None, positive_iou: float = 0.7,
                     negative_iou: float = 0.3):
    """Label every anchor before sampling (NumPy reference, one image).

    Rules (Faster R-CNN): IoU >= ``positive_iou`` with some gt box -> 1; max IoU <=
    ``negative_iou`` -> 0; otherwise -1 (ignored). Then, so every gt box gets an anchor, the
    anchor with the highest IoU for each valid gt box (IoU > 0) -> 1: one anchor per box, the
    lowest-indexed one among those within :data:`BEST_IOU_TOLERANCE` of the best, so float32
    and float64 pick the same one. (torchvision's low-quality matching keeps every tie
    instead; with anchors much larger than a box that makes every anchor containing it
    positive.)
    Each anchor is matched to the gt box it overlaps most.

    Args:
        anchors: ``(A, 4)``.
        gt_boxes: ``(G, 4)``, possibly padded.
        gt_valid: ``(G,)`` bool, ``False`` for padding rows (default: all valid).

    Returns:
        ``(labels (A,) int32, matched (A,) int64 gt index, max_iou (A,))``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    valid = np.ones(len(gt_boxes), bool) if gt_valid is None else np.asarray(gt_valid, bool)
    if valid.shape != (len(gt_boxes),):
        raise ValueError(f"gt_valid has shape {valid.shape}; expected ({len(gt_boxes)},), one "
                         "flag per gt box.")
    overlaps = np.where(valid[None, :], box_ops.iou(anchors, gt_boxes), -1.0)
    if overlaps.shape[1] == 0:
        overlaps = np.full((len(anchors), 1), -1.0)
        valid = np.zeros(1, bool)
    matched = np.argmax(overlaps, axis=1)
    max_iou = overlaps.max(axis=1)
    labels = np.where(max_iou >= positive_iou, 1, np.where(max_iou <= negative_iou, 0, -1))
    # One anchor per gt box: the first (lowest index) within the tolerance of its best IoU.
    # Counting every tie instead would, for a box much smaller than the anchors, make every
    # anchor that contains it positive (they all have the same IoU).
    best = overlaps.max(axis=0)                                              # (G,)
    first = (overlaps >= best[None, :] - BEST_IOU_TOLERANCE).argmax(axis=0)  # (G,)
    labels = labels.astype(np.int32)
    labels[first[valid & (best > 0)]] = 1
    return labels, matched, max_iou


def anchor_targets_np(anchors, gt_boxes, gt_valid=None, positive_iou: float = 0.7,
                      negative_iou: float = 0.3, samples: int | None = 256,
                      positive_fraction: float = 0.5, rng=None):
    """RPN training targets for one image (NumPy reference).

    Args:
        anchors: ``(A, 4)`` anchors.
        gt_boxes: ``(G, 4)`` ground-truth boxes (may be padded; see ``gt_valid``).
        gt_valid: ``(G,)`` bool validity mask.
        positive_iou / negative_iou: the matching thresholds (see :func:`match_anchors_np`).
        samples: anchors per image that count in the loss (256); at most
            ``positive_fraction`` of them positive, the rest negative, picked at random.
            ``None`` keeps every labelled anchor.
        rng: ``numpy.random.Generator`` for the sampling.

    Returns:
        ``(labels, deltas)``: ``(A,)`` int32 in {1, 0, -1} and ``(A, 4)`` float deltas
        (``encode(matched gt, anchor)`` for positives, zeros elsewhere).

    Taught in notebooks/06_anchors_and_rpn.
    """
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    labels, matched, _ = match_anchors_np(anchors, gt_boxes, gt_valid, positive_iou,
                                          negative_iou)
    if samples is not None:
        rng = np.random.default_rng() if rng is None else rng
        pos = np.flatnonzero(labels == 1)
        max_pos = int(samples * positive_fraction)
        if len(pos) > max_pos:
            labels[rng.choice(pos, len(pos) - max_pos, replace=False)] = -1
        n_neg = samples - int((labels == 1).sum())
        neg = np.flatnonzero(labels == 0)
        if len(neg) > n_neg:
            labels[rng.choice(neg, len(neg) - n_neg, replace=False)] = -1
    deltas = np.zeros((len(anchors), 4))
    pos = labels == 1
    if pos.any():
        deltas[pos] = box_ops.encode(gt_boxes[matched[pos]], anchors[pos])
    return labels, deltas


def _kth_largest_threshold(keys, k, static_k):
    """Per row, the ``k``-th largest key (``k`` dynamic, ``1 <= k <= static_k``)."""
    values, _ = ops.top_k(keys, k=static_k, sorted=True)                     # (B, static_k)
    index = ops.clip(k - 1, 0, static_k - 1)
    return ops.take_along_axis(values, ops.expand_dims(index, -1), axis=1)   # (B, 1)


def anchor_targets_ops(anchors, gt_boxes, gt_valid, positive_iou: float = 0.7,
                       negative_iou: float = 0.3, samples: int | None = 256,
                       positive_fraction: float = 0.5, seed=None):
    """``keras.ops`` twin of :func:`anchor_targets_np`, batched and fixed-shape.

    Args:
        anchors: ``(A, 4)``; gt_boxes: ``(B, G, 4)``; gt_valid: ``(B, G)`` bool.
        seed: an int or ``keras.random.SeedGenerator`` for the sampling.

    Returns:
        ``(labels (B, A) int32, deltas (B, A, 4) float32)``.

    Sampling without shapes that depend on the data: every anchor gets a uniform random key;
    positives whose key is among the ``max_pos`` largest positive keys stay, then negatives
    whose key is among the ``samples - n_pos`` largest negative keys.

    Taught in notebooks/06_anchors_and_rpn.
    """
    anchors = ops.convert_to_tensor(anchors, dtype="float32")
    gt_boxes = ops.convert_to_tensor(gt_boxes, dtype="float32")
    valid = ops.cast(gt_valid, "bool")
    overlaps = box_ops.iou_ops(anchors[None], gt_boxes)                       # (B, A, G)
    overlaps = ops.where(valid[:, None, :], overlaps, -1.0)
    matched = ops.argmax(overlaps, axis=2)                                     # (B, A)
    max_iou = ops.max(overlaps, axis=2)
    labels = ops.where(max_iou >= positive_iou, 1, ops.where(max_iou <= negative_iou, 0, -1))
    best = ops.max(overlaps, axis=1, keepdims=True)                            # (B, 1, G)
    near_best = ops.cast(overlaps >= best - BEST_IOU_TOLERANCE, "int32")
    first = ops.argmax(near_best, axis=1)                                      # (B, G)
    keep = valid & (best[:, 0, :] > 0)
    anchor_ids = ops.arange(anchors.shape[0], dtype="int32")[None, :, None]
    is_best = ops.any((anchor_ids == ops.cast(first, "int32")[:, None, :]) & keep[:, None, :],
                      axis=2)                                                  # (B, A)
    labels = ops.cast(ops.where(is_best, 1, labels), "int32")

    if samples is not None:
        n_anchors = anchors.shape[0]
        max_pos = int(samples * positive_fraction)
        keys = keras.random.uniform(ops.shape(labels), seed=seed)
        pos = labels == 1
        pos_keys = ops.where(pos, keys, -1.0)
        k_pos = min(max_pos, n_anchors)
        threshold = _kth_largest_threshold(pos_keys, ops.full((ops.shape(labels)[0],), k_pos,
                                                              dtype="int32"), k_pos)
        keep_pos = pos & (pos_keys >= threshold)
        n_neg = samples - ops.sum(ops.cast(keep_pos, "int32"), axis=1)          # (B,)
        neg = labels == 0
        neg_keys = ops.where(neg, keys, -1.0)
        k_neg = min(samples, n_anchors)
        threshold = _kth_largest_threshold(neg_keys, n_neg, k_neg)
        keep_neg = neg & (neg_keys >= threshold)
        labels = ops.where(keep_pos, 1, ops.where(keep_neg, 0, -1))
        labels = ops.cast(labels, "int32")

    index = ops.expand_dims(ops.cast(matched, "int32"), -1) * ops.ones((1, 1, 4), "int32")
    matched_boxes = ops.take_along_axis(gt_boxes, index, axis=1)               # (B, A, 4)
    deltas = box_ops.encode_ops(matched_boxes, anchors[None])
    deltas = ops.where((labels == 1)[..., None], deltas, 0.0)
    return labels, deltas


@keras.saving.register_keras_serializable(package="course_lib")
class AnchorTargets(keras.layers.Layer):
    """Layer form of :func:`anchor_targets_ops` (no weights).

    Args:
        positive_iou, negative_iou, samples, positive_fraction: as in :func:`anchor_targets_np`.
        seed: int seed of the sampling (``None``: unseeded).

    Call:
        ``[anchors (A, 4), gt_boxes (B, G, 4), gt_valid (B, G)]``.

    Returns:
        ``(labels (B, A) int32 in {1, 0, -1}, deltas (B, A, 4))``.

    Taught in notebooks/06_anchors_and_rpn.
    """

    def __init__(self, positive_iou: float = 0.7, negative_iou: float = 0.3,
                 samples: int | None = 256, positive_fraction: float = 0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= negative_iou < positive_iou <= 1:
            raise ValueError(f"AnchorTargets: need 0 <= negative_iou < positive_iou <= 1; got "
                             f"{negative_iou}, {positive_iou}.")
        self.positive_iou = float(positive_iou)
        self.negative_iou = float(negative_iou)
        self.samples = None if samples is None else int(samples)
        self.positive_fraction = float(positive_fraction)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        anchors, gt_boxes, gt_valid = inputs
        return anchor_targets_ops(anchors, gt_boxes, gt_valid, self.positive_iou,
                                  self.negative_iou, self.samples, self.positive_fraction,
                                  seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        anchors, gt_boxes, _ = input_shape
        return (gt_boxes[0], anchors[0]), (gt_boxes[0], anchors[0], 4)

    def get_config(self):
        return {**super().get_config(), "positive_iou": self.positive_iou,
                "negative_iou": self.negative_iou, "samples": self.samples,
                "positive_fraction": self.positive_fraction, "seed": self.seed}


# ---------------------------------------------------------------------------- proposals

def proposals_np(logits, deltas, anchors, image_shape, pre_nms_top_k: int = 6000,
                 post_nms_top_n: int = 1000, nms_threshold: float = 0.7):
    """Proposals of one image (NumPy reference of :class:`ProposalLayer`).

    Args:
        logits: ``(A,)`` objectness logits; deltas: ``(A, 4)``; anchors: ``(A, 4)``.
        image_shape: ``(H, W[, C])`` to clip to.

    Returns:
        ``(boxes (K, 4), scores (K,))``, ``K <= post_nms_top_n``, best first; scores are
        sigmoid probabilities.

    Taught in notebooks/06_anchors_and_rpn.
    """
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    order = np.argsort(-logits, kind="stable")[:pre_nms_top_k]
    boxes = box_ops.clip(box_ops.decode(np.asarray(deltas)[order], np.asarray(anchors)[order]),
                         image_shape)
    keep = nms(boxes, logits[order], nms_threshold, post_nms_top_n)
    return boxes[keep], 1.0 / (1.0 + np.exp(-logits[order][keep]))


@keras.saving.register_keras_serializable(package="course_lib")
class ProposalLayer(keras.layers.Layer):
    """RPN outputs -> a fixed number of proposals per image.

    Args:
        image_shape: ``(H, W)`` of the model's input, to clip boxes to.
        pre_nms_top_k: best anchors kept before NMS (6000 training / 1000 per level at test
            in FPN; one number here).
        post_nms_top_n: proposals kept after NMS (2000 training, 1000 inference).
        nms_threshold: IoU above which a lower-scored proposal is dropped (0.7).

    Call:
        ``[logits (B, A), deltas (B, A, 4), anchors (A, 4)]``.

    Returns:
        ``(boxes, scores, valid)``: ``(B, N, 4)`` pixel-edge boxes best first, ``(B, N)``
        sigmoid scores, ``(B, N)`` bool (False rows are padding, zeros), ``N = post_nms_top_n``.

    Taught in notebooks/06_anchors_and_rpn.
    """

    def __init__(self, image_shape, pre_nms_top_k: int = 6000, post_nms_top_n: int = 1000,
                 nms_threshold: float = 0.7, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(s) for s in image_shape)[:2]
        self.pre_nms_top_k = int(pre_nms_top_k)
        self.post_nms_top_n = int(post_nms_top_n)
        self.nms_threshold = float(nms_threshold)

    def call(self, inputs):
        logits, deltas, anchors = inputs
        logits = ops.convert_to_tensor(logits, dtype="float32")
        n_anchors = logits.shape[1]
        k = n_anchors if n_anchors is not None and n_anchors < self.pre_nms_top_k \
            else self.pre_nms_top_k
        top_logits, idx = ops.top_k(logits, k=k, sorted=True)                     # (B, k)
        idx4 = ops.expand_dims(ops.cast(idx, "int32"), -1) * ops.ones((1, 1, 4), "int32")
        top_deltas = ops.take_along_axis(ops.convert_to_tensor(deltas, "float32"), idx4, axis=1)
        top_anchors = ops.take(ops.convert_to_tensor(anchors, "float32"), idx, axis=0)
        boxes = box_ops.clip_ops(box_ops.decode_ops(top_deltas, top_anchors), self.image_shape)
        kept, _ = batched_padded_nms(boxes, top_logits, self.post_nms_top_n, self.nms_threshold)
        valid = kept >= 0
        safe = ops.maximum(kept, 0)
        out_boxes = ops.take_along_axis(boxes, ops.expand_dims(safe, -1) * ops.ones((1, 1, 4),
                                                                                   "int32"), axis=1)
        out_boxes = ops.where(valid[..., None], out_boxes, 0.0)
        scores = ops.where(valid, ops.sigmoid(ops.take_along_axis(top_logits, safe, axis=1)), 0.0)
        return out_boxes, scores, valid

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        n = self.post_nms_top_n
        return (batch, n, 4), (batch, n), (batch, n)

    def get_config(self):
        return {**super().get_config(), "image_shape": self.image_shape,
                "pre_nms_top_k": self.pre_nms_top_k, "post_nms_top_n": self.post_nms_top_n,
                "nms_threshold": self.nms_threshold}

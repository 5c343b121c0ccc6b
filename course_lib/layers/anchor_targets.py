"""RPN training targets: which anchors count in the loss, and the deltas the positives should
predict. Built from the shared :mod:`~course_lib.layers.matcher` and
:mod:`~course_lib.layers.sampler`.

Taught in notebooks/06_anchors_and_rpn.

Two forms:

- *sampled* (:func:`rpn_targets_ops`, what the model uses): the ``R = 256`` sampled anchor
  indices per image, their labels and the deltas of the positives, ``(B, R, ...)`` tensors,
  so the loss never touches the other ~100k anchors;
- *dense* (:func:`anchor_targets_np` / :func:`anchor_targets_ops` / :class:`AnchorTargets`, the
  picture notebook 06 draws): a label per anchor, -1 for every anchor not sampled.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from course_lib.layers.matcher import BEST_IOU_TOLERANCE, match_np, match_ops  # noqa: F401
from course_lib.layers.sampler import gather_rows, sample_np, sample_ops
from course_lib.ops import boxes as box_ops


def match_anchors_np(anchors, gt_boxes, gt_valid=None, positive_iou: float = 0.7,
                     *, negative_iou: float = 0.3):
    """Label every anchor before sampling (NumPy reference, one image).

    IoU >= ``positive_iou`` -> 1; max IoU <= ``negative_iou`` -> 0; otherwise -1; then the best
    anchor of each valid gt box -> 1 (one per box, see :mod:`course_lib.layers.matcher`).

    Returns:
        ``(labels (A,) int32, matched (A,) int64 gt index, max_iou (A,))``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    return match_np(anchors, gt_boxes, gt_valid, positive_iou, negative_iou=negative_iou,
                    allow_low_quality=True)


def anchor_targets_np(anchors, gt_boxes, gt_valid=None, positive_iou: float = 0.7,
                      *, negative_iou: float = 0.3, samples: int | None = 256,
                      positive_fraction: float = 0.5, rng=None, ignore_boxes=None):
    """Dense RPN targets of one image (NumPy reference).

    Args:
        anchors: ``(A, 4)``; gt_boxes: ``(G, 4)`` (may be padded, see ``gt_valid``).
        positive_iou / negative_iou: matching thresholds.
        samples: anchors per image that count in the loss (256), at most
            ``positive_fraction`` positive, picked at random (:func:`~course_lib.layers.sampler.
            sample_np`); ``None`` keeps every labelled anchor.
        rng: ``numpy.random.Generator`` for the sampling.
        ignore_boxes: ``(I, 4)`` ignore regions (see the matcher).

    Returns:
        ``(labels (A,) int32 in {1, 0, -1}, deltas (A, 4))``: deltas ``encode(matched gt,
        anchor)`` for positives, zeros elsewhere.

    Taught in notebooks/06_anchors_and_rpn.
    """
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    labels, matched, _ = match_np(anchors, gt_boxes, gt_valid, positive_iou,
                                  negative_iou=negative_iou,
                                  allow_low_quality=True, ignore_boxes=ignore_boxes)
    if samples is not None:
        idx, lab = sample_np(labels, samples, positive_fraction, rng=rng)
        labels = np.full(len(anchors), -1, np.int32)
        labels[idx[lab >= 0]] = lab[lab >= 0]
    deltas = np.zeros((len(anchors), 4))
    pos = labels == 1
    if pos.any():
        deltas[pos] = box_ops.encode(gt_boxes[matched[pos]], anchors[pos])
    return labels, deltas


def anchor_targets_ops(anchors, gt_boxes, gt_valid, positive_iou: float = 0.7,
                       *, negative_iou: float = 0.3, samples: int | None = 256,
                       positive_fraction: float = 0.5, seed=None, ignore_boxes=None,
                       ignore_valid=None):
    """Dense ``keras.ops`` twin of :func:`anchor_targets_np`, batched and fixed-shape.

    Args:
        anchors: ``(A, 4)``; gt_boxes: ``(B, G, 4)``; gt_valid: ``(B, G)`` bool.
        seed: an int or ``keras.random.SeedGenerator`` for the sampling.
        ignore_boxes, ignore_valid: ``(B, I, 4)`` and ``(B, I)`` or ``None``.

    Returns:
        ``(labels (B, A) int32, deltas (B, A, 4) float32)``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    anchors = ops.convert_to_tensor(anchors, dtype="float32")
    gt_boxes = ops.convert_to_tensor(gt_boxes, dtype="float32")
    labels, matched, _ = match_ops(anchors, gt_boxes, gt_valid, positive_iou,
                                   negative_iou=negative_iou,
                                   allow_low_quality=True, ignore_boxes=ignore_boxes,
                                   ignore_valid=ignore_valid)
    if samples is not None:
        idx, lab = sample_ops(labels, samples, positive_fraction, seed=seed)
        batch, a = ops.shape(labels)[0], labels.shape[1]
        rows = ops.arange(batch, dtype="int32")[:, None] + ops.zeros_like(idx)
        index = ops.reshape(ops.stack([rows, idx], axis=-1), (-1, 2))
        hits_pos = ops.scatter(index, ops.reshape(ops.cast(lab == 1, "int32"), (-1,)), (batch, a))
        hits_neg = ops.scatter(index, ops.reshape(ops.cast(lab == 0, "int32"), (-1,)), (batch, a))
        labels = ops.cast(ops.where(hits_pos > 0, 1, ops.where(hits_neg > 0, 0, -1)), "int32")
    matched_boxes = gather_rows(gt_boxes, matched)                             # (B, A, 4)
    deltas = box_ops.encode_ops(matched_boxes, anchors[None])
    deltas = ops.where((labels == 1)[..., None], deltas, 0.0)
    return labels, deltas


def rpn_targets_ops(anchors, gt_boxes, gt_valid, ignore_boxes=None, *, ignore_valid=None,
                    positive_iou: float = 0.7, negative_iou: float = 0.3, samples: int = 256,
                    positive_fraction: float = 0.5, seed=None, keys=None):
    """Sampled RPN targets (what the model's loss uses).

    Args:
        anchors: ``(A, 4)``; gt_boxes ``(B, G, 4)``; gt_valid ``(B, G)``; ignore regions as in
        :func:`~course_lib.layers.matcher.match_ops`; samples, positive_fraction: the sampler.
        keys: explicit sampler keys ``(B, A)`` (tests).

    Returns:
        dict: ``indices (B, R)`` int32 anchor index of each sampled slot, ``labels (B, R)``
        int32 (1, 0, or -1 for an empty slot), ``deltas (B, R, 4)`` target deltas (zeros
        except positives), ``anchors (B, R, 4)`` the sampled anchors.

    Taught in notebooks/06_anchors_and_rpn.
    """
    anchors = ops.convert_to_tensor(anchors, dtype="float32")
    gt_boxes = ops.convert_to_tensor(gt_boxes, dtype="float32")
    labels, matched, _ = match_ops(anchors, gt_boxes, gt_valid, positive_iou,
                                   negative_iou=negative_iou,
                                   allow_low_quality=True, ignore_boxes=ignore_boxes,
                                   ignore_valid=ignore_valid)
    idx, lab = sample_ops(labels, samples, positive_fraction, seed=seed, keys=keys)
    sampled_anchors = ops.take(anchors, idx, axis=0)                            # (B, R, 4)
    gt_index = ops.take_along_axis(matched, idx, axis=1)                        # (B, R)
    deltas = box_ops.encode_ops(gather_rows(gt_boxes, gt_index), sampled_anchors)
    deltas = ops.where((lab == 1)[..., None], deltas, 0.0)
    return {"indices": idx, "labels": lab, "deltas": deltas, "anchors": sampled_anchors}


@keras.saving.register_keras_serializable(package="course_lib")
class AnchorTargets(keras.layers.Layer):
    """Layer form of :func:`anchor_targets_ops` (dense labels; no weights).

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
                 samples: int | None = 256, positive_fraction: float = 0.5, *, seed=None, **kwargs):
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
                                  negative_iou=self.negative_iou, samples=self.samples,
                                  positive_fraction=self.positive_fraction,
                                  seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        anchors, gt_boxes, _ = input_shape
        return (gt_boxes[0], anchors[0]), (gt_boxes[0], anchors[0], 4)

    def get_config(self):
        return {**super().get_config(), "positive_iou": self.positive_iou,
                "negative_iou": self.negative_iou, "samples": self.samples,
                "positive_fraction": self.positive_fraction, "seed": self.seed}

"""Exercise checks of notebooks/08_heads_and_losses: the mask target of one RoI, the mask loss on
the ground-truth class only, one step of RoI sampling.

Taught in notebooks/08_heads_and_losses.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.exercises.checking import Case, check_function, exact


def _square_mask(shape, y1, x1, y2, x2):
    mask = np.zeros(shape, bool)
    mask[y1:y2, x1:x2] = True
    return mask


def _disc_mask(shape, cy, cx, r):
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    return (rows + 0.5 - cy) ** 2 + (cols + 0.5 - cx) ** 2 <= r * r


_SQUARE = _square_mask((40, 40), 10, 10, 24, 24)          # a 14×14 square, box (10, 10, 24, 24)
_DISC = _disc_mask((48, 64), 22.0, 30.0, 13.0)             # a disc of radius 13 px
_EDGE = _square_mask((20, 20), 0, 5, 10, 15)               # touches the top border

MASK_TARGET_CASES = [
    Case("the RoI is exactly the square's box: every cell is inside -> all ones",
         (_SQUARE, np.array([10.0, 10.0, 24.0, 24.0]), 28)),
    Case("an RoI twice the square's size, centred on it: ones only in cells 7..20 of 28",
         (_SQUARE, np.array([3.0, 3.0, 31.0, 31.0]), 28)),
    Case("an RoI shifted off the object (IoU ~0.6): the mask sits in the RoI's frame, not the "
         "gt box's", (_SQUARE, np.array([13.5, 6.25, 27.5, 21.75]), 28)),
    Case("a disc, a tall fractional RoI, a 14×14 target",
         (_DISC, np.array([7.3, 20.1, 36.8, 41.6]), 14)),
    Case("an RoI at the image's top edge (outside the image reads 0)",
         (_EDGE, np.array([0.0, 4.0, 10.0, 16.0]), 28)),
]


def _mask_target_reference(gt_mask, roi, size):
    from course_lib.layers.roi_targets import mask_targets_np

    gt_mask = np.asarray(gt_mask)
    h, w = gt_mask.shape
    out = mask_targets_np(gt_mask[..., None], np.array([[0.0, 0.0, h, w]]),
                          np.asarray(roi, float)[None], np.array([0]), mask_shape=(size, size))
    return out[0]


def check_mask_target(fn: Callable) -> bool:
    """Check ``mask_target(gt_mask H×W bool, roi (4,), size) -> (size, size)`` 0/1 floats against
    :func:`course_lib.layers.roi_targets.mask_targets_np` (full-image frame).

    Taught in notebooks/08_heads_and_losses.
    """
    return check_function(
        fn, _mask_target_reference, MASK_TARGET_CASES, name="mask_target",
        hint="work in the RoI's frame: pad the mask with one row/column of zeros (so outside the "
             "image reads 0), shift the RoI by +1, RoIAlign it to size×size (aligned, 2×2 "
             "samples per cell, spatial scale 1), then threshold at >= 0.5 to get 0/1.",
    )


def _logits(seed, p, k, scale=3.0):
    return np.random.default_rng(seed).normal(0.0, scale, (p, 28, 28, k))


def _targets(seed, p):
    return (np.random.default_rng(seed).random((p, 28, 28)) < 0.4).astype(float)


_MIXED_LOGITS = np.zeros((2, 28, 28, 3))
_MIXED_LOGITS[..., 1] = 20.0        # class 1 says "object" everywhere, class 2 "background"
_MIXED_LOGITS[..., 2] = -20.0

MASK_LOSS_CASES = [
    Case("hand-worked: all logits 0 -> every pixel costs log 2 = 0.6931",
         (np.zeros((1, 28, 28, 2)), _targets(1, 1), np.array([1]))),
    Case("two RoIs of classes 1 and 2: only the gt class's channel counts (other channels are "
         "confident and wrong)",
         (_MIXED_LOGITS, np.ones((2, 28, 28)), np.array([1, 2]))),
    Case("three RoIs, three classes, random logits",
         (_logits(2, 3, 3), _targets(3, 3), np.array([2, 1, 2]))),
    Case("soft targets in [0, 1] (coverage) are allowed", (
        _logits(4, 2, 2), np.random.default_rng(5).random((2, 28, 28)), np.array([1, 1]))),
]


def _mask_loss_reference(mask_logits, mask_targets, class_ids):
    from keras import ops

    from course_lib import losses

    logits = np.asarray(mask_logits, np.float32)[None]
    positive = np.ones((1, len(class_ids)), bool)
    value = losses.mask_loss(logits, np.asarray(mask_targets, np.float32)[None],
                             np.asarray(class_ids, np.int32)[None], positive)
    return float(ops.convert_to_numpy(value))


def check_mask_loss(fn: Callable) -> bool:
    """Check ``mask_loss(mask_logits (P, h, w, K), mask_targets (P, h, w), class_ids (P,)) -> float``
    against :func:`course_lib.losses.mask_loss` (every RoI positive).

    Taught in notebooks/08_heads_and_losses.
    """
    return check_function(
        fn, _mask_loss_reference, MASK_LOSS_CASES, name="mask_loss",
        compare=lambda got, exp: None if np.isclose(float(got), exp, rtol=1e-4, atol=1e-5)
        else f"{float(got):.6f} instead of {exp:.6f}",
        hint="pick ONE channel per RoI, logits[i, :, :, class_ids[i]]; per pixel the binary "
             "cross-entropy max(x, 0) - x*z + log(1 + exp(-|x|)); average over pixels and RoIs. "
             "No softmax across classes, no other class's channel.",
    )


_PROPOSALS = np.array([[0, 0, 10, 10], [0, 0, 10, 20], [30, 30, 40, 40], [1, 1, 11, 11],
                       [50, 50, 60, 60], [28, 32, 38, 42]], float)
_GT = np.array([[0.0, 0.0, 10.0, 10.0], [30.0, 30.0, 40.0, 40.0]])
_KEYS = np.array([0.9, 0.5, 0.2, 0.6, 0.7, 0.95, 0.1, 0.85])   # 6 proposals + 2 gt boxes

SAMPLE_ROIS_CASES = [
    Case("8 slots, at most 2 positive: IoU exactly 0.5 is positive; the gt boxes join the "
         "candidates (indices 6 and 7)", (_PROPOSALS, _GT, np.array([1, 2]), 8, 0.25, _KEYS)),
    Case("4 slots, at most 1 positive: the positive with the largest key wins",
         (_PROPOSALS, _GT, np.array([3, 1]), 4, 0.25, _KEYS)),
    Case("one positive (a gt box): negatives fill every slot the positives left free",
         (_PROPOSALS[[4, 5, 0, 1]], _GT[1:], np.array([2]), 4, 0.5,
          np.array([0.4, 0.8, 0.6, 0.2, 0.5]))),
    Case("more slots than candidates: use them all, positives first",
         (_PROPOSALS[:3], _GT[:1], np.array([1]), 16, 0.25, np.array([0.1, 0.2, 0.3, 0.4]))),
]


def _sample_rois_reference(proposals, gt_boxes, gt_class_ids, num_samples, positive_fraction,
                           keys):
    from course_lib.layers.matcher import match_np
    from course_lib.layers.sampler import sample_np

    candidates = np.concatenate([np.asarray(proposals, float), np.asarray(gt_boxes, float)])
    labels, matched, _ = match_np(candidates, gt_boxes, None, 0.5, negative_iou=0.5,
                                  allow_low_quality=False)
    idx, lab = sample_np(labels, num_samples, positive_fraction, keys=keys)
    keys = np.asarray(keys, float)
    pos = idx[lab == 1]
    neg = idx[lab == 0]
    neg = neg[np.argsort(-keys[neg], kind="stable")]          # the library interleaves; we sort
    indices = np.concatenate([pos, neg]).astype(np.int64)
    class_targets = np.concatenate([np.asarray(gt_class_ids)[matched[pos]],
                                    np.zeros(len(neg), int)]).astype(np.int64)
    return indices, class_targets


def _compare_pairs(got, expected):
    try:
        g_idx, g_cls = (np.asarray(v).astype(np.int64).reshape(-1) for v in got)
    except (TypeError, ValueError):
        return "return a pair (indices, class_targets)"
    e_idx, e_cls = expected
    if exact(g_idx, e_idx) is not None:
        return f"indices {g_idx.tolist()} instead of {e_idx.tolist()}"
    if exact(g_cls, e_cls) is not None:
        return f"class_targets {g_cls.tolist()} instead of {e_cls.tolist()}"
    return None


def check_sample_rois(fn: Callable) -> bool:
    """Check ``sample_rois(proposals, gt_boxes, gt_class_ids, num_samples, positive_fraction,
    keys) -> (indices, class_targets)``: the sampler of :mod:`course_lib.layers.sampler` with
    the gt boxes added and the matcher at IoU 0.5, sampled positives first then negatives, each
    in decreasing key order.

    Taught in notebooks/08_heads_and_losses.
    """
    return check_function(
        fn, _sample_rois_reference, SAMPLE_ROIS_CASES, name="sample_rois",
        compare=_compare_pairs,
        hint="candidates = proposals followed by the gt boxes; positive when the best IoU is "
             ">= 0.5; keep at most round(num_samples * positive_fraction) positives (largest "
             "keys first), then fill ALL remaining slots with negatives (largest keys first).",
    )

"""Exercise checks of notebooks/11_train_nuclei: one DSB precision from a model's output, the
model's overlapping masks turned into the non-overlapping label image a submission needs, and
the windows that let a 256-pixel detector see a large image at its own scale.

Taught in notebooks/11_train_nuclei.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.exercises.checking import Case, check_function, exact


def _squares(shape, boxes) -> np.ndarray:
    """``H×W×N`` bool masks, one filled box ``(y1, x1, y2, x2)`` each (end exclusive)."""
    masks = np.zeros(tuple(shape) + (len(boxes),), bool)
    for k, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, k] = True
    return masks


def _labels(shape, boxes) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    for k, (y1, x1, y2, x2) in enumerate(boxes, start=1):
        labels[y1:y2, x1:x2] = k
    return labels


def _detections(shape, boxes, scores) -> dict:
    return {"masks": _squares(shape, boxes), "scores": np.asarray(scores, np.float32)}


# Two true 4×4 nuclei. Detections: nucleus 1 exactly (0.9); nucleus 2 shifted by two columns
# (IoU 8/24 = 1/3, score 0.8); a false one far away (0.7); a weak one on nucleus 2 (0.3).
_TRUE = _labels((12, 16), [(1, 1, 5, 5), (6, 8, 10, 12)])
_DET = _detections((12, 16), [(1, 1, 5, 5), (6, 10, 10, 14), (1, 10, 3, 12), (6, 8, 10, 12)],
                   [0.9, 0.8, 0.7, 0.3])

DSB_PRECISION_CASES = [
    Case("threshold 0.5, min score 0.5: 1 hit, 2 false, 1 missed -> 1/4", (_TRUE, _DET, 0.5)),
    Case("threshold 0.3: the shifted box (IoU 1/3) hits too -> 2/3", (_TRUE, _DET, 0.3)),
    Case("min score 0.25 lets the weak exact box in: 2 hits at 0.5, 2 false -> 2/4",
         (_TRUE, _DET, 0.5), {"min_score": 0.25}),
    Case("a score exactly at min_score is kept (>=)", (_TRUE, _DET, 0.5), {"min_score": 0.3}),
    Case("threshold 0.95 with an exact match: IoU 1 > 0.95", (_TRUE, _DET, 0.95)),
    Case("no detection at all: 0 hits, 2 missed -> 0",
         (_TRUE, _detections((12, 16), [], []), 0.5)),
    # Raw Mask R-CNN masks may overlap: two near-copies of nucleus 1 (IoU 1 and 12/16) both
    # clear 0.5, but one nucleus is one true positive; the copy is a false positive.
    Case("two overlapping detections on one nucleus: 1 hit, 1 false, 1 missed -> 1/3",
         (_TRUE, _detections((12, 16), [(1, 1, 5, 5), (1, 1, 4, 5)], [0.9, 0.8]), 0.5)),
]


def _dsb_precision_reference(true_labels, detections, threshold, min_score=0.5):
    from course_lib.metrics import iou_matrix, match_counts
    from course_lib.ops.masks import labels_to_masks

    keep = np.asarray(detections["scores"]) >= min_score
    iou = iou_matrix(labels_to_masks(true_labels),
                     np.asarray(detections["masks"], bool)[..., keep])
    tp, fp, fn = match_counts(iou, threshold)
    return tp / (tp + fp + fn) if tp + fp + fn else 1.0


def check_dsb_precision(fn: Callable) -> bool:
    """Check ``dsb_precision(true_labels, detections, threshold, min_score=0.5) -> float``.

    Taught in notebooks/11_train_nuclei.
    """
    return check_function(
        fn, _dsb_precision_reference, DSB_PRECISION_CASES, name="dsb_precision",
        hint="keep detections with score >= min_score; a pair hits when IoU > threshold "
             "(strictly); precision = TP / (TP + FP + FN).")


# Three overlapping boxes; scores not in index order, so "by index" and "by score" differ.
_OVERLAP_BOXES = [(0, 0, 6, 6), (3, 3, 9, 9), (2, 5, 5, 11)]

MASKS_TO_LABELS_CASES = [
    Case("three overlapping boxes, scores 0.6, 0.9, 0.75",
         (_squares((10, 12), _OVERLAP_BOXES), np.array([0.6, 0.9, 0.75]))),
    Case("the same boxes, scores reversed",
         (_squares((10, 12), _OVERLAP_BOXES), np.array([0.9, 0.6, 0.3]))),
    Case("a box hidden entirely under a better one gets no pixel",
         (_squares((6, 6), [(0, 0, 6, 6), (1, 1, 3, 3)]), np.array([0.8, 0.5]))),
    Case("no detection: all background", (np.zeros((4, 5, 0), bool), np.zeros(0))),
]


def _masks_to_labels_reference(masks, scores):
    from course_lib.ops.masks import masks_to_labels_by_score

    return masks_to_labels_by_score(masks, scores)


def check_masks_to_labels(fn: Callable) -> bool:
    """Check ``masks_to_labels(masks H×W×N, scores (N,)) -> H×W int32``: label ``k`` for the
    ``k``-th best score, each pixel to the best detection covering it.

    Taught in notebooks/11_train_nuclei.
    """
    return check_function(
        fn, _masks_to_labels_reference, MASKS_TO_LABELS_CASES, name="masks_to_labels",
        compare=lambda got, expected: exact(np.asarray(got, np.int64),
                                            np.asarray(expected, np.int64)),
        hint="sort by score, best first (np.argsort(-scores)); give the k-th best label k on "
             "the pixels that no better detection took.")


TILE_STARTS_CASES = [
    Case("an image as large as the window: one window at 0", (256, 256, 64)),
    Case("smaller than the window: still one (the detector pads it)", (100, 256, 64)),
    Case("520 px: three windows, spread evenly, the last ending at 520", (520, 256, 64)),
    Case("320 px: two windows sharing 192 px", (320, 256, 64)),
    Case("1344 px, overlap 64: seven windows", (1344, 256, 64)),
    Case("no overlap asked: 512 px is exactly two windows", (512, 256, 0)),
    Case("a wide overlap: 400 px with overlap 200 needs four windows", (400, 256, 200)),
]


def _tile_starts_reference(length, tile, overlap):
    from course_lib.models.tiled_detection import tile_starts

    return tile_starts(length, tile, overlap)


def check_tile_starts(fn: Callable) -> bool:
    """Check ``tile_starts(length, tile, overlap) -> list[int]``: the fewest windows of side
    ``tile`` covering ``[0, length)`` with neighbours sharing at least ``overlap`` pixels,
    spread evenly (rounded) from 0 to ``length - tile``.

    Taught in notebooks/11_train_nuclei.
    """
    return check_function(
        fn, _tile_starts_reference, TILE_STARTS_CASES, name="tile_starts",
        compare=lambda got, expected: exact([int(v) for v in got], expected),
        hint="one window when length <= tile; else n = ceil((length - overlap) / (tile - "
             "overlap)) windows, the k-th starting at round(k * (length - tile) / (n - 1)).")

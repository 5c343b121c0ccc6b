"""Exercise checks of notebooks/02_metrics: mask IoU, Kaggle run-length encoding, the DSB precision at one threshold.

Taught in notebooks/02_metrics.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.exercises.checking import Case, check_function, exact


def _two_squares(shift: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.zeros((10, 14), dtype=bool)
    b = np.zeros((10, 14), dtype=bool)
    a[2:8, 2:8] = True
    b[2:8, 2 + shift:8 + shift] = True
    return a, b


MASK_IOU_CASES = [
    Case("two 6x6 squares shifted by 3 columns: 18 / 54 = 1/3", _two_squares(3)),
    Case("identical masks: 1.0", _two_squares(0)),
    Case("disjoint masks: 0.0", _two_squares(7)),
    Case("a small mask inside a big one (4 px in 36 px: 4/36)",
         (_two_squares(0)[0], np.pad(np.ones((2, 2), bool), ((3, 5), (3, 9))))),
    Case("two empty masks: nothing to compare, 0.0 by convention (no division by zero)",
         (np.zeros((4, 4), bool), np.zeros((4, 4), bool))),
]


def check_mask_iou(fn: Callable) -> bool:
    """Check ``mask_iou(a, b) -> float`` against :func:`course_lib.metrics.mask_iou`.

    Taught in notebooks/02_metrics.
    """
    from course_lib import metrics

    return check_function(
        fn, metrics.mask_iou, MASK_IOU_CASES, name="mask_iou",
        hint="np.logical_and(a, b).sum() / np.logical_or(a, b).sum(), and return 0.0 when the "
             "union is empty.",
    )


RLE_CASES = [
    Case("the 3x3 mask of the chapter: '4 2 8 2'",
         (np.array([[0, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=bool),)),
    Case("a 2x3 mask whose run crosses from one column into the next (H != W)",
         (np.array([[1, 0, 1], [1, 1, 0]], dtype=bool),)),
    Case("an empty mask encodes as the empty string", (np.zeros((4, 5), dtype=bool),)),
    Case("a full 4x5 mask is one run: '1 20'", (np.ones((4, 5), dtype=bool),)),
    Case("a random 6x9 mask", (np.random.default_rng(2).random((6, 9)) > 0.5,)),
]


def check_rle_encode(fn: Callable) -> bool:
    """Check ``rle_encode(mask) -> str`` against :func:`course_lib.ops.masks.rle_encode`.

    Taught in notebooks/02_metrics.
    """
    from course_lib.ops import masks

    return check_function(
        fn, masks.rle_encode, RLE_CASES, name="rle_encode", compare=exact,
        hint="number pixels column by column (mask.T.ravel() or mask.ravel(order='F')), "
             "starting at 1; write each run as 'start length', separated by single spaces.",
    )


_IOU_2x3 = np.array([[0.9, 0.0, 0.0], [0.0, 0.55, 0.0]])

PRECISION_AT_CASES = [
    Case("2 true, 3 predicted, threshold 0.5: TP 2, FP 1, FN 0 -> 2/3", (_IOU_2x3, 0.5)),
    Case("threshold 0.55: 0.55 is not *above* 0.55, so TP 1, FP 2, FN 1 -> 1/4",
         (_IOU_2x3, 0.55)),
    Case("a split nucleus: IoU 0.6 and 0.4 with two predictions at 0.5 -> 1/2",
         (np.array([[0.6, 0.4]]), 0.5)),
    Case("three true objects, no predictions (shape (3, 0)) -> 0.0", (np.zeros((3, 0)), 0.5)),
    Case("nothing true and nothing predicted (shape (0, 0)) -> 1.0 by convention",
         (np.zeros((0, 0)), 0.5)),
]


def check_precision_at(fn: Callable) -> bool:
    """Check ``precision_at(iou, threshold) -> float`` against
    :func:`course_lib.metrics.precision_at`.

    Taught in notebooks/02_metrics.
    """
    from course_lib import metrics

    return check_function(
        fn, lambda iou, t: metrics.precision_at(iou, t), PRECISION_AT_CASES,
        name="precision_at",
        hint="hits = iou > threshold (strictly); TP = hits.sum(), FP = number of columns "
             "without a hit, FN = rows without one; return TP / (TP + FP + FN), and 1.0 when "
             "that total is 0.",
    )

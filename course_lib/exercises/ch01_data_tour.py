"""Exercise checks of notebooks/01_data_tour: masks, boxes and a flip.

Taught in notebooks/01_data_tour.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.exercises.checking import Case, check_function, exact


def _ring_mask() -> np.ndarray:
    """A 7×7 square ring (a nucleus mask with a hole), in a 10×10 frame."""
    m = np.zeros((10, 10), bool)
    m[1:8, 2:9] = True
    m[3:6, 4:7] = False
    return m


def _two_masks() -> np.ndarray:
    m = np.zeros((6, 8, 2), bool)
    m[1:3, 2:5, 0] = True           # rows 1-2, columns 2-4 -> box (1, 2, 3, 5)
    m[5, 7, 1] = True               # one pixel in the corner -> box (5, 7, 6, 8)
    return m


MASKS_TO_BOXES_CASES = [
    Case("two masks: a 2x3 block and one corner pixel", (_two_masks(),)),
    Case("one ring with a hole (the hole does not change the box)", (_ring_mask()[..., None],)),
    Case("an empty mask gives a row of zeros", (np.zeros((4, 4, 1), bool),)),
    Case("no masks at all: shape (H, W, 0) gives (0, 4)", (np.zeros((4, 4, 0), bool),)),
]


def check_masks_to_boxes(fn: Callable) -> bool:
    """Check ``masks_to_boxes(masks H×W×N) -> (N, 4)`` against :func:`course_lib.ops.masks.masks_to_boxes`.

    Taught in notebooks/01_data_tour.
    """
    from course_lib.ops import masks

    return check_function(
        fn, masks.masks_to_boxes, MASKS_TO_BOXES_CASES, name="masks_to_boxes",
        hint="a tight box in pixel edges is (rmin, cmin, rmax + 1, cmax + 1); np.any over "
             "columns tells which rows a mask touches; an empty mask stays (0, 0, 0, 0).",
    )


FLIP_BOXES_CASES = [
    Case("one box in a 10-pixel-wide image", (np.array([[1.0, 2.0, 4.0, 5.0]]), 10)),
    Case("a box touching the left edge ends at the right edge",
         (np.array([[0.0, 0.0, 3.0, 1.0]]), 8)),
    Case("several boxes, fractional edges",
         (np.array([[0.5, 1.5, 2.0, 3.0], [4.0, 0.0, 6.0, 7.0]]), 7)),
    Case("no boxes", (np.zeros((0, 4)), 5)),
]


def check_flip_boxes_left_right(fn: Callable) -> bool:
    """Check ``flip_boxes_left_right(boxes, width)`` against the augmentation library's.

    Taught in notebooks/01_data_tour.
    """
    from course_lib.data import augment

    return check_function(
        fn, augment.flip_boxes_left_right, FLIP_BOXES_CASES, name="flip_boxes_left_right",
        hint="a mirror sends the edge x to width - x, so the new x1 comes from the old x2 "
             "(and no -1: pixel edges, not pixel indices).",
    )


HAS_HOLE_CASES = [
    Case("a ring: background enclosed", (_ring_mask(),)),
    Case("a filled square", (np.pad(np.ones((4, 4), bool), 2),)),
    Case("a C shape: the gap opens to the outside, so no hole",
         (np.array([[1, 1, 1], [1, 0, 0], [1, 1, 1]], bool),)),
    Case("an empty mask", (np.zeros((5, 5), bool),)),
    Case("a ring touching the image border still encloses its hole",
         (np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], bool),)),
]


def check_has_hole(fn: Callable) -> bool:
    """Check ``has_hole(mask H×W) -> bool`` against :func:`course_lib.data.nuclei.has_hole`.

    Taught in notebooks/01_data_tour.
    """
    from course_lib.data import nuclei

    return check_function(
        fn, nuclei.has_hole, HAS_HOLE_CASES, name="has_hole", compare=exact,
        hint="fill the holes (scipy.ndimage.binary_fill_holes) and see whether any pixel was "
             "added; return a Python bool.",
    )

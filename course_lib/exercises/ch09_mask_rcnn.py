"""Exercise checks of notebooks/09_mask_rcnn: pasting a 28×28 mask back into the image.

Taught in notebooks/09_mask_rcnn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.exercises.checking import Case, check_function, exact

_LEFT_HALF = np.zeros((28, 28))
_LEFT_HALF[:, :14] = 1.0                       # left half of the box is object

_rows, _cols = np.mgrid[:28, :28]
_SOFT_DISC = np.clip(1.3 - np.hypot(_rows - 13.5, _cols - 13.5) / 11.0, 0.0, 1.0)  # soft edge

PASTE_MASK_CASES = [
    Case("a mask of ones fills exactly the pixels whose centres are in the box (rows 2..8, "
         "cols 3..6)", (np.ones((28, 28)), np.array([2.0, 3.0, 9.0, 7.0]), (12, 10))),
    Case("left half object, box 14 px wide: columns 0..6 (7 = half of 14)",
         (_LEFT_HALF, np.array([0.0, 0.0, 10.0, 14.0]), (10, 20))),
    Case("a soft disc at a fractional box: bilinear reads, then >= 0.5",
         (_SOFT_DISC, np.array([4.3, 6.7, 31.2, 25.9]), (40, 36))),
    Case("a box hanging over the image's corner: only pixels inside the image",
         (_SOFT_DISC, np.array([-6.0, 20.5, 14.0, 44.0]), (30, 32))),
    Case("a box much smaller than 28 px: the mask is shrunk", (
        _SOFT_DISC, np.array([10.0, 10.0, 17.0, 19.0]), (24, 24))),
]


def _paste_reference(mini_mask, box, image_shape):
    from course_lib.ops.masks import paste_mask

    return paste_mask(mini_mask, box, image_shape, threshold=0.5)


def check_paste_mask(fn: Callable) -> bool:
    """Check ``paste_mask(mini_mask h×w, box (4,), image_shape) -> H×W bool`` against
    :func:`course_lib.ops.masks.paste_mask` at threshold 0.5.

    Taught in notebooks/09_mask_rcnn.
    """
    return check_function(
        fn, _paste_reference, PASTE_MASK_CASES, name="paste_mask",
        compare=lambda got, exp: exact(np.asarray(got).astype(bool), exp),
        hint="only pixels whose CENTRE (r + 0.5, c + 0.5) lies in [y1, y2) × [x1, x2) get a value; "
             "pixel r reads the mini-mask at (r + 0.5 - y1) * h / (y2 - y1) - 0.5 (cell centres "
             "sit at integers), bilinearly, clamped to the mini-mask's edge rows/columns; then "
             ">= 0.5. Clip the rows and columns to the image.",
    )

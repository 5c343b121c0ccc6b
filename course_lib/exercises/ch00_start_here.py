"""Exercise checks of notebooks/00_start_here: the box convention.

Taught in notebooks/00_start_here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.exercises.checking import Case, check_function

BOX_AREA_CASES = [
    Case("one 2x3 box", (np.array([[0.0, 0.0, 2.0, 3.0]]),)),
    Case("a single-pixel box: pixel (5, 7) covers [5, 6) x [7, 8)",
         (np.array([[5.0, 7.0, 6.0, 8.0]]),)),
    Case("several boxes with fractional edges",
         (np.array([[0.5, 1.0, 4.0, 2.5], [10.0, 10.0, 30.0, 20.0], [1.0, 1.0, 1.0, 5.0]]),)),
    Case("no boxes at all: shape (0, 4) gives shape (0,)", (np.zeros((0, 4)),)),
]


def check_box_area(fn: Callable) -> bool:
    """Check a learner's ``box_area(boxes) -> (N,)`` against :func:`course_lib.ops.boxes.area`.

    Taught in notebooks/00_start_here.
    """
    from course_lib.ops import boxes

    return check_function(
        fn, boxes.area, BOX_AREA_CASES, name="box_area",
        hint="boxes are (y1, x1, y2, x2) in pixel edges, so height is y2 - y1 with no +1; "
             "work on whole columns (boxes[:, 2] - boxes[:, 0]) so N = 0 works too.",
    )

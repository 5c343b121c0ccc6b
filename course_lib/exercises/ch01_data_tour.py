"""Exercise checks of notebooks/01_data_tour: masks, boxes, a flip, holes and k-means on colour.

Taught in notebooks/01_data_tour.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.exercises.checking import Case, allclose, check_function, exact


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


def _blobs() -> np.ndarray:
    """Three well-separated 2-D groups of 20 points (seeded), as in the modality scatter plot."""
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [3.0, 0.5], [0.5, 4.0]])
    return np.concatenate([c + rng.normal(0, 0.4, (20, 2)) for c in centres])


def _colour_pixels() -> np.ndarray:
    """RGB colours in [0, 1] of a tiny H&E-like patch: pink tissue, purple nuclei, white gaps."""
    rng = np.random.default_rng(2)
    pink, purple, white = [0.93, 0.62, 0.78], [0.45, 0.20, 0.60], [0.97, 0.96, 0.97]
    return np.clip(np.concatenate([np.asarray(c) + rng.normal(0, 0.03, (n, 3)) for c, n in
                                   ((pink, 30), (purple, 12), (white, 8))]), 0, 1)


KMEANS_CASES = [
    Case("four numbers in 1-D, started from the first two: centres 0.5 and 10.5",
         (np.array([[0.0], [1.0], [10.0], [11.0]]), np.array([[0.0], [1.0]]))),
    Case("three groups in 2-D, started from one point of each",
         (_blobs(), _blobs()[[0, 20, 40]])),
    Case("three groups in 2-D, started badly (two centres in the same group)",
         (_blobs(), _blobs()[[0, 1, 40]])),
    Case("pixel colours (RGB) of an H&E-like patch: tissue, nuclei, background",
         (_colour_pixels(), _colour_pixels()[[0, 30, 42]])),
]


def _kmeans_reference(x, centres, iterations: int = 50):
    """SciPy's Lloyd iterations from the given centres (an empty cluster keeps its centre)."""
    import warnings

    from scipy.cluster.vq import kmeans2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # scipy warns when a cluster is empty; keep it quiet
        found, labels = kmeans2(np.asarray(x, float), np.asarray(centres, float), iter=iterations,
                                minit="matrix", missing="warn")
    return found, labels


def _compare_kmeans(got, expected) -> str | None:
    try:
        got_centres, got_labels = got
    except (TypeError, ValueError):
        return "return a pair (centres, labels)"
    exp_centres, exp_labels = expected
    got_labels = np.asarray(got_labels)
    if got_labels.shape != exp_labels.shape or not np.array_equal(got_labels, exp_labels):
        wrong = int((np.asarray(got_labels).reshape(-1)[: exp_labels.size] != exp_labels).sum()) \
            if got_labels.size == exp_labels.size else exp_labels.size
        return f"labels: {wrong} of {exp_labels.size} points in another cluster"
    reason = allclose(got_centres, exp_centres, atol=1e-6)
    return None if reason is None else f"centres: {reason}"


def check_kmeans(fn: Callable) -> bool:
    """Check ``kmeans(x (N, D), centres (k, D), iterations=50) -> (centres (k, D), labels (N,))``
    against SciPy's ``scipy.cluster.vq.kmeans2`` started from the same centres.

    Taught in notebooks/01_data_tour.
    """
    return check_function(
        fn, _kmeans_reference, KMEANS_CASES, name="kmeans", compare=_compare_kmeans,
        hint="repeat: labels = index of the nearest centre for each point (squared distances, "
             "argmin over k); each centre = mean of its points (keep it where it is when no "
             "point chose it); stop when nothing moves.",
    )

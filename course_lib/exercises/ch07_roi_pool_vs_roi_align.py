"""Exercise checks of notebooks/07_roi_pool_vs_roi_align: RoIPool of one box, bilinear sampling of
one point, RoIAlign of one box, FPN level.

Taught in notebooks/07_roi_pool_vs_roi_align.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.exercises.checking import Case, check_function, exact

_RAMP_4x4 = 10.0 * np.arange(4.0)[:, None] + np.arange(4.0)[None, :]   # value = 10*row + col
_SQUARES_5x6 = np.arange(5.0)[:, None] ** 2 + 3.0 * np.arange(6.0)[None, :]

ROI_POOL_BOX_CASES = [
    Case("hand-worked: box (0, 0, 4, 4) px at stride 1, 2×2 bins of 2×2 cells -> [[11, 13], [31, 33]]",
         (_RAMP_4x4, np.array([0.0, 0.0, 4.0, 4.0]), (2, 2), 1.0)),
    Case("edges round half-up: (0.6, 1.4, 3.5, 3.2) px -> rows [1, 4), cols [1, 3)",
         (_RAMP_4x4, np.array([0.6, 1.4, 3.5, 3.2]), (1, 1), 1.0)),
    Case("3 rows into 2 bins: floor/ceil make the bins share the middle row",
         (_SQUARES_5x6, np.array([1.0, 0.0, 4.0, 6.0]), (2, 3), 1.0)),
    Case("stride 2 (spatial_scale 0.5), a 2×2 output",
         (_SQUARES_5x6, np.array([1.0, 3.0, 9.0, 11.0]), (2, 2), 0.5)),
    Case("a box smaller than one cell still covers one cell",
         (_RAMP_4x4, np.array([1.2, 1.2, 1.4, 1.3]), (2, 2), 1.0)),
    Case("a box hanging off the map: bins with no cell inside give 0",
         (_RAMP_4x4, np.array([2.0, 2.0, 8.0, 8.0]), (2, 2), 1.0)),
]


def _roi_pool_box_reference(features, box, output_size, spatial_scale):
    from course_lib.ops import roi

    out = roi.roi_pool(np.asarray(features)[..., None], np.asarray(box)[None], output_size,
                       spatial_scale)
    return out[0, ..., 0]


def check_roi_pool_box(fn: Callable) -> bool:
    """Check ``roi_pool_box(features H×W, box, output_size, spatial_scale) -> (h, w)`` against
    :func:`course_lib.ops.roi.roi_pool`.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    return check_function(
        fn, _roi_pool_box_reference, ROI_POOL_BOX_CASES, name="roi_pool_box",
        hint="round each edge with floor(v * spatial_scale + 0.5) (at least one cell), split the "
             "rounded size into h bins: bin i covers start + floor(i * size / h) up to start + "
             "ceil((i + 1) * size / h); clip to the map; max per bin, 0 for an empty bin.",
    )


BILINEAR_POINT_CASES = [
    Case("a point between four cell centres of 10*row + col", (_RAMP_4x4, 1.25, 2.5)),
    Case("a point exactly on a cell centre", (_RAMP_4x4, 2.0, 1.0)),
    Case("a map that is not linear in the row (row**2 + 3*col)", (_SQUARES_5x6, 2.3, 4.6)),
    Case("on the last row: both row neighbours are row H-1", (_RAMP_4x4, 3.0, 0.5)),
    Case("in the band [-1, 0): clamped to row 0", (_RAMP_4x4, -0.5, 1.5)),
    Case("beyond -1: reads 0", (_RAMP_4x4, -1.5, 1.0)),
]


def _bilinear_point_reference(features, y, x):
    from course_lib.ops import roi

    return float(roi.bilinear_sample(np.asarray(features)[..., None], y, x)[0])


def check_bilinear_point(fn: Callable) -> bool:
    """Check ``bilinear_point(features H×W, y, x) -> float`` against ``roi.bilinear_sample``.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    return check_function(
        fn, _bilinear_point_reference, BILINEAR_POINT_CASES, name="bilinear_point",
        hint="cell (i, j)'s centre is the point (i, j): y0 = floor(y), ly = y - y0, weights "
             "(1-ly)(1-lx), (1-ly)lx, ly(1-lx), ly*lx. First: a point with y < -1 or y > H (or "
             "x < -1 or x > W) is 0; otherwise clamp y into [0, H-1] and use min(y0 + 1, H-1).",
    )


ROI_ALIGN_BOX_CASES = [
    Case("hand-worked: box (1, 1, 3, 3) px, stride 1, 2×2 bins, 2×2 samples -> [[11, 12], [21, 22]]",
         (_RAMP_4x4, np.array([1.0, 1.0, 3.0, 3.0]), (2, 2), 1.0, 2)),
    Case("stride 2 (spatial_scale 0.5), a 1×2 output, one sample per bin",
         (_RAMP_4x4, np.array([0.0, 2.0, 4.0, 8.0]), (1, 2), 0.5, 1)),
    Case("fractional box on a non-linear map, 3×2 output, 3×3 samples",
         (_SQUARES_5x6, np.array([1.3, 0.7, 7.9, 9.2]), (3, 2), 0.5, 3)),
    Case("a box hanging over the top edge: some samples clamp, some read 0",
         (_RAMP_4x4, np.array([-2.0, 0.0, 0.0, 2.0]), (1, 1), 1.0, 2)),
]


def _roi_align_box_reference(features, box, output_size, spatial_scale, sampling_ratio):
    from course_lib.ops import roi

    out = roi.roi_align(np.asarray(features)[..., None], np.asarray(box)[None], output_size,
                        spatial_scale, sampling_ratio=sampling_ratio, aligned=True)
    return out[0, ..., 0]


def check_roi_align_box(fn: Callable) -> bool:
    """Check ``roi_align_box(features, box, output_size, spatial_scale, sampling_ratio)``.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    return check_function(
        fn, _roi_align_box_reference, ROI_ALIGN_BOX_CASES, name="roi_align_box",
        hint="start = y1 * spatial_scale - 0.5 (aligned), bin = (y2 - y1) * spatial_scale / h; "
             "sample a of bin i sits at start + (i + (a + 0.5) / sampling_ratio) * bin; read each "
             "point with your bilinear_point and average the sampling_ratio² points of a bin.",
    )


FPN_LEVEL_CASES = [
    Case("a 224×224 box goes to P4", (np.array([[0.0, 0.0, 224.0, 224.0]]),)),
    Case("112 -> P3, 448 -> P5, 112×448 (√(wh) = 224) -> P4",
         (np.array([[0, 0, 112, 112], [0, 0, 448, 448], [10, 10, 122, 458]], float),)),
    Case("just under 224 px stays on P3", (np.array([[0.0, 0.0, 223.0, 223.0]]),)),
    Case("tiny and huge boxes are clamped to P2 and P5",
         (np.array([[5, 5, 7, 8], [0, 0, 3000, 2000], [4, 4, 4, 9]], float),)),
]


def _fpn_level_reference(boxes):
    from course_lib.ops import roi

    return roi.fpn_level(boxes)


def check_fpn_level(fn: Callable) -> bool:
    """Check ``fpn_level(boxes) -> (N,) ints`` against ``roi.fpn_level`` (P2–P5).

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    return check_function(
        fn, _fpn_level_reference, FPN_LEVEL_CASES, name="fpn_level",
        compare=lambda got, exp: exact(np.asarray(got).astype(np.int64), exp),
        hint="k = floor(4 + log2(sqrt(h * w) / 224)), then clip to [2, 5]; an empty box has "
             "log2(0) = -inf, which the clip also handles (add a tiny 1e-6 inside the log so "
             "224 lands on exactly 4).",
    )

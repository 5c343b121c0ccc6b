"""Check functions that exercise notebooks call on a learner's code.

Taught in notebooks/00_start_here (how to do an exercise).

Every check runs the learner's function and the library's reference on several cases and
prints a friendly verdict: all cases passed, or the *first* failing case with what was
expected, what came back and a hint. A failing check raises :class:`ExerciseFailed` (an
``AssertionError``), so a notebook run stops there, as a failing test would.

Chapter checks are small wrappers around :func:`check_function`::

    def check_box_area(fn):
        return check_function(fn, boxes.area, BOX_AREA_CASES, name="box_area", hint="...")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class ExerciseFailed(AssertionError):
    """Raised by a check when the learner's function disagrees with the reference.

    Taught in notebooks/00_start_here.
    """


@dataclass(frozen=True)
class Case:
    """One input to try.

    Attributes:
        description: shown to the learner when this case fails ("two identical boxes").
        args: positional arguments, passed to both the learner's function and the reference.
        kwargs: keyword arguments, likewise.

    Taught in notebooks/00_start_here.
    """

    description: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


def _short(value: Any, limit: int = 300) -> str:
    """A compact, readable rendering of a value for a verdict."""
    if isinstance(value, np.ndarray):
        with np.printoptions(precision=4, suppress=True, threshold=40, edgeitems=3):
            text = f"array(shape={value.shape}, dtype={value.dtype}):\n{value}"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def allclose(got: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-5) -> str | None:
    """Default comparison: same shape and values within tolerance.

    Returns ``None`` when they agree, else a sentence saying how they differ.

    Taught in notebooks/00_start_here.
    """
    try:
        got_arr = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return f"could not read the result as numbers (got type {type(got).__name__})"
    exp_arr = np.asarray(expected, dtype=float)
    if got_arr.shape != exp_arr.shape:
        return f"shape {got_arr.shape} instead of {exp_arr.shape}"
    if not np.allclose(got_arr, exp_arr, atol=atol, rtol=rtol, equal_nan=True):
        worst = np.unravel_index(np.nanargmax(np.abs(got_arr - exp_arr)), exp_arr.shape) \
            if exp_arr.ndim else ()
        return f"values differ (largest difference at index {tuple(int(i) for i in worst)})"
    return None


def exact(got: Any, expected: Any) -> str | None:
    """Comparison for strings, ints and index lists: must be equal.

    Taught in notebooks/00_start_here.
    """
    if isinstance(expected, np.ndarray) or isinstance(got, np.ndarray):
        g, e = np.asarray(got), np.asarray(expected)
        if g.shape != e.shape or not np.array_equal(g, e):
            return "not equal"
        return None
    return None if got == expected else "not equal"


def check_function(
    learner_fn: Callable,
    reference_fn: Callable,
    cases: Sequence[Case],
    *,
    name: str,
    compare: Callable[[Any, Any], str | None] = allclose,
    hint: str = "",
) -> bool:
    """Run ``learner_fn`` and ``reference_fn`` on every case; print a verdict.

    Args:
        learner_fn: the learner's function.
        reference_fn: the library function it should agree with.
        cases: inputs to try, in order; the first failure is reported.
        name: the exercise's name, as the learner sees it.
        compare: ``compare(got, expected)`` returns ``None`` or a reason they differ.
        hint: one sentence pointing at the usual mistake.

    Returns:
        ``True`` when every case passes.

    Raises:
        NotImplementedError: the learner has not written the function yet (re-raised
            after a friendly line).
        ExerciseFailed: a case disagrees, or the learner's function raised.

    Taught in notebooks/00_start_here.
    """
    for i, case in enumerate(cases, start=1):
        expected = reference_fn(*_copy(case.args), **_copy(case.kwargs))
        try:
            got = learner_fn(*_copy(case.args), **_copy(case.kwargs))
        except NotImplementedError:
            print(f"✋ {name}: not written yet. Replace `raise NotImplementedError()` "
                  "with your code, run that cell, then run this check again.")
            raise
        except Exception as err:  # the learner's bug: show it as a failed case
            message = (f"✗ {name}: case {i}/{len(cases)} ({case.description}) raised "
                       f"{type(err).__name__}: {err}")
            print(message + (f"\n  Hint: {hint}" if hint else ""))
            raise ExerciseFailed(message) from err
        reason = compare(got, expected)
        if reason is not None:
            lines = [
                f"✗ {name}: case {i}/{len(cases)} failed: {case.description}",
                f"  inputs:   {_short(case.args)}",
                f"  expected: {_short(expected)}",
                f"  got:      {_short(got)}",
                f"  ({reason})",
            ]
            if hint:
                lines.append(f"  Hint: {hint}")
            print("\n".join(lines))
            raise ExerciseFailed(f"{name}: case {i} ({case.description}) failed: {reason}")
    print(f"✓ {name}: all {len(cases)} cases pass. Well done!")
    return True


def _copy(value: Any) -> Any:
    """Deep-ish copy so a function that writes into its inputs cannot spoil the next call."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------
# Chapter checks. Each chapter appends its own below, with the cases it tries.
# ---------------------------------------------------------------------------------------

# 00 start_here: the box convention ------------------------------------------------------

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


# 06 anchors_and_rpn: IoU, anchors of one level, delta encoding, NMS ---------------------

IOU_CASES = [
    Case("two 2x2 boxes overlapping in one pixel: IoU 1 / 7",
         (np.array([[0.0, 0.0, 2.0, 2.0]]), np.array([[1.0, 1.0, 3.0, 3.0]]))),
    Case("boxes that only touch along an edge: IoU 0",
         (np.array([[0.0, 0.0, 2.0, 2.0]]), np.array([[2.0, 0.0, 4.0, 2.0]]))),
    Case("2 boxes against 3 (the result is 2 x 3)",
         (np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 25.0]]),
          np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 5.0, 10.0, 15.0], [20.0, 20.0, 30.0, 30.0]]))),
    Case("no boxes on one side: shape (0, 2)",
         (np.zeros((0, 4)), np.array([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 2.0, 2.0]]))),
]


def check_iou(fn: Callable) -> bool:
    """Check a learner's ``iou(a, b) -> (N, M)`` against :func:`course_lib.ops.boxes.iou`.

    Taught in notebooks/06_anchors_and_rpn.
    """
    from course_lib.ops import boxes

    return check_function(
        fn, boxes.iou, IOU_CASES, name="iou",
        hint="broadcast a[:, None, :] against b[None, :, :]; clip the intersection's height and "
             "width at 0 before multiplying (disjoint boxes), and no +1 on sizes.",
    )


LEVEL_ANCHOR_CASES = [
    Case("one square anchor per cell on an 8x8 image, stride 4", ((8, 8), 4.0, (1.0,), 4)),
    Case("three ratios on a 16x8 image, stride 8: h = s / sqrt(r), w = s * sqrt(r)",
         ((16, 8), 16.0, (0.5, 1.0, 2.0), 8)),
    Case("an image size that is not a multiple of the stride (grid of ceil(H / stride))",
         ((10, 7), 8.0, (1.0, 2.0), 4)),
]


def check_level_anchors(fn: Callable) -> bool:
    """Check ``level_anchors(image_shape, scale, ratios, stride) -> (n, 4)`` against
    :func:`course_lib.ops.anchors.level_anchors`.

    Taught in notebooks/06_anchors_and_rpn.
    """
    from course_lib.ops import anchors

    return check_function(
        fn, anchors.level_anchors, LEVEL_ANCHOR_CASES, name="level_anchors",
        hint="centres are at (i + 0.5) * stride; loop order row, column, then ratio innermost; "
             "the grid has ceil(H / stride) rows.",
    )


ENCODE_CASES = [
    Case("a box equal to its anchor: all deltas 0",
         (np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([[0.0, 0.0, 10.0, 10.0]]))),
    Case("shifted by 1 px down on a 10-px anchor: dy = 1 / 10 / 0.1 = 1",
         (np.array([[1.0, 0.0, 11.0, 10.0]]), np.array([[0.0, 0.0, 10.0, 10.0]]))),
    Case("twice as tall, half as wide: log dh = log 2 / 0.2",
         (np.array([[-5.0, 2.5, 15.0, 7.5]]), np.array([[0.0, 0.0, 10.0, 10.0]]))),
    Case("several rows at once",
         (np.array([[2.0, 3.0, 30.0, 20.0], [0.0, 0.0, 4.0, 4.0]]),
          np.array([[0.0, 0.0, 32.0, 16.0], [1.0, 1.0, 5.0, 9.0]]))),
]


def check_encode(fn: Callable) -> bool:
    """Check ``encode(boxes, anchors) -> (N, 4)`` deltas against :func:`course_lib.ops.boxes.encode`.

    Taught in notebooks/06_anchors_and_rpn.
    """
    from course_lib.ops import boxes

    return check_function(
        fn, boxes.encode, ENCODE_CASES, name="encode",
        hint="use centres (y1 + y2) / 2 and sizes y2 - y1; dy = (cy - acy) / ah; dh = log(h / ah); "
             "then divide by (0.1, 0.1, 0.2, 0.2).",
    )


def _nms_scene(seed: int, n: int):
    rng = np.random.default_rng(seed)
    c = rng.uniform(0, 60, (n, 2))
    hw = rng.uniform(6, 30, (n, 2))
    return np.concatenate([c - hw / 2, c + hw / 2], 1), rng.random(n)


NMS_CASES = [
    Case("three boxes: the middle-scored one overlaps the best by 90 / 110",
         (np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 1.0, 10.0, 11.0], [0.0, 20.0, 10.0, 30.0]]),
          np.array([0.9, 0.8, 0.7]), 0.5)),
    Case("IoU exactly at the threshold is kept (suppress only when IoU > threshold)",
         (np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]]), np.array([0.6, 0.9]), 0.5)),
    Case("30 random boxes at threshold 0.3", (*_nms_scene(0, 30), 0.3)),
    Case("no boxes at all", (np.zeros((0, 4)), np.zeros(0), 0.5)),
]


def check_nms(fn: Callable) -> bool:
    """Check ``nms(boxes, scores, iou_threshold) -> indices`` against
    :func:`course_lib.ops.nms.nms`.

    Taught in notebooks/06_anchors_and_rpn.
    """
    from course_lib.ops import nms

    return check_function(
        fn, lambda b, s, t: nms.nms(b, s, t), NMS_CASES, name="nms",
        compare=lambda got, expected: exact(np.asarray(got, dtype=np.int64).reshape(-1),
                                            expected),
        hint="sort by score (highest first), keep the first, drop the rest whose IoU with it is "
             "> threshold, repeat on what is left; return indices into the original boxes.",
    )


# 02 metrics: mask IoU, Kaggle run-length encoding, the DSB precision at one threshold ------


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


# 07 roi_pool_vs_roi_align: bilinear sampling of one point, RoIAlign of one box, FPN level ----

_RAMP_4x4 = 10.0 * np.arange(4.0)[:, None] + np.arange(4.0)[None, :]   # value = 10*row + col
_SQUARES_5x6 = np.arange(5.0)[:, None] ** 2 + 3.0 * np.arange(6.0)[None, :]

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
                        spatial_scale, sampling_ratio, aligned=True)
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


# 10 unet: the border weight map, the valid output size, centre crop ----------------------

def _two_bar_labels(gap: int = 3) -> np.ndarray:
    """Two 2-px-wide nuclei with ``gap`` background columns between them (hand-worked case)."""
    labels = np.zeros((9, 8 + gap + 4), np.int32)
    labels[2:7, 4:6] = 1
    labels[2:7, 6 + gap:8 + gap] = 2
    return labels


def _three_nuclei_labels() -> np.ndarray:
    labels = np.zeros((30, 40), np.int32)
    labels[5:12, 5:14] = 1
    labels[5:12, 17:25] = 2      # 3-px gap to nucleus 1
    labels[15:24, 10:22] = 3     # below both, 3 px away
    return labels


def _single_nucleus_labels() -> np.ndarray:
    labels = np.zeros((12, 12), np.int32)
    labels[3:8, 4:9] = 5         # one nucleus, id 5: no second-nearest, no border term
    return labels


WEIGHT_MAP_CASES = [
    Case("two bars with a 3-px gap, w0 = 10, σ = 5 (middle gap pixel: 10·exp(-16/50))",
         (_two_bar_labels(3), 10.0, 5.0)),
    Case("three nuclei, w0 = 10, σ = 5", (_three_nuclei_labels(), 10.0, 5.0)),
    Case("three nuclei, w0 = 5, σ = 2", (_three_nuclei_labels(), 5.0, 2.0)),
    Case("a single nucleus (d2 = ∞: no border term, only w_c)",
         (_single_nucleus_labels(), 10.0, 5.0)),
    Case("no nucleus at all (w_c = 1 everywhere)", (np.zeros((6, 7), np.int32), 10.0, 5.0)),
]


def _weight_map_reference(labels, w0, sigma):
    from course_lib.ops.weight_map import weight_map

    return weight_map(labels, w0=w0, sigma=sigma)


def check_weight_map(fn: Callable) -> bool:
    """Check ``weight_map(labels, w0, sigma) -> H×W`` against ``ops.weight_map.weight_map``.

    Taught in notebooks/10_unet.
    """
    return check_function(
        fn, _weight_map_reference, WEIGHT_MAP_CASES, name="weight_map",
        hint="one distance map per nucleus: distance_transform_edt(labels != i); sort them along "
             "the nucleus axis and take the two smallest as d1, d2; with fewer than two nuclei "
             "the border term is 0; add it on background pixels only, to class_balance_weights.",
    )


UNET_OUTPUT_SIZE_CASES = [
    Case("the paper: 572 in, depth 4", (572, 4)),
    Case("the smallest valid input of depth 4 (188)", (188, 4)),
    Case("a small net: 92 in, depth 2", (92, 2)),
    Case("one pooling only: 20 in, depth 1", (20, 1)),
    Case("a larger tile: 636 in, depth 4", (636, 4)),
]


def _unet_output_size_reference(input_size, depth):
    from course_lib.models.unet import unet_output_size

    return unet_output_size(input_size, depth)


def check_unet_output_size(fn: Callable) -> bool:
    """Check ``unet_output_size(input_size, depth) -> int`` (valid convolutions).

    Taught in notebooks/10_unet.
    """
    return check_function(
        fn, _unet_output_size_reference, UNET_OUTPUT_SIZE_CASES, name="unet_output_size",
        compare=lambda got, exp: exact(int(got), exp) if np.ndim(got) == 0 else "not one number",
        hint="each level down: -2, -2, then //2; the bottom: -2, -2; each level up: *2, then "
             "-2, -2. Count the levels: depth poolings down and depth up-convolutions up.",
    )


CENTER_CROP_CASES = [
    Case("6x6 to 2x2 (remove 2 on each side)", (np.arange(36.0).reshape(1, 6, 6, 1), (2, 2))),
    Case("odd difference: 7x7 to 4x4 (the extra row/column goes at the bottom/right)",
         (np.arange(49.0).reshape(1, 7, 7, 1), (4, 4))),
    Case("nothing to crop", (np.ones((2, 5, 5, 3)), (5, 5))),
    Case("the paper's top level, 568 -> 392 (rectangular input, 2 channels)",
         (np.random.default_rng(0).random((1, 568, 570, 2)), (392, 394))),
]


def _center_crop_reference(x, target_hw):
    from course_lib.models.unet import center_crop

    return center_crop(x, target_hw)


def check_center_crop(fn: Callable) -> bool:
    """Check ``center_crop(x (B, H, W, C), (h, w))`` against ``models.unet.center_crop``.

    Taught in notebooks/10_unet.
    """
    return check_function(
        fn, _center_crop_reference, CENTER_CROP_CASES, name="center_crop",
        hint="top = (H - h) // 2 and left = (W - w) // 2, then x[:, top:top + h, left:left + w]; "
             "floor division puts the odd extra row at the bottom.",
    )


# 03 convolution: conv2d forward, the output-size formula ---------------------------------

_CONV_RNG = np.random.default_rng(3)
CONV2D_CASES = [
    Case("hand-worked: 0..8 in a 3x3 image, kernel [[1, 0], [0, -1]], bias 1 (all -3)",
         (np.arange(9.0).reshape(3, 3, 1), np.array([1.0, 0.0, 0.0, -1.0]).reshape(2, 2, 1, 1),
          np.array([1.0]))),
    Case("3 input channels, 4 filters: each filter sums over the channels",
         (_CONV_RNG.normal(size=(6, 7, 3)), _CONV_RNG.normal(size=(3, 3, 3, 4)),
          _CONV_RNG.normal(size=4))),
    Case("stride 2, valid", (_CONV_RNG.normal(size=(7, 7, 2)), _CONV_RNG.normal(size=(3, 3, 2, 2)),
                             np.zeros(2)), {"stride": 2}),
    Case("'same' padding with stride 2 on an even side: the odd zero goes bottom/right",
         (_CONV_RNG.normal(size=(6, 6, 1)), _CONV_RNG.normal(size=(3, 3, 1, 1)), np.zeros(1)),
         {"stride": 2, "padding": "same"}),
    Case("a 1x1 kernel mixes channels only", (_CONV_RNG.normal(size=(4, 5, 3)),
                                              _CONV_RNG.normal(size=(1, 1, 3, 2)), np.ones(2))),
]


def _conv2d_reference(x, w, b, stride=1, padding="valid"):
    from course_lib.ops import conv

    return conv.conv2d(x, w, b, stride=stride, padding=padding)


def check_conv2d(fn: Callable) -> bool:
    """Check ``conv2d(x (H, W, C_in), w (kh, kw, C_in, C_out), b, stride, padding)``.

    Taught in notebooks/03_convolution.
    """
    return check_function(
        fn, _conv2d_reference, CONV2D_CASES, name="conv2d",
        hint="output size floor((n + pads - k) / stride) + 1; for 'same' pad a total of "
             "max((ceil(n/s) - 1)*s + k - n, 0) with the smaller half first; output[i, j, o] = "
             "b[o] + sum over (u, v, c) of x[i*s + u, j*s + v, c] * w[u, v, c, o].",
    )


CONV_OUTPUT_SIZE_CASES = [
    Case("3x3 valid on 5 pixels: 3", (5, 3, 1, 0, 1)),
    Case("ResNet's stem: 224 px, 7x7, stride 2, padding 3 -> 112", (224, 7, 2, 3, 1)),
    Case("stride 2 that does not divide evenly: 8 px, 3x3, no padding -> 3", (8, 3, 2, 0, 1)),
    Case("dilation 2 makes a 3-tap kernel span 5 pixels: 9 -> 5", (9, 3, 1, 0, 2)),
    Case("a 1x1 kernel with stride 2 on 7 pixels -> 4", (7, 1, 2, 0, 1)),
]


def _conv_output_size_reference(n, k, stride, padding, dilation):
    from course_lib.ops import conv

    return conv.conv_output_size(n, k, stride, padding, dilation)


def check_conv_output_size(fn: Callable) -> bool:
    """Check ``conv_output_size(n, k, stride, padding, dilation) -> int`` (int padding).

    Taught in notebooks/03_convolution.
    """
    return check_function(
        fn, _conv_output_size_reference, CONV_OUTPUT_SIZE_CASES, name="conv_output_size",
        compare=lambda got, exp: exact(int(got), exp) if np.ndim(got) == 0 else "not one number",
        hint="k_eff = dilation * (k - 1) + 1, then (n + 2 * padding - k_eff) // stride + 1 "
             "(integer division rounds down).",
    )


# 04 resnet: the bottleneck block ----------------------------------------------------------

BOTTLENECK_CASES = [
    Case("first block of conv2: 64 channels in, filters 64, stride 1, projected shortcut",
         ((16, 16, 64), 64, 1, True)),
    Case("identity shortcut: 256 channels in, filters 64", ((8, 8, 256), 64, 1, False)),
    Case("first block of a later stage: stride 2 halves the size (9 -> 5, odd side)",
         ((9, 9, 32), 16, 2, True)),
]


def _set_deterministic_weights(model) -> None:
    """Give every variable values that depend only on its layer type and shape.

    Two correct blocks then compute the same function however their layers were created or
    named (layers of equal shape get equal weights, so swapping them changes nothing).
    """
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            values = []
            for var in layer.weights:
                shape = tuple(var.shape)
                rng = np.random.default_rng([7, *shape])  # the shape is the seed
                fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
                scale = np.sqrt(2.0 / fan_in) if len(shape) > 1 else 0.1
                values.append((rng.normal(size=shape) * scale).astype("float32"))
            layer.set_weights(values)
        elif isinstance(layer, keras.layers.BatchNormalization):
            c = layer.weights[0].shape[0]
            rng = np.random.default_rng(c)
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)])


def _bottleneck_summary(block_fn, input_shape, filters, stride, conv_shortcut) -> dict:
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input(input_shape)
    y = block_fn(x, filters, stride, conv_shortcut)
    model = keras.Model(x, y)
    _set_deterministic_weights(model)
    data = np.random.default_rng(1).normal(size=(1, *input_shape)).astype("float32")
    return {"parameters": model.count_params(), "output shape": tuple(y.shape[1:]),
            "output": np.asarray(model(data, training=False))}


def _bottleneck_reference(input_shape, filters, stride, conv_shortcut):
    from course_lib.layers import resnet

    def block(x, f, s, c):
        return resnet.bottleneck_block(x, f, stride=s, conv_shortcut=c, name="reference")

    return _bottleneck_summary(block, input_shape, filters, stride, conv_shortcut)


def _compare_blocks(got: dict, expected: dict) -> str | None:
    for key in ("parameters", "output shape"):
        if got[key] != expected[key]:
            return f"{key}: {got[key]} instead of {expected[key]}"
    return allclose(got["output"], expected["output"], atol=1e-3, rtol=1e-3)


def check_bottleneck_block(fn: Callable) -> bool:
    """Check ``bottleneck(x, filters, stride, conv_shortcut)`` (Keras tensors) against the library.

    Compares the parameter count, the output shape, and the outputs once both blocks have the
    same weights (set by layer type and shape, so layer names and order do not matter).

    Taught in notebooks/04_resnet.
    """
    def learner(input_shape, filters, stride, conv_shortcut):
        return _bottleneck_summary(fn, input_shape, filters, stride, conv_shortcut)

    return check_function(
        learner, _bottleneck_reference, BOTTLENECK_CASES, name="bottleneck_block",
        compare=_compare_blocks,
        hint="1x1 (filters, stride here) -> BN -> relu -> 3x3 same (filters) -> BN -> relu -> "
             "1x1 (4*filters) -> BN; the shortcut is a 1x1 conv (4*filters, same stride) + BN, or "
             "x itself; add, then relu. Convolutions keep their bias; BN uses epsilon=1.001e-5.",
    )


# 05 fpn: one top-down merge, the whole top-down pathway ------------------------------------

_FPN_RNG = np.random.default_rng(5)
UPSAMPLE_ADD_CASES = [
    Case("hand-worked 2x2 -> 4x4 plus ones",
         (np.array([[1.0, 2.0], [3.0, 4.0]])[..., None], np.ones((4, 4, 1)))),
    Case("several channels", (_FPN_RNG.normal(size=(3, 5, 4)), _FPN_RNG.normal(size=(6, 10, 4)))),
    Case("with a batch axis (N, h, w, C)",
         (_FPN_RNG.normal(size=(2, 2, 3, 2)), _FPN_RNG.normal(size=(2, 4, 6, 2)))),
    Case("a 1x1 level, the coarsest on a small image", (np.full((1, 1, 3), 2.0), np.zeros((2, 2, 3)))),
]


def _upsample_add_reference(higher, lateral):
    from course_lib.layers import fpn

    return fpn.upsample_add(higher, lateral)


def check_upsample_add(fn: Callable) -> bool:
    """Check ``upsample_add(higher (.., h, w, C), lateral (.., 2h, 2w, C))``.

    Taught in notebooks/05_fpn.
    """
    return check_function(
        fn, _upsample_add_reference, UPSAMPLE_ADD_CASES, name="upsample_add",
        hint="nearest-neighbour x2 copies each cell into a 2x2 block: np.repeat along the "
             "height axis (-3) and the width axis (-2), then add the lateral.",
    )


TOP_DOWN_CASES = [
    Case("four levels of a 64-pixel image, 3 channels",
         ([_FPN_RNG.normal(size=(16 // 2**i, 16 // 2**i, 3)) for i in range(4)],)),
    Case("constant levels: M2 = 1 + 10 + 100 + 1000",
         ([np.full((8 // 2**i, 8 // 2**i, 1), 10.0**i) for i in range(4)],)),
    Case("rectangular levels with a batch axis",
         ([_FPN_RNG.normal(size=(1, 8 // 2**i, 16 // 2**i, 2)) for i in range(4)],)),
]


def _top_down_reference(laterals):
    from course_lib.layers import fpn

    merged = [np.asarray(laterals[3])]
    for lateral in reversed(laterals[:3]):
        merged.insert(0, fpn.upsample_add(merged[0], lateral))
    return np.concatenate([m.ravel() for m in merged])


def check_top_down(fn: Callable) -> bool:
    """Check ``top_down(laterals [L2, L3, L4, L5]) -> [M2, M3, M4, M5]`` (NumPy).

    Taught in notebooks/05_fpn.
    """
    def learner(laterals):
        out = fn(laterals)
        if len(out) != 4:
            raise ValueError(f"return four maps [M2, M3, M4, M5], not {len(out)}")
        return np.concatenate([np.asarray(m).ravel() for m in out])

    return check_function(
        learner, _top_down_reference, TOP_DOWN_CASES, name="top_down",
        hint="start from the top: M5 = L5; then M4 = up(M5) + L4, M3 = up(M4) + L3, "
             "M2 = up(M3) + L2; return them finest first.",
    )


# 01 data_tour: masks, boxes and a flip -------------------------------------------------------

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

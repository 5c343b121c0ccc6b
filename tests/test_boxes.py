"""Boxes: IoU, delta coding, clipping and conversions (course_lib.ops.boxes).

Oracles: hand-worked arithmetic, exact rational arithmetic (``fractions.Fraction``, one pair
at a time), keras.utils.bounding_boxes (compute_iou, convert_format), plain Python min/max for
clipping, and the NumPy references for the keras.ops twins. Property tests draw their boxes
from tests/strategies.py (zero-area and duplicate boxes included), so failures shrink.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from keras import ops
from keras.utils import bounding_boxes as kbb

from course_lib.ops import boxes as B
from tests import strategies as S


def test_iou_hand_worked():
    a = np.array([[0.0, 0.0, 2.0, 2.0]])
    b = np.array([[1.0, 1.0, 3.0, 3.0],   # overlap 1x1 = 1, union 4 + 4 - 1 = 7
                  [0.0, 0.0, 2.0, 2.0],   # identical: 1
                  [2.0, 0.0, 4.0, 2.0],   # touching along y = 2: intersection 0
                  [0.0, 0.0, 1.0, 4.0]])  # inter [0,1)x[0,2) = 2, union 4 + 4 - 2 = 6
    np.testing.assert_allclose(B.iou(a, b), [[1 / 7, 1.0, 0.0, 2 / 6]])


def test_iou_shapes_and_degenerate():
    assert B.iou(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)
    point = np.array([[1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(B.iou(point, point), [[0.0]])  # empty union -> 0, not nan


def test_iou_bad_shape_names_argument():
    with pytest.raises(ValueError, match="b must have shape"):
        B.iou(np.zeros((2, 4)), np.zeros((2, 3)))


def _exact_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU pair by pair in exact rational arithmetic: an implementation with nothing shared."""
    out = np.zeros((len(a), len(b)))
    for i, (ay1, ax1, ay2, ax2) in enumerate(a.tolist()):
        for j, (by1, bx1, by2, bx2) in enumerate(b.tolist()):
            ay1, ax1, ay2, ax2, by1, bx1, by2, bx2 = map(Fraction, (ay1, ax1, ay2, ax2,
                                                                   by1, bx1, by2, bx2))
            inter = (max(Fraction(0), min(ay2, by2) - max(ay1, by1))
                     * max(Fraction(0), min(ax2, bx2) - max(ax1, bx1)))
            union = (ay2 - ay1) * (ax2 - ax1) + (by2 - by1) * (bx2 - bx1) - inter
            out[i, j] = float(inter / union) if union > 0 else 0.0
    return out


@settings(max_examples=40, deadline=None)
@given(a=S.boxes(max_boxes=6), b=S.boxes(max_boxes=6))
def test_iou_equals_exact_rational_iou(a, b):
    # On the quarter-pixel grid every area is exact in float64 and the one division is
    # correctly rounded, so the reference must equal the rational answer to the last bit.
    np.testing.assert_array_equal(B.iou(a, b), _exact_iou(a, b))
    np.testing.assert_allclose(ops.convert_to_numpy(B.iou_ops(a, b)), _exact_iou(a, b),
                               atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(a=S.boxes(min_boxes=1, max_boxes=6, min_side=0.25),
       b=S.boxes(min_boxes=1, max_boxes=6, min_side=0.25))
def test_iou_matches_keras_compute_iou(a, b):
    expected = ops.convert_to_numpy(kbb.compute_iou(a.astype("float32"), b.astype("float32"),
                                                    bounding_box_format="yxyx"))
    np.testing.assert_allclose(B.iou(a, b), expected, atol=1e-5)


def test_encode_hand_worked():
    # anchor centre (5, 5), size 10x10; box centre (6, 4), size 20x5
    anchor = np.array([[0.0, 0.0, 10.0, 10.0]])
    box = np.array([[-4.0, 1.5, 16.0, 6.5]])
    expected = [[(6 - 5) / 10 / 0.1, (4 - 5) / 10 / 0.1, np.log(2.0) / 0.2, np.log(0.5) / 0.2]]
    np.testing.assert_allclose(B.encode(box, anchor), expected)
    np.testing.assert_allclose(B.decode(np.array(expected), anchor), box)


def test_encode_rejects_empty_box():
    with pytest.raises(ValueError, match="y2 > y1"):
        B.encode(np.array([[0.0, 0.0, 0.0, 5.0]]), np.array([[0.0, 0.0, 4.0, 4.0]]))


def test_clip_hand_worked():
    boxes = np.array([[-3.0, 5.0, 40.0, 70.0]])
    np.testing.assert_array_equal(B.clip(boxes, (32, 64, 3)), [[0.0, 5.0, 32.0, 64.0]])
    with pytest.raises(ValueError, match="image shape"):
        B.clip(boxes, (0,))


@settings(max_examples=20, deadline=None)
@given(b=S.boxes(min_boxes=1, max_boxes=8))
def test_conversions_match_keras_convert_format(b):
    b = b.astype("float32")
    xywh = ops.convert_to_numpy(kbb.convert_format(b, source="yxyx", target="xywh"))
    np.testing.assert_allclose(B.to_xywh(b), xywh, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(B.from_xywh(xywh), b, atol=1e-4)
    rel = ops.convert_to_numpy(kbb.convert_format(b, source="yxyx", target="rel_yxyx",
                                                  height=120, width=160))
    np.testing.assert_allclose(B.to_normalized(b, (120, 160)), rel, atol=1e-6)
    np.testing.assert_allclose(B.from_normalized(rel, (120, 160, 3)), b, atol=1e-4)


def test_coco_xywh_hand_worked():
    # box rows 2..5, cols 10..13 -> x=10, y=2, w=4, h=4
    np.testing.assert_array_equal(B.to_xywh(np.array([[2.0, 10.0, 6.0, 14.0]])),
                                  [[10.0, 2.0, 4.0, 4.0]])


@settings(max_examples=15, deadline=None)
@given(a=S.boxes(min_boxes=1, max_boxes=8, min_side=0.5),
       b=S.boxes(min_boxes=8, max_boxes=8, min_side=0.5), shape=S.image_shapes())
def test_twins_match_references(a, b, shape):
    b = b[: len(a)]
    np.testing.assert_allclose(ops.convert_to_numpy(B.iou_ops(a, b)), B.iou(a, b), atol=1e-6)
    # batched: (2, N, 4) x (2, N, 4)
    got = ops.convert_to_numpy(B.iou_ops(np.stack([a, b]), np.stack([b, a])))
    np.testing.assert_allclose(got[1], B.iou(b, a), atol=1e-6)
    d = B.encode(a, b)
    np.testing.assert_allclose(ops.convert_to_numpy(B.encode_ops(a, b)), d, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(B.decode_ops(d, b)), a, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(ops.convert_to_numpy(B.clip_ops(a, shape)), B.clip(a, shape),
                               atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(B.to_normalized_ops(a, shape)),
                               B.to_normalized(a, shape), atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(B.from_normalized_ops(a, shape)),
                               B.from_normalized(a, shape), atol=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(B.area_ops(a)), B.area(a), rtol=1e-6)


def test_decode_caps_huge_size_deltas():
    out = B.decode(np.array([[0.0, 0.0, 1e3, 1e3]]), np.array([[0.0, 0.0, 1.0, 1.0]]))
    assert np.all(np.isfinite(out))


@settings(max_examples=60, deadline=None)
@given(a=S.boxes(min_boxes=1, max_boxes=6), b=S.boxes(min_boxes=1, max_boxes=6))
def test_iou_symmetric_bounded_and_one_on_itself(a, b):
    m = B.iou(a, b)
    assert m.shape == (len(a), len(b))
    np.testing.assert_array_equal(m, B.iou(b, a).T)
    assert np.all((m >= 0) & (m <= 1))
    # a box with area has IoU 1 with itself; a zero-area box has 0 (empty union, not nan)
    np.testing.assert_array_equal(np.diag(B.iou(a, a)), (B.area(a) > 0).astype(float))


@settings(max_examples=60, deadline=None)
@given(boxes=S.boxes(min_boxes=1, max_boxes=6, min_side=0.5),
       anchors=S.boxes(min_boxes=6, max_boxes=6, min_side=0.5))
def test_decode_inverts_encode(boxes, anchors):
    # sides 0.5..16 px keep every size ratio (at most 32) below decode's cap of 62.5
    anchors = anchors[: len(boxes)]
    np.testing.assert_allclose(B.decode(B.encode(boxes, anchors), anchors), boxes,
                               rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(boxes=S.boxes(max_boxes=6, max_coord=64.0, max_side=48.0), shape=S.image_shapes())
def test_clip_keeps_every_edge_inside_the_image(boxes, shape):
    boxes = boxes - 16.0   # some boxes start above or left of the image, some end past it
    h, w = shape
    limits = (h, w, h, w)
    expected = np.array([[min(max(v, 0.0), lim) for v, lim in zip(row, limits, strict=True)]
                         for row in boxes.tolist()]).reshape(-1, 4)
    clipped = B.clip(boxes, (h, w, 3))
    np.testing.assert_array_equal(clipped, expected)
    np.testing.assert_array_equal(B.clip(clipped, shape), clipped)      # idempotent
    inside = ((boxes >= 0) & (boxes <= np.array(limits))).all(axis=1)
    np.testing.assert_array_equal(clipped[inside], boxes[inside])      # inside: untouched


def test_exercise_checks_accept_references_and_reject_plus_one(capsys):
    from course_lib import exercises

    assert exercises.check_iou(B.iou) and exercises.check_encode(B.encode)

    def iou_plus_one(a, b):  # inclusive-pixel sizes: the classic mistake
        return B.iou(a + np.array([0, 0, 1, 1]), b + np.array([0, 0, 1, 1]))

    with pytest.raises(exercises.ExerciseFailed, match="case 1"):
        exercises.check_iou(iou_plus_one)
    with pytest.raises(exercises.ExerciseFailed):
        exercises.check_encode(lambda b, a: B.encode(b, a, std=(1, 1, 1, 1)))

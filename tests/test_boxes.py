"""Boxes: IoU, delta coding, clipping and conversions (course_lib.ops.boxes).

Oracles: hand-worked arithmetic, keras.utils.bounding_boxes (compute_iou, convert_format),
and the NumPy references for the keras.ops twins.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops
from keras.utils import bounding_boxes as kbb

from course_lib.ops import boxes as B


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


def _random_boxes(rng, n, size=100.0):
    yx = rng.uniform(0, size, (n, 2))
    hw = rng.uniform(0.5, size / 2, (n, 2))
    return np.concatenate([yx, yx + hw], axis=1)


def test_iou_matches_keras_compute_iou():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 20), _random_boxes(rng, 30)
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


def test_conversions_match_keras_convert_format():
    rng = np.random.default_rng(1)
    b = _random_boxes(rng, 10).astype("float32")
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


def test_twins_match_references():
    rng = np.random.default_rng(2)
    a, b = _random_boxes(rng, 15), _random_boxes(rng, 15)
    np.testing.assert_allclose(ops.convert_to_numpy(B.iou_ops(a, b)), B.iou(a, b), atol=1e-5)
    # batched: (2, N, 4) x (2, M, 4)
    got = ops.convert_to_numpy(B.iou_ops(np.stack([a, b]), np.stack([b, a])))
    np.testing.assert_allclose(got[1], B.iou(b, a), atol=1e-5)
    d = B.encode(a, b)
    np.testing.assert_allclose(ops.convert_to_numpy(B.encode_ops(a, b)), d, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(B.decode_ops(d, b)), a, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(ops.convert_to_numpy(B.clip_ops(a, (50, 60))), B.clip(a, (50, 60)),
                               atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(B.to_normalized_ops(a, (50, 60))),
                               B.to_normalized(a, (50, 60)), atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(B.from_normalized_ops(a, (50, 60))),
                               B.from_normalized(a, (50, 60)), atol=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(B.area_ops(a)), B.area(a), rtol=1e-5)


def test_decode_caps_huge_size_deltas():
    out = B.decode(np.array([[0.0, 0.0, 1e3, 1e3]]), np.array([[0.0, 0.0, 1.0, 1.0]]))
    assert np.all(np.isfinite(out))


_coord = st.floats(-200, 200, allow_nan=False, width=32)
_size = st.floats(0.5, 200, allow_nan=False, width=32)
_box = st.tuples(_coord, _coord, _size, _size).map(lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])


@settings(max_examples=60, deadline=None)
@given(st.lists(_box, min_size=1, max_size=6), st.lists(_box, min_size=1, max_size=6))
def test_iou_symmetric_and_bounded(a, b):
    a, b = np.array(a), np.array(b)
    m = B.iou(a, b)
    assert m.shape == (len(a), len(b))
    np.testing.assert_allclose(m, B.iou(b, a).T)
    assert np.all((m >= 0) & (m <= 1 + 1e-12))
    np.testing.assert_allclose(np.diag(B.iou(a, a)), 1.0)


# sizes 4..200 keep every size ratio below decode's cap of 62.5x (MAX_LOG_SCALE)
_box_capped = st.tuples(_coord, _coord, st.floats(4, 200, width=32), st.floats(4, 200, width=32)) \
    .map(lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])


@settings(max_examples=60, deadline=None)
@given(st.lists(_box_capped, min_size=1, max_size=6),
       st.lists(_box_capped, min_size=6, max_size=6))
def test_decode_inverts_encode(boxes, anchors):
    boxes, anchors = np.array(boxes), np.array(anchors)[: len(boxes)]
    np.testing.assert_allclose(B.decode(B.encode(boxes, anchors), anchors), boxes,
                               rtol=1e-9, atol=1e-9)


def test_exercise_checks_accept_references_and_reject_plus_one(capsys):
    from course_lib import exercises

    assert exercises.check_iou(B.iou) and exercises.check_encode(B.encode)

    def iou_plus_one(a, b):  # inclusive-pixel sizes: the classic mistake
        return B.iou(a + np.array([0, 0, 1, 1]), b + np.array([0, 0, 1, 1]))

    with pytest.raises(exercises.ExerciseFailed, match="case 1"):
        exercises.check_iou(iou_plus_one)
    with pytest.raises(exercises.ExerciseFailed):
        exercises.check_encode(lambda b, a: B.encode(b, a, std=(1, 1, 1, 1)))

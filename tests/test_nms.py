"""NMS (course_lib.ops.nms): the NumPy reference against tf.image.non_max_suppression and the
fixed-shape keras.ops twin against the reference."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

from course_lib.ops import nms as N
from course_lib.ops.boxes import iou
from tests import strategies as S


def _scene(seed, n=300, size=200.0):
    rng = np.random.default_rng(seed)
    c = rng.uniform(0, size, (n, 2))
    hw = rng.uniform(5, 60, (n, 2))
    boxes = np.concatenate([c - hw / 2, c + hw / 2], axis=1).astype(np.float32)
    return boxes, rng.random(n).astype(np.float32)


def test_hand_worked():
    boxes = np.array([[0, 0, 10, 10], [0, 1, 10, 11], [0, 20, 10, 30], [0, 0, 10, 5.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # best is box 3 (0.95); box 0 has IoU 50/100 = 0.5 with it -> kept at threshold 0.5 (not >);
    # box 1 has IoU 90/110 > 0.5 with box 0 -> dropped; box 2 overlaps nobody -> kept.
    np.testing.assert_array_equal(N.nms(boxes, scores, 0.5), [3, 0, 2])
    # at 0.49 box 0 goes (0.5 > 0.49), so box 1 survives: its IoU with box 3 is
    # [0,10)x[1,5) = 40 over 50 + 100 - 40 = 110, i.e. 0.36.
    np.testing.assert_array_equal(N.nms(boxes, scores, 0.49), [3, 1, 2])
    np.testing.assert_array_equal(N.nms(boxes, scores, 0.5, max_output=2), [3, 0])
    assert N.nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


@pytest.mark.parametrize("seed, threshold", [(0, 0.5), (1, 0.7), (2, 0.3)])
def test_reference_matches_tensorflow(seed, threshold):
    boxes, scores = _scene(seed)
    expected = tf.image.non_max_suppression(boxes, scores, 100, threshold).numpy()
    np.testing.assert_array_equal(N.nms(boxes, scores, threshold, 100), expected)


def test_score_threshold_matches_tensorflow():
    boxes, scores = _scene(3)
    expected = tf.image.non_max_suppression(boxes, scores, 50, 0.5, score_threshold=0.6).numpy()
    np.testing.assert_array_equal(N.nms(boxes, scores, 0.5, 50, score_threshold=0.6), expected)


def test_padded_twin_matches_reference_and_pads():
    boxes, scores = _scene(4, n=200)
    ref = N.nms(boxes, scores, 0.5)
    kept, count = N.padded_nms(boxes, scores, max_output=len(ref) + 7, iou_threshold=0.5)
    kept, count = ops.convert_to_numpy(kept), int(ops.convert_to_numpy(count))
    assert count == len(ref)
    np.testing.assert_array_equal(kept[:count], ref)
    np.testing.assert_array_equal(kept[count:], -1)


def test_batched_twin_and_score_threshold():
    b0, s0 = _scene(5, n=120)
    b1, s1 = _scene(6, n=120)
    kept, count = N.batched_padded_nms(np.stack([b0, b1]), np.stack([s0, s1]), 20, 0.4,
                                       score_threshold=0.3)
    kept, count = ops.convert_to_numpy(kept), ops.convert_to_numpy(count)
    for row, (b, s) in enumerate([(b0, s0), (b1, s1)]):
        ref = N.nms(b, s, 0.4, 20, score_threshold=0.3)
        assert count[row] == len(ref)
        np.testing.assert_array_equal(kept[row, : len(ref)], ref)


def test_tiled_twin_follows_a_suppression_chain():
    # Ten 10-px boxes, each 2 px right of the one before and scored lower: neighbours overlap
    # by 8/12 = 0.67 > 0.5, boxes two apart by 6/14 = 0.43. Greedy keeps 0, drops 1, so 2
    # lives and drops 3, and so on: the even boxes. With all ten in one tile, box 2k is only
    # settled after k rounds of refinement; with a tile per box, by the kept-box buffer.
    boxes = np.array([[0, 2 * i, 10, 2 * i + 10] for i in range(10)], dtype=np.float32)
    scores = np.linspace(1.0, 0.1, 10, dtype=np.float32)
    np.testing.assert_array_equal(N.nms(boxes, scores, 0.5), [0, 2, 4, 6, 8])
    for tile in (1, 3, 10, 64):
        kept, count = N.padded_nms(boxes, scores, max_output=7, iou_threshold=0.5, tile_size=tile)
        np.testing.assert_array_equal(ops.convert_to_numpy(kept), [0, 2, 4, 6, 8, -1, -1])
        assert int(ops.convert_to_numpy(count)) == 5


@pytest.mark.parametrize("tile, max_output", [(256, 2000), (100, 2000), (256, 150)])
def test_tiled_twin_matches_reference_on_a_proposal_sized_scene_in_a_graph(tile, max_output):
    """RPN-sized input (3,000 boxes, several tiles, the last one part-filled), compiled as a
    TensorFlow graph; with ``max_output=150`` the loop stops after the first tiles."""
    b0, s0 = _scene(7, n=3000, size=400.0)
    b1, s1 = _scene(8, n=3000, size=400.0)
    run = tf.function(lambda b, s: N.batched_padded_nms(b, s, max_output, 0.7, tile_size=tile))
    kept, count = (t.numpy() for t in run(np.stack([b0, b1]), np.stack([s0, s1])))
    for row, (b, s) in enumerate([(b0, s0), (b1, s1)]):
        ref = N.nms(b, s, 0.7, max_output)
        assert count[row] == len(ref) > 100
        np.testing.assert_array_equal(kept[row, : len(ref)], ref)
        np.testing.assert_array_equal(kept[row, len(ref):], -1)


def test_mismatched_lengths_named():
    with pytest.raises(ValueError, match="one score per box"):
        N.nms(np.zeros((3, 4)), np.zeros(2), 0.5)


def _tf_nms(boxes, scores, max_output, threshold, score_threshold=float("-inf")):
    """The oracle: TensorFlow's own greedy NMS (float32, ties keep the lower index)."""
    return tf.image.non_max_suppression(
        boxes.astype(np.float32), scores.astype(np.float32), max_output, threshold,
        score_threshold=score_threshold).numpy()


@settings(max_examples=80, deadline=None)
@given(data=st.data(), case=S.scored_boxes(max_boxes=12), threshold=S.iou_thresholds(),
       score_threshold=S.score_thresholds())
def test_reference_matches_tensorflow_property(data, case, threshold, score_threshold):
    boxes, scores = case
    max_output = data.draw(S.max_outputs(len(boxes)), label="max_output")
    expected = _tf_nms(boxes, scores, max_output, threshold, score_threshold)
    got = N.nms(boxes, scores, threshold, max_output, score_threshold=score_threshold)
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=60, deadline=None)
@given(case=S.scored_boxes(min_boxes=1, max_boxes=12), threshold=S.iou_thresholds())
def test_nms_invariants(case, threshold):
    boxes, scores = case
    keep = N.nms(boxes, scores, threshold)
    n = len(boxes)
    assert len(set(keep.tolist())) == len(keep) >= 1
    # best first, and among equal scores the lower index first
    order = list(zip(-scores[keep], keep, strict=True))
    assert order == sorted(order)
    m = iou(boxes[keep], boxes[keep])
    np.fill_diagonal(m, 0)
    assert np.all(m <= threshold)
    # every dropped box overlaps a kept box ranked before it by more than the threshold
    rank = {int(i): r for r, i in enumerate(np.lexsort((np.arange(n), -scores)))}
    for d in np.setdiff1d(np.arange(n), keep):
        assert any(iou(boxes[[d]], boxes[[k]])[0, 0] > threshold and rank[int(k)] < rank[int(d)]
                   for k in keep)


def test_exercise_check_accepts_reference_and_rejects_non_strict_threshold(capsys):
    from course_lib import exercises

    assert exercises.check_nms(lambda b, s, t: N.nms(b, s, t))

    def suppress_at_threshold(boxes, scores, t):  # uses >= instead of >
        order, keep = list(np.argsort(-np.asarray(scores), kind="stable")), []
        while order:
            best, order = order[0], order[1:]
            keep.append(best)
            order = [i for i in order if iou(boxes[[best]], boxes[[i]])[0, 0] < t]
        return np.array(keep, dtype=int)

    with pytest.raises(exercises.ExerciseFailed, match="case 2"):
        exercises.check_nms(suppress_at_threshold)


@settings(max_examples=20, deadline=None)
@given(data=st.data(), case=S.scored_boxes(min_boxes=1, max_boxes=10),
       threshold=S.iou_thresholds(), score_threshold=S.score_thresholds())
def test_padded_twin_matches_tensorflow_property(data, case, threshold, score_threshold):
    boxes, scores = case
    max_output = data.draw(S.max_outputs(len(boxes)), label="max_output")
    expected = _tf_nms(boxes, scores, max_output, threshold, score_threshold)
    tile = data.draw(st.integers(1, 4), label="tile_size")
    kept, count = N.padded_nms(boxes, scores, max_output=max_output, iou_threshold=threshold,
                               score_threshold=score_threshold, tile_size=tile)
    kept, count = ops.convert_to_numpy(kept), int(ops.convert_to_numpy(count))
    assert kept.shape == (max_output,) and count == len(expected)
    np.testing.assert_array_equal(kept[:count], expected)
    np.testing.assert_array_equal(kept[count:], -1)


@settings(max_examples=10, deadline=None)
@given(data=st.data(), threshold=S.iou_thresholds())
def test_batched_twin_matches_tensorflow_per_image_property(data, threshold):
    n = data.draw(st.integers(1, 8), label="boxes per image")
    images = [data.draw(S.scored_boxes(min_boxes=n, max_boxes=n, duplicates=False),
                        label=f"image {i}") for i in range(2)]
    max_output = data.draw(S.max_outputs(n), label="max_output")
    tile = data.draw(st.integers(1, 3), label="tile_size")
    kept, count = N.batched_padded_nms(np.stack([b for b, _ in images]),
                                       np.stack([s for _, s in images]), max_output, threshold,
                                       tile_size=tile)
    kept, count = ops.convert_to_numpy(kept), ops.convert_to_numpy(count)
    for row, (b, s) in enumerate(images):
        expected = _tf_nms(b, s, max_output, threshold)
        assert count[row] == len(expected)
        np.testing.assert_array_equal(kept[row, : len(expected)], expected)

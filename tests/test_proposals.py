"""The proposal layer (per-level top-k, decode, clip to the window, min size, NMS, top-N, no
gradient) and the anchor generator layer, against NumPy references and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from layer_contract import check_layer_contract

from course_lib.layers.anchors import AnchorGenerator
from course_lib.layers.proposals import ProposalLayer, proposals_np
from course_lib.ops import anchors as A

SCALES, RATIOS, STRIDES = (8, 16, 32), (0.5, 1, 2), (4, 8, 16)


def test_anchor_generator_equals_pyramid_anchors():
    gen = AnchorGenerator(SCALES, RATIOS, STRIDES)
    images = np.zeros((2, 64, 64, 3), "float32")
    (anchors,) = check_layer_contract(gen, images, expected_shapes=[(3 * (256 + 64 + 16), 4)])
    np.testing.assert_allclose(anchors, A.pyramid_anchors((64, 64), SCALES, RATIOS, STRIDES))
    assert gen.level_counts((64, 64)) == [768, 192, 48] and gen.anchors_per_location == 3


def _case(seed=2, batch=2):
    anchors = A.pyramid_anchors((64, 64), SCALES, RATIOS, STRIDES).astype("float32")
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, len(anchors))).astype("float32")
    deltas = rng.normal(scale=0.5, size=(batch, len(anchors), 4)).astype("float32")
    return anchors, logits, deltas


@pytest.mark.parametrize("per_level_nms", [True, False])
def test_per_level_top_k_window_and_min_size_match_reference(per_level_nms):
    anchors, logits, deltas = _case()
    counts = A.level_counts((64, 64), SCALES, RATIOS, STRIDES)
    # image 0 fills the square; image 1 is a 40 x 64 image padded top and bottom (window rows
    # 12..52): its proposals must stay inside rows 12..52
    meta = np.array([[64, 64, 0, 0, 64, 64, 1], [40, 64, 12, 0, 52, 64, 1]], "float32")
    layer = ProposalLayer((64, 64), pre_nms_top_k=50, post_nms_top_n=40, nms_threshold=0.7,
                          level_counts=counts, min_size=4.0, per_level_nms=per_level_nms)
    boxes, scores, valid = check_layer_contract(layer, [logits, deltas, anchors, meta],
                                                expected_shapes=[(2, 40, 4), (2, 40), (2, 40)])
    for i in range(2):
        ref_boxes, ref_scores = proposals_np(logits[i], deltas[i], anchors, (64, 64),
                                             pre_nms_top_k=50, post_nms_top_n=40, nms_threshold=0.7,
                                             level_counts=counts, window=meta[i, 2:6],
                                             min_size=4.0, per_level_nms=per_level_nms)
        n = int(valid[i].sum())
        assert n == len(ref_boxes) > 10
        np.testing.assert_allclose(boxes[i, :n], ref_boxes, atol=1e-3)
        np.testing.assert_allclose(scores[i, :n], ref_scores, atol=1e-5)
        assert np.all(boxes[i, n:] == 0)
        kept = boxes[i, :n]
        assert np.all(np.minimum(kept[:, 2] - kept[:, 0], kept[:, 3] - kept[:, 1]) >= 4 - 1e-4)
    assert boxes[1, :, 0][valid[1]].min() >= 12 and boxes[1, :, 2][valid[1]].max() <= 52


def test_per_level_top_k_keeps_coarse_levels():
    # Make every P2 anchor score higher than every other: one pool of 50 would be all P2, the
    # per-level rule still sends the best 50 of each coarser level to NMS.
    anchors, logits, deltas = _case(batch=1)
    counts = A.level_counts((64, 64), SCALES, RATIOS, STRIDES)
    logits[0, :counts[0]] += 100
    pooled = proposals_np(logits[0], deltas[0], anchors, (64, 64), pre_nms_top_k=50,
                          post_nms_top_n=200, nms_threshold=1.0)[0]
    leveled = proposals_np(logits[0], deltas[0], anchors, (64, 64), pre_nms_top_k=50,
                           post_nms_top_n=200, nms_threshold=1.0,
                           level_counts=counts)[0]
    assert len(pooled) == 50 and len(leveled) == 50 + 50 + 48


def test_nms_within_levels_keeps_the_same_box_found_at_two_levels():
    # Hand-worked: three anchors, zero deltas. Level 0 holds (0, 0, 16, 16) scored 3 and
    # (1, 1, 16, 16) scored 2 (IoU 225/256 = 0.88 > 0.7: the second goes); level 1 holds
    # (0, 0, 16, 16) again, scored 1. Within levels, the level-1 copy survives (it overlaps
    # nothing of its own level): boxes scored 3 and 1. Across levels it dies too: only 3.
    anchors = np.array([[0, 0, 16, 16], [1, 1, 16, 16], [0, 0, 16, 16]], "float32")
    logits = np.array([[3.0, 2.0, 1.0]], "float32")
    deltas = np.zeros((1, 3, 4), "float32")
    sig = 1 / (1 + np.exp(-np.array([3.0, 2.0, 1.0])))
    for per_level, expected in ((True, [sig[0], sig[2]]), (False, [sig[0]])):
        layer = ProposalLayer((32, 32), pre_nms_top_k=5, post_nms_top_n=3,
                              level_counts=[2, 1], per_level_nms=per_level)
        boxes, scores, valid = (np.asarray(t) for t in layer([logits, deltas, anchors]))
        np.testing.assert_allclose(scores[0][valid[0]], expected, rtol=1e-6)
        np.testing.assert_allclose(boxes[0][valid[0]], [[0, 0, 16, 16]] * len(expected))
        ref = proposals_np(logits[0], deltas[0], anchors, (32, 32), pre_nms_top_k=5,
                           post_nms_top_n=3, nms_threshold=0.7,
                           level_counts=[2, 1], per_level_nms=per_level)[1]
        np.testing.assert_allclose(ref, expected, rtol=1e-6)


def test_per_level_nms_survives_serialisation():
    layer = ProposalLayer((64, 64), level_counts=[3, 1], per_level_nms=False)
    again = ProposalLayer.from_config(layer.get_config())
    assert again.per_level_nms is False and again.level_counts == [3, 1]


def test_hand_worked_clip_and_drop():
    # Two anchors, zero deltas: (0, 0, 10, 10) scored higher and (30, 30, 34, 34). Window
    # (2, 0, 64, 64) clips the first to (2, 0, 10, 10); min size 5 drops the 4 x 4 second.
    anchors = np.array([[0, 0, 10, 10], [30, 30, 34, 34]], "float32")
    logits = np.array([[2.0, 1.0]], "float32")
    meta = np.array([[62, 64, 2, 0, 64, 64, 1]], "float32")
    layer = ProposalLayer((64, 64), post_nms_top_n=3, min_size=5.0)
    boxes, scores, valid = (ops.convert_to_numpy(t)
                            for t in layer([logits, np.zeros((1, 2, 4), "float32"), anchors, meta]))
    np.testing.assert_array_equal(valid[0], [True, False, False])
    np.testing.assert_allclose(boxes[0, 0], [2, 0, 10, 10])
    np.testing.assert_allclose(scores[0, 0], 1 / (1 + np.exp(-2.0)), rtol=1e-6)


def test_proposals_carry_no_gradient():
    anchors, logits, deltas = _case(batch=1)
    layer = ProposalLayer((64, 64), pre_nms_top_k=30, post_nms_top_n=10)
    d = tf.Variable(deltas)
    g = tf.Variable(logits)
    with tf.GradientTape(persistent=True) as tape:
        boxes, scores, _ = layer([g, d, anchors])
        total = tf.reduce_sum(boxes) + tf.reduce_sum(scores)
    assert tape.gradient(total, d) is None and tape.gradient(total, g) is None
    # the same arithmetic without the layer does carry gradient: the check can fail
    with tf.GradientTape() as tape:
        direct = tf.reduce_sum(d[:, :10] * 2.0)
    assert tape.gradient(direct, d) is not None

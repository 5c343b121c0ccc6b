"""RPN head, anchor targets and proposals (course_lib.layers.rpn).

Oracles: a hand-worked matching case, the NumPy references (anchor_targets_np, proposals_np)
for the keras.ops versions, and the shared layer contract (tests/layer_contract.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops
from layer_contract import check_layer_contract

from course_lib.layers import rpn
from course_lib.ops import anchors as A
from course_lib.ops import boxes as B

# One gt box (0, 0, 10, 10), one tiny gt box (40, 40, 44, 44) and one padding row.
GT = np.array([[0, 0, 10, 10], [40, 40, 44, 44], [20, 20, 30, 30]], dtype=np.float32)
GT_VALID = np.array([True, True, False])
ANCHORS = np.array([
    [0, 0, 10, 10],    # IoU 1 with gt 0                          -> 1
    [0, 5, 10, 15],    # inter 50, union 150: 0.33 (0.3 < . < 0.7)  -> -1
    [20, 20, 30, 30],  # overlaps only the padding row            -> 0
    [0, 0, 10, 8],     # inter 80, union 100: 0.8                 -> 1
    [0, 6, 10, 16],    # inter 40, union 160: 0.25                -> 0
    [40, 40, 50, 50],  # 16 / 100 = 0.16 with gt 1, but its best anchor -> 1
], dtype=np.float32)
LABELS = [1, -1, 0, 1, 0, 1]


def test_anchor_targets_hand_worked():
    labels, deltas = rpn.anchor_targets_np(ANCHORS, GT, GT_VALID, samples=None)
    np.testing.assert_array_equal(labels, LABELS)
    # anchor 3: centre (5, 4), size 10x8; gt 0: centre (5, 5), size 10x10
    np.testing.assert_allclose(deltas[3], [0, (5 - 4) / 8 / 0.1, 0, np.log(10 / 8) / 0.2])
    np.testing.assert_allclose(deltas[0], 0, atol=1e-12)
    np.testing.assert_array_equal(deltas[[1, 2, 4]], 0)


def test_anchor_targets_without_valid_gt_are_all_negative():
    labels, deltas = rpn.anchor_targets_np(ANCHORS, GT, np.zeros(3, bool), samples=None)
    np.testing.assert_array_equal(labels, 0)


def test_anchor_targets_twin_matches_reference():
    labels, deltas = rpn.anchor_targets_ops(ANCHORS, GT[None], GT_VALID[None], samples=None)
    np.testing.assert_array_equal(ops.convert_to_numpy(labels)[0], LABELS)
    ref_labels, ref_deltas = rpn.anchor_targets_np(ANCHORS, GT, GT_VALID, samples=None)
    np.testing.assert_allclose(ops.convert_to_numpy(deltas)[0], ref_deltas, atol=1e-5)
    # a realistic case: pyramid anchors, several gt boxes, batch of two with different padding
    anchors = A.pyramid_anchors((64, 64), (8, 16, 32), (0.5, 1, 2), (4, 8, 16))
    rng = np.random.default_rng(0)
    yx = rng.uniform(0, 48, (2, 5, 2))
    gt = np.concatenate([yx, yx + rng.uniform(4, 16, (2, 5, 2))], -1).astype(np.float32)
    valid = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    labels, deltas = rpn.anchor_targets_ops(anchors, gt, valid, samples=None)
    for i in range(2):
        rl, rd = rpn.anchor_targets_np(anchors, gt[i], valid[i], samples=None)
        np.testing.assert_array_equal(ops.convert_to_numpy(labels)[i], rl)
        np.testing.assert_allclose(ops.convert_to_numpy(deltas)[i], rd, atol=1e-4)


@pytest.mark.parametrize("implementation", ["numpy", "ops"])
def test_sampling_is_balanced(implementation):
    anchors = A.pyramid_anchors((64, 64), (8, 16, 32), (0.5, 1, 2), (4, 8, 16))
    rng = np.random.default_rng(1)
    yx = rng.uniform(0, 40, (12, 2))
    gt = np.concatenate([yx, yx + rng.uniform(8, 24, (12, 2))], -1).astype(np.float32)
    full, _ = rpn.anchor_targets_np(anchors, gt, samples=None)
    assert (full == 1).sum() > 8  # enough positives that the cap must bite
    if implementation == "numpy":
        labels, deltas = rpn.anchor_targets_np(anchors, gt, samples=16, rng=rng)
    else:
        labels, deltas = rpn.anchor_targets_ops(anchors, gt[None], np.ones((1, 12), bool),
                                                samples=16, seed=3)
        labels, deltas = ops.convert_to_numpy(labels)[0], ops.convert_to_numpy(deltas)[0]
    assert (labels == 1).sum() == 8 and (labels == 0).sum() == 8
    # sampled labels are a subset of the unsampled ones; deltas only on sampled positives
    assert np.all((labels == -1) | (labels == full))
    assert np.all(deltas[labels != 1] == 0)


def test_rpn_head_shapes_and_weights_shared_over_levels():
    head = rpn.RPNHead(anchors_per_location=3, channels=16)
    feats = [np.random.default_rng(i).normal(size=(2, s, s, 8)).astype("float32")
             for i, s in enumerate((16, 8, 4))]
    check_layer_contract(head, feats,
                                expected_shapes=[(2, 3 * (256 + 64 + 16)),
                                                 (2, 3 * (256 + 64 + 16), 4)])
    assert len(head.get_weights()) == 6  # 3 convs x (kernel, bias), whatever the level count
    all_logits, _ = head(feats)
    alone_logits, _ = head(feats[1])  # the same head on level 1 alone
    start = 3 * 256
    np.testing.assert_allclose(ops.convert_to_numpy(all_logits)[:, start:start + 3 * 64],
                               ops.convert_to_numpy(alone_logits), atol=1e-5)


def test_anchor_targets_layer_contract():
    layer = rpn.AnchorTargets(samples=4, seed=0)
    labels, _ = check_layer_contract(layer, [ANCHORS, GT[None], GT_VALID[None]],
                                     expected_shapes=[(1, 6), (1, 6, 4)])
    # 3 positives capped at 4 * 0.5 = 2, then 4 - 2 = 2 negatives (exactly the two there are)
    assert (labels == 1).sum() == 2 and (labels == 0).sum() == 2
    with pytest.raises(ValueError, match="negative_iou < positive_iou"):
        rpn.AnchorTargets(positive_iou=0.3, negative_iou=0.5)


def test_proposal_layer_matches_reference():
    anchors = A.pyramid_anchors((64, 64), (8, 16, 32), (0.5, 1, 2), (4, 8, 16)).astype("float32")
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, len(anchors))).astype("float32")
    deltas = rng.normal(scale=0.5, size=(2, len(anchors), 4)).astype("float32")
    layer = rpn.ProposalLayer((64, 64), pre_nms_top_k=300, post_nms_top_n=40, nms_threshold=0.7)
    boxes, scores, valid = check_layer_contract(layer, [logits, deltas, anchors],
                                                expected_shapes=[(2, 40, 4), (2, 40), (2, 40)])
    for i in range(2):
        ref_boxes, ref_scores = rpn.proposals_np(logits[i], deltas[i], anchors, (64, 64),
                                                 pre_nms_top_k=300, post_nms_top_n=40,
                                                 nms_threshold=0.7)
        n = int(valid[i].sum())
        assert n == len(ref_boxes)
        np.testing.assert_allclose(boxes[i, :n], ref_boxes, atol=1e-3)
        np.testing.assert_allclose(scores[i, :n], ref_scores, atol=1e-5)
        assert np.all(boxes[i, n:] == 0)
        assert np.all((boxes[i] >= 0) & (boxes[i] <= 64))


def test_proposal_layer_with_fewer_anchors_than_pre_nms_top_k():
    anchors = A.level_anchors((32, 32), 8, (0.5, 1, 2), 4).astype("float32")  # 192 < 6000
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(1, len(anchors))).astype("float32")
    deltas = np.zeros((1, len(anchors), 4), "float32")
    boxes, scores, valid = rpn.ProposalLayer((32, 32), post_nms_top_n=15)([logits, deltas, anchors])
    ref_boxes, _ = rpn.proposals_np(logits[0], deltas[0], anchors, (32, 32), post_nms_top_n=15)
    n = int(ops.convert_to_numpy(valid)[0].sum())
    assert n == len(ref_boxes) == 15
    np.testing.assert_allclose(ops.convert_to_numpy(boxes)[0], ref_boxes, atol=1e-4)


def test_proposals_reference_is_clipped_and_suppressed():
    anchors = A.level_anchors((32, 32), 16, (1.0,), 8)
    logits = np.linspace(1, -1, len(anchors))
    boxes, scores = rpn.proposals_np(logits, np.zeros((len(anchors), 4)), anchors, (32, 32),
                                     nms_threshold=0.3)
    m = B.iou(boxes, boxes)
    np.fill_diagonal(m, 0)
    assert m.max() <= 0.3 and boxes.min() >= 0 and boxes.max() <= 32
    assert np.all(np.diff(scores) <= 0)


def test_anchor_targets_twin_on_real_nuclei(real_dsb):
    # real nuclei boxes tie often (symmetric anchors): the float32 twin must still agree
    from course_lib.data.nuclei import index_samples, load_sample
    from course_lib.ops.masks import masks_to_boxes

    image, masks = load_sample(index_samples(real_dsb)[0])
    gt = masks_to_boxes(masks).astype(np.float32)
    anchors = A.pyramid_anchors(image.shape, (8, 16, 32, 64, 128), (0.5, 1, 2), (4, 8, 16, 32, 64))
    ref, ref_deltas = rpn.anchor_targets_np(anchors, gt, samples=None)
    labels, deltas = rpn.anchor_targets_ops(anchors, gt[None], np.ones((1, len(gt)), bool),
                                            samples=None)
    np.testing.assert_array_equal(ops.convert_to_numpy(labels)[0], ref)
    np.testing.assert_allclose(ops.convert_to_numpy(deltas)[0], ref_deltas, atol=1e-4)


def test_one_best_anchor_per_box_even_when_many_tie():
    # A 10x10 box inside three 100x100 anchors that all contain it: each has IoU 100/10000 =
    # 0.01, an exact tie. The rule gives the box ONE anchor (the first of the tied), not three;
    # the fourth anchor misses the box (IoU 0) and is negative like the others.
    anchors = np.array([[0, 0, 100, 100], [5, 5, 105, 105], [10, 10, 110, 110],
                        [200, 200, 300, 300]], dtype=float)
    gt = np.array([[40, 40, 50, 50]], dtype=float)
    labels, matched, max_iou = rpn.match_anchors_np(anchors, gt)
    np.testing.assert_allclose(max_iou, [0.01, 0.01, 0.01, 0.0])
    np.testing.assert_array_equal(labels, [1, 0, 0, 0])
    ops_labels, _ = rpn.anchor_targets_ops(anchors, gt[None], np.ones((1, 1), bool), samples=None)
    np.testing.assert_array_equal(ops.convert_to_numpy(ops_labels)[0], [1, 0, 0, 0])

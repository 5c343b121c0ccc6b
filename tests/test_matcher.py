"""The matcher (course_lib.layers.matcher): hand-worked labels, ignore regions, the RoI rule,
and the chunked keras.ops twin against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from course_lib.layers import matcher
from course_lib.ops import anchors as A

# One gt box (0, 0, 10, 10), one tiny gt box (40, 40, 44, 44) and one padding row.
GT = np.array([[0, 0, 10, 10], [40, 40, 44, 44], [20, 20, 30, 30]], dtype=np.float32)
GT_VALID = np.array([True, True, False])
BOXES = np.array([
    [0, 0, 10, 10],    # IoU 1 with gt 0                            -> 1
    [0, 5, 10, 15],    # inter 50, union 150: 0.33 (0.3 < . < 0.7)  -> -1
    [20, 20, 30, 30],  # overlaps only the padding row              -> 0
    [0, 0, 10, 8],     # inter 80, union 100: 0.8                   -> 1
    [0, 6, 10, 16],    # inter 40, union 160: 0.25                  -> 0
    [40, 40, 50, 50],  # 16 / 100 = 0.16 with gt 1, but its best    -> 1 (low-quality match)
], dtype=np.float32)


def test_hand_worked_rpn_rule():
    labels, matched, max_iou = matcher.match_np(BOXES, GT, GT_VALID)
    np.testing.assert_array_equal(labels, [1, -1, 0, 1, 0, 1])
    np.testing.assert_allclose(max_iou, [1, 1 / 3, 0, 0.8, 0.25, 0.16], atol=1e-6)
    assert matched[5] == 1 and matched[0] == 0
    # without low-quality matches the tiny box's anchor (IoU 0.16 <= 0.3) is a negative
    labels, _, _ = matcher.match_np(BOXES, GT, GT_VALID, allow_low_quality=False)
    np.testing.assert_array_equal(labels, [1, -1, 0, 1, 0, 0])


def test_roi_rule_has_no_band():
    # positive_iou == negative_iou == 0.5: >= 0.5 positive, < 0.5 background, nothing ignored
    rois = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 4.9], [0, 5, 10, 15]], np.float32)
    # IoUs with gt 0: 1, 50/100 = 0.5 exactly, 49/100, 50/150
    labels, _, _ = matcher.match_np(rois, GT[:1], positive_iou=0.5, negative_iou=0.5,
                                    allow_low_quality=False)
    np.testing.assert_array_equal(labels, [1, 1, 0, 0])
    got, _, _ = matcher.match_ops(rois[None], GT[None, :1], np.ones((1, 1), bool), 0.5,
                                  negative_iou=0.5,
                                  allow_low_quality=False)
    np.testing.assert_array_equal(ops.convert_to_numpy(got)[0], [1, 1, 0, 0])


def test_ioa_hand_worked():
    # box (0, 0, 10, 10) (area 100) against region (5, 0, 20, 20): intersection 5 x 10 = 50
    np.testing.assert_allclose(matcher.ioa_np([[0, 0, 10, 10]], [[5, 0, 20, 20]]), [[0.5]])
    # IoA is not symmetric: the region's own IoA with the box is 50 / 300
    np.testing.assert_allclose(matcher.ioa_np([[5, 0, 20, 20]], [[0, 0, 10, 10]]), [[1 / 6]])
    np.testing.assert_allclose(ops.convert_to_numpy(
        matcher.ioa_ops(np.array([[0, 0, 10, 10]], "float32"),
                        np.array([[5, 0, 20, 20]], "float32"))), [[0.5]])


def test_ignore_regions_hand_worked():
    # Region (18, 18, 32, 25) covers box 2 (20, 20, 30, 30) for 10 x 5 = 50 of its 100 px:
    # IoA 0.5 -> ignored. Region (0, 0, 10, 8) covers box 4 (0, 6, 10, 16) for 10 x 2 = 20 of
    # 100 px (IoA 0.2, stays negative) and box 3 entirely, but box 3 is positive and stays so.
    # Box 0 (0, 0, 10, 10): 10 x 8 = 80 -> 0.8; box 1 (0, 5, 10, 15): 10 x 3 = 30 -> 0.3.
    ignore = np.array([[18, 18, 32, 25], [0, 0, 10, 8]], np.float32)
    ioa = matcher.ioa_np(BOXES, ignore).max(axis=1)
    np.testing.assert_allclose(ioa, [0.8, 0.3, 0.5, 1.0, 0.2, 0.0], atol=1e-6)
    labels, _, _ = matcher.match_np(BOXES, GT, GT_VALID, ignore_boxes=ignore)
    # anchor 1 was -1 anyway; 2: IoA 0.5 -> -1; 4: IoA 0.2 stays 0; positives stay 1
    np.testing.assert_array_equal(labels, [1, -1, -1, 1, 0, 1])
    got, _, _ = matcher.match_ops(BOXES, GT[None], GT_VALID[None], ignore_boxes=ignore[None],
                                  ignore_valid=np.ones((1, 2), bool))
    np.testing.assert_array_equal(ops.convert_to_numpy(got)[0], [1, -1, -1, 1, 0, 1])


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_twin_matches_reference_with_and_without_chunks(chunk):
    anchors = A.pyramid_anchors((64, 64), (8, 16, 32), (0.5, 1, 2), (4, 8, 16)).astype("float32")
    rng = np.random.default_rng(0)
    yx = rng.uniform(0, 48, (2, 7, 2))
    gt = np.concatenate([yx, yx + rng.uniform(4, 16, (2, 7, 2))], -1).astype(np.float32)
    valid = np.array([[1, 1, 1, 0, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]], bool)
    ignore = np.array([[[0, 0, 20, 20]], [[30, 30, 64, 64]]], np.float32)
    labels, matched, max_iou = matcher.match_ops(anchors, gt, valid, ignore_boxes=ignore,
                                                 ignore_valid=np.ones((2, 1), bool), chunk=chunk)
    labels, matched = ops.convert_to_numpy(labels), ops.convert_to_numpy(matched)
    for i in range(2):
        rl, rm, ri = matcher.match_np(anchors, gt[i], valid[i], ignore_boxes=ignore[i])
        np.testing.assert_array_equal(labels[i], rl)
        np.testing.assert_allclose(ops.convert_to_numpy(max_iou)[i], ri, atol=1e-5)
        pos = rl == 1
        np.testing.assert_array_equal(matched[i][pos], rm[pos])
    assert (labels == 1).sum() > 10 and (labels == -1).sum() > 10  # the case is not trivial


def test_first_of_tied_best_anchors_wins():
    # A 10x10 box inside three 100x100 anchors that all contain it: IoU 0.01 each, a tie. The
    # box gets ONE anchor (the first); the fourth anchor misses the box.
    anchors = np.array([[0, 0, 100, 100], [5, 5, 105, 105], [10, 10, 110, 110],
                        [200, 200, 300, 300]], np.float32)
    gt = np.array([[40, 40, 50, 50]], np.float32)
    labels, _, _ = matcher.match_np(anchors, gt)
    np.testing.assert_array_equal(labels, [1, 0, 0, 0])
    got, _, _ = matcher.match_ops(anchors, gt[None], np.ones((1, 1), bool))
    np.testing.assert_array_equal(ops.convert_to_numpy(got)[0], [1, 0, 0, 0])


def test_no_valid_gt_means_all_negative():
    labels, _, _ = matcher.match_ops(BOXES, GT[None], np.zeros((1, 3), bool))
    np.testing.assert_array_equal(ops.convert_to_numpy(labels)[0], 0)


def test_chunk_bounds_memory_at_1024_with_400_nuclei():
    # The IoU block is A x chunk: at 1024 px (261,888 anchors) it must stay near 16 MB
    anchors = A.level_counts((1024, 1024), (8, 16, 32, 64, 128), (0.5, 1, 2), (4, 8, 16, 32, 64))
    a = sum(anchors)
    chunk = max(1, matcher.MATCH_CHUNK_ELEMENTS // a)
    assert a == 261888 and chunk < 400
    assert a * chunk * 4 <= 20 * 2**20

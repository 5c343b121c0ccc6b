"""Exercise checks of notebooks 06 (anchor labels) and 07 (RoIPool of one box).

The references are compared with labels and pooled values worked out by hand (the IoUs in the
case descriptions), and the checks must reject typical mistakes and name the rule that broke.
"""

from __future__ import annotations

import numpy as np
import pytest

from course_lib import exercises
from course_lib.ops import boxes

# --------------------------------------------------------------------------- 06: anchor labels

#: The labels of LABEL_ANCHOR_CASES, by hand: rule 1 (IoU >= 0.7 -> 1), rule 2 (<= 0.3 -> 0,
#: in between -1), rule 3 (the first best anchor of each box -> 1).
HAND_LABELS = [[1, 1, 0], [1, 0, -1], [1, 0, 0], [1, -1, 0], [1, 1, 0, 0], [0, 0]]


def _label(anchors, gt, negative_strict=False, all_ties=False, best_rule=True):
    """A plain-loop labeller with switchable mistakes (the learner's usual ones)."""
    overlaps = boxes.iou(anchors, gt)
    best = overlaps.max(axis=1) if overlaps.shape[1] else np.zeros(len(anchors))
    negative = best < 0.3 if negative_strict else best <= 0.3
    labels = np.where(best >= 0.7, 1, np.where(negative, 0, -1))
    if best_rule:
        for g in range(overlaps.shape[1]):
            column = overlaps[:, g]
            if column.max() <= 0:
                continue
            if all_ties:
                labels[column == column.max()] = 1
            else:
                labels[int(np.argmax(column))] = 1
    return labels


def test_label_cases_match_the_hand_worked_labels():
    assert len(HAND_LABELS) == len(exercises.LABEL_ANCHOR_CASES)
    for case, hand in zip(exercises.LABEL_ANCHOR_CASES, HAND_LABELS, strict=True):
        anchors, gt = case.args
        np.testing.assert_array_equal(exercises.ch06_anchors_and_rpn._label_reference(anchors, gt),
                                      hand, err_msg=case.description)
        np.testing.assert_array_equal(_label(anchors, gt), hand, err_msg=case.description)


def test_the_exactly_0_3_case_is_exactly_0_3():
    anchors, gt = exercises.LABEL_ANCHOR_CASES[1].args
    assert boxes.iou(anchors, gt)[1, 0] == 0.3        # 30 px of 100: the tie the rule settles


def test_check_label_anchors_accepts_a_correct_labeller(capsys):
    assert exercises.check_label_anchors(_label) is True
    assert "all 6 cases pass" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, rule_text", [
    (dict(negative_strict=True), "rule 2: an anchor whose best IoU is <= 0.3 is negative"),
    (dict(all_ties=True), "rule 3 gives each box only ONE best anchor"),
    (dict(best_rule=False), "rule 3: anchor 0 is the best anchor of box 0"),
])
def test_check_label_anchors_names_the_rule_that_broke(mistake, rule_text, capsys):
    with pytest.raises(exercises.ExerciseFailed):
        exercises.check_label_anchors(lambda a, g: _label(a, g, **mistake))
    assert rule_text in capsys.readouterr().out


def test_label_rule_failed_for_rule_one_and_the_neutral_band():
    anchors, gt = exercises.LABEL_ANCHOR_CASES[0].args
    message = exercises.label_rule_failed(anchors, gt, [1, -1, 0], [1, 1, 0])
    assert "anchor 1 (its best IoU 0.80)" in message and "rule 1" in message
    anchors, gt = exercises.LABEL_ANCHOR_CASES[1].args
    message = exercises.label_rule_failed(anchors, gt, [1, 0, 0], [1, 0, -1])
    assert "anchor 2" in message and "neutral (-1)" in message
    assert exercises.label_rule_failed(anchors, gt, [1, 0], [1, 0, -1]).startswith("shape")
    assert exercises.label_rule_failed(anchors, gt, [1, 0, -1], [1, 0, -1]) is None


# --------------------------------------------------------------------------- 07: RoIPool of a box

#: RoIPool of ROI_POOL_BOX_CASES by hand (ramp = 10*row + col; squares = row**2 + 3*col).
HAND_POOLED = [
    [[11, 13], [31, 33]],                  # rows/cols [0, 2) and [2, 4)
    [[32]],                                # rows [1, 4), cols [1, 3): max at (3, 2)
    [[7, 13, 19], [12, 18, 24]],           # rows {1, 2} and {2, 3}; cols {0,1} {2,3} {4,5}
    [[13, 19], [25, 31]],                  # cells rows [1, 5), cols [2, 6) at stride 2
    [[11, 11], [11, 11]],                  # one cell (1, 1) for every bin
    [[33, 0], [0, 0]],                     # only bin (0, 0) has cells inside the 4×4 map
]


def _pool_by_loops(features, box, output_size, spatial_scale):
    out_h, out_w = output_size
    height, width = features.shape
    start = [int(np.floor(v * spatial_scale + 0.5)) for v in box[:2]]
    end = [int(np.floor(v * spatial_scale + 0.5)) for v in box[2:]]
    size = [max(e - s, 1) for s, e in zip(start, end, strict=True)]
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        r0 = min(max(start[0] + int(np.floor(i * size[0] / out_h)), 0), height)
        r1 = min(max(start[0] + int(np.ceil((i + 1) * size[0] / out_h)), 0), height)
        for j in range(out_w):
            c0 = min(max(start[1] + int(np.floor(j * size[1] / out_w)), 0), width)
            c1 = min(max(start[1] + int(np.ceil((j + 1) * size[1] / out_w)), 0), width)
            out[i, j] = features[r0:r1, c0:c1].max() if r1 > r0 and c1 > c0 else 0.0
    return out


def test_roi_pool_cases_match_the_hand_worked_values():
    reference = exercises.ch07_roi_pool_vs_roi_align._roi_pool_box_reference
    for case, hand in zip(exercises.ROI_POOL_BOX_CASES, HAND_POOLED, strict=True):
        np.testing.assert_allclose(reference(*case.args), hand, err_msg=case.description)


def test_check_roi_pool_box_accepts_loops_and_rejects_no_half_up_rounding(capsys):
    assert exercises.check_roi_pool_box(_pool_by_loops) is True

    def truncating(features, box, output_size, spatial_scale):   # int() instead of rounding
        return _pool_by_loops(features, np.floor(np.asarray(box)), output_size, spatial_scale)

    with pytest.raises(exercises.ExerciseFailed):
        exercises.check_roi_pool_box(truncating)
    assert "case 2/6" in capsys.readouterr().out

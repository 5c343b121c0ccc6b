"""Exercise checks of notebooks 08 (mask target, mask loss, RoI sampling) and 09 (paste a mask).

Each reference is compared with values worked out by hand and with a plain-loop answer written
here (not the library); each check accepts that answer and rejects the usual mistake.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_lib import exercises
from course_lib.exercises import ch08_heads_and_losses as ch08
from course_lib.exercises import ch09_mask_rcnn as ch09

# --------------------------------------------------------------------------- plain helpers


def _bilinear_clamped(grid, y, x):
    """Bilinear read of a 2-D grid at (y, x), cell (i, j) centred at (i, j), edges extended."""
    h, w = grid.shape
    y, x = min(max(y, 0.0), h - 1.0), min(max(x, 0.0), w - 1.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * grid[y0, x0] + (1 - ly) * lx * grid[y0, x1]
            + ly * (1 - lx) * grid[y1, x0] + ly * lx * grid[y1, x1])


# --------------------------------------------------------------------------- 08: mask target


def _mask_target_loops(gt_mask, roi, size, frame="roi", threshold=True):
    """Crop-and-resize by loops: zero border, 2×2 samples per cell, mean, >= 0.5.

    ``frame="gt"`` is the usual mistake: cutting the gt mask's own box instead of the RoI.
    """
    padded = np.pad(np.asarray(gt_mask, float), 1)
    if frame == "gt":
        rows, cols = np.flatnonzero(gt_mask.any(1)), np.flatnonzero(gt_mask.any(0))
        roi = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    y1, x1, y2, x2 = (float(v) + 1.0 for v in roi)        # +1: the zero border
    out = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            total = 0.0
            for a in (0.25, 0.75):
                for b in (0.25, 0.75):
                    y = y1 + (i + a) * (y2 - y1) / size - 0.5
                    x = x1 + (j + b) * (x2 - x1) / size - 0.5
                    total += _bilinear_clamped(padded, y, x)
            out[i, j] = total / 4
    return (out >= 0.5).astype(float) if threshold else out


def test_mask_target_reference_matches_hand_worked_cases_and_loops():
    ref = ch08._mask_target_reference
    np.testing.assert_array_equal(ref(*exercises.MASK_TARGET_CASES[0].args), np.ones((28, 28)))
    twice = np.zeros((28, 28))
    twice[7:21, 7:21] = 1.0                       # the square covers RoI pixels 10..23 of 3..30
    np.testing.assert_array_equal(ref(*exercises.MASK_TARGET_CASES[1].args), twice)
    for case in exercises.MASK_TARGET_CASES:
        np.testing.assert_array_equal(ref(*case.args), _mask_target_loops(*case.args),
                                      err_msg=case.description)


def test_check_mask_target_accepts_loops_rejects_gt_frame_and_soft_targets(capsys):
    assert exercises.check_mask_target(_mask_target_loops) is True
    assert "all 5 cases pass" in capsys.readouterr().out
    with pytest.raises(exercises.ExerciseFailed):
        exercises.check_mask_target(lambda m, r, s: _mask_target_loops(m, r, s, frame="gt"))
    assert "case 2/5" in capsys.readouterr().out      # the gt box's frame: all ones
    with pytest.raises(exercises.ExerciseFailed):
        exercises.check_mask_target(lambda m, r, s: _mask_target_loops(m, r, s, threshold=False))
    assert "failed" in capsys.readouterr().out


# --------------------------------------------------------------------------- 08: mask loss


def _bce(x, z):
    return np.logaddexp(0.0, x) - x * z          # -z log s(x) - (1 - z) log(1 - s(x))


def _mask_loss_loops(logits, targets, class_ids, mistake=None):
    per_roi = []
    for i, k in enumerate(class_ids):
        if mistake == "all_channels":             # every class channel trained on this mask
            per_roi.append(np.mean([_bce(logits[i, ..., c], targets[i]).mean()
                                    for c in range(logits.shape[-1])]))
        elif mistake == "softmax":                # FCN-style multinomial over the classes
            log_p = logits[i] - np.logaddexp.reduce(logits[i], axis=-1, keepdims=True)
            label = np.where(targets[i] >= 0.5, k, 0)
            per_roi.append(-np.take_along_axis(log_p, label[..., None], -1).mean())
        else:
            per_roi.append(_bce(logits[i, ..., k], targets[i]).mean())
    return float(np.mean(per_roi))


def test_mask_loss_reference_matches_hand_worked_values_and_loops():
    ref = ch08._mask_loss_reference
    assert ref(*exercises.MASK_LOSS_CASES[0].args) == pytest.approx(math.log(2), rel=1e-5)
    # RoI 0: class 1 logit +20 on a target of 1 costs ~0; RoI 1: class 2 logit -20 costs 20.
    assert ref(*exercises.MASK_LOSS_CASES[1].args) == pytest.approx(10.0, rel=1e-5)
    for case in exercises.MASK_LOSS_CASES:
        assert ref(*case.args) == pytest.approx(_mask_loss_loops(*case.args), rel=1e-4)


@pytest.mark.parametrize("mistake", ["all_channels", "softmax"])
def test_check_mask_loss_accepts_loops_and_rejects_other_channels(mistake, capsys):
    assert exercises.check_mask_loss(_mask_loss_loops) is True
    with pytest.raises(exercises.ExerciseFailed):
        exercises.check_mask_loss(lambda a, b, c: _mask_loss_loops(a, b, c, mistake))
    assert "instead of" in capsys.readouterr().out


# --------------------------------------------------------------------------- 08: RoI sampling

#: By hand (IoUs in ch08's comments: p1 has IoU exactly 0.5 with gt 0, p5 0.47 with gt 1).
HAND_SAMPLES = [
    ([0, 7, 5, 4], [1, 2, 0, 0]),   # positives 0,1,2,3,6,7: keys .9 and .85 win; 2 negatives
    ([0, 5, 4], [3, 0, 0]),         # one positive slot
    ([4, 1, 2, 0], [2, 0, 0, 0]),   # only the gt box is positive; 3 negatives fill the rest
    ([3, 1, 0, 2], [1, 1, 1, 0]),   # 16 slots for 4 candidates
]


def _iou(a, b):
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _sample_loops(proposals, gt_boxes, gt_class_ids, num_samples, fraction, keys,
                  add_gt=True, strict=False, fixed_negatives=False):
    cands = list(proposals) + (list(gt_boxes) if add_gt else [])
    pos, neg, cls = [], [], {}
    for i, c in enumerate(cands):
        ious = [_iou(c, g) for g in gt_boxes]
        best = max(ious)
        if (best > 0.5) if strict else (best >= 0.5):
            pos.append(i)
            cls[i] = int(gt_class_ids[int(np.argmax(ious))])
        else:
            neg.append(i)
    pos = sorted(pos, key=lambda i: -keys[i])[:round(num_samples * fraction)]
    n_neg = num_samples - round(num_samples * fraction) if fixed_negatives else num_samples - len(pos)
    neg = sorted(neg, key=lambda i: -keys[i])[:n_neg]
    return np.array(pos + neg), np.array([cls[i] for i in pos] + [0] * len(neg))


def test_sample_rois_reference_matches_hand_worked_samples_and_loops():
    for case, (idx, cls) in zip(exercises.SAMPLE_ROIS_CASES, HAND_SAMPLES, strict=True):
        got = ch08._sample_rois_reference(*case.args)
        np.testing.assert_array_equal(got[0], idx, err_msg=case.description)
        np.testing.assert_array_equal(got[1], cls, err_msg=case.description)
        loops = _sample_loops(*case.args)
        np.testing.assert_array_equal(loops[0], idx)
        np.testing.assert_array_equal(loops[1], cls)


def test_the_half_iou_proposal_is_exactly_half():
    assert _iou(ch08._PROPOSALS[1], ch08._GT[0]) == 0.5


@pytest.mark.parametrize("mistake, failing_case", [
    (dict(add_gt=False), "case 1/4"),
    (dict(strict=True), "case 1/4"),
    (dict(fixed_negatives=True), "case 3/4"),
])
def test_check_sample_rois_accepts_loops_and_rejects_usual_mistakes(mistake, failing_case, capsys):
    assert exercises.check_sample_rois(_sample_loops) is True
    capsys.readouterr()
    with pytest.raises(exercises.ExerciseFailed):
        exercises.check_sample_rois(lambda *a: _sample_loops(*a, **mistake))
    assert failing_case in capsys.readouterr().out


# --------------------------------------------------------------------------- 09: paste a mask


def _paste_loops(mini, box, shape, half_pixel=True):
    h, w = mini.shape
    y1, x1, y2, x2 = box
    out = np.zeros(shape[:2], bool)
    off = 0.5 if half_pixel else 0.0
    for r in range(shape[0]):
        for c in range(shape[1]):
            if y1 <= r + 0.5 < y2 and x1 <= c + 0.5 < x2:
                y = (r + off - y1) * h / (y2 - y1) - off
                x = (c + off - x1) * w / (x2 - x1) - off
                out[r, c] = _bilinear_clamped(mini, y, x) >= 0.5
    return out


def _paste_nearest(mini, box, shape):
    """The usual shortcut: round the box, nearest-neighbour resize into it."""
    from skimage.transform import resize

    y1, x1, y2, x2 = (int(round(v)) for v in box)
    out = np.zeros(shape[:2], bool)
    patch = resize(mini >= 0.5, (y2 - y1, x2 - x1), order=0, anti_aliasing=False)
    r0, c0 = max(y1, 0), max(x1, 0)
    r1, c1 = min(y2, shape[0]), min(x2, shape[1])
    out[r0:r1, c0:c1] = patch[r0 - y1:r1 - y1, c0 - x1:c1 - x1]
    return out


def test_paste_reference_matches_hand_worked_cases_and_loops():
    ref = ch09._paste_reference
    ones = ref(*exercises.PASTE_MASK_CASES[0].args)
    expected = np.zeros((12, 10), bool)
    expected[2:9, 3:7] = True
    np.testing.assert_array_equal(ones, expected)
    half = ref(*exercises.PASTE_MASK_CASES[1].args)
    expected = np.zeros((10, 20), bool)
    expected[:, :7] = True                        # x = 2c + 0.5 reads column <= 13 for c <= 6
    np.testing.assert_array_equal(half, expected)
    for case in exercises.PASTE_MASK_CASES:
        np.testing.assert_array_equal(ref(*case.args), _paste_loops(*case.args),
                                      err_msg=case.description)


@pytest.mark.parametrize("wrong", [_paste_nearest,
                                   lambda m, b, s: _paste_loops(m, b, s, half_pixel=False)])
def test_check_paste_mask_accepts_loops_rejects_shortcuts(wrong, capsys):
    assert exercises.check_paste_mask(_paste_loops) is True
    with pytest.raises(exercises.ExerciseFailed):
        exercises.check_paste_mask(wrong)
    assert "failed" in capsys.readouterr().out

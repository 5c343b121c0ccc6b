"""The U-Net border weight map and the three-class target, against hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.segmentation import find_boundaries

from course_lib.ops import weight_map as wm


def _two_bars(gap: int = 3) -> np.ndarray:
    """Two 2-px-wide vertical nuclei separated by a gap of ``gap`` background columns."""
    labels = np.zeros((9, 4 + gap + 8), np.int32)
    labels[2:7, 4:6] = 1
    labels[2:7, 6 + gap:8 + gap] = 2
    return labels


def test_hand_worked_gap_pixel():
    labels = _two_bars(gap=3)  # columns 4-5 nucleus 1, 6-8 gap, 9-10 nucleus 2
    border = wm.border_weight(labels, w0=10, sigma=5)
    # middle gap pixel (4, 7): d1 = d2 = 2 (to column 5 and to column 9), so
    # border term = 10·exp(-(2+2)²/(2·25)) = 10·exp(-0.32) = 7.26149
    assert border[4, 7] == pytest.approx(10 * np.exp(-16 / 50), rel=1e-6)
    assert border[4, 7] == pytest.approx(7.26149, abs=1e-5)
    # gap pixel (4, 6) next to nucleus 1: d1 = 1, d2 = 3 -> 10·exp(-16/50) too (d1+d2 = 4)
    assert border[4, 6] == pytest.approx(7.26149, abs=1e-5)
    # class weights: 20 foreground pixels of 9·15 = 135 -> w_fg = 135/(2·20) = 3.375,
    # w_bg = 135/(2·115) = 0.586957
    full = wm.weight_map(labels, w0=10, sigma=5)
    assert full[4, 7] == pytest.approx(135 / 230 + 10 * np.exp(-16 / 50), rel=1e-6)
    assert full[4, 4] == pytest.approx(135 / 40, rel=1e-6)  # inside a nucleus: w_c only


def test_border_term_vanishes_far_away_and_inside():
    labels = np.zeros((120, 120), np.int32)
    labels[10:14, 10:14] = 1
    labels[10:14, 18:22] = 2
    border = wm.border_weight(labels)
    # pixel (110, 110) is ~137 px from both: 10·exp(-(274)²/50) underflows to 0
    assert border[110, 110] == 0.0
    assert border[labels > 0].max() == 0.0  # background_only
    # gap columns 14..17; pixel (12, 16): d1 = 2 (to column 18), d2 = 3 (to column 13),
    # so 10·exp(-(5)²/50) = 10·exp(-0.5) = 6.0653
    assert border[12, 16] == pytest.approx(6.0653, abs=1e-4)


def test_zero_or_one_instance_gives_no_border_term():
    empty = np.zeros((20, 30), np.int32)
    assert wm.border_weight(empty).max() == 0.0
    np.testing.assert_array_equal(wm.weight_map(empty), np.ones((20, 30), np.float32))
    single = empty.copy()
    single[5:10, 5:10] = 7  # ids need not start at 1
    assert wm.border_weight(single).max() == 0.0  # d2 = inf
    d1, d2 = wm.nearest_two_distances(single)
    assert np.isinf(d2).all() and d1[5, 12] == 3.0


def _brute_force_border(labels, w0, sigma):
    """Oracle: full-image distance transform per instance, sorted."""
    ids = [i for i in np.unique(labels) if i > 0]
    if len(ids) < 2:
        return np.zeros(labels.shape)
    d = np.stack([ndimage.distance_transform_edt(labels != i) for i in ids])
    d.sort(axis=0)
    term = w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma ** 2))
    term[labels > 0] = 0
    return term


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 8), st.floats(2.0, 8.0))
def test_windowed_distances_match_the_brute_force(seed, n, sigma):
    rng = np.random.default_rng(seed)
    labels = np.zeros((48, 64), np.int32)
    for i in range(1, n + 1):
        y, x = rng.integers(0, 44), rng.integers(0, 60)
        labels[y:y + rng.integers(1, 5), x:x + rng.integers(1, 5)] = i
    got = wm.border_weight(labels, w0=10, sigma=sigma)
    np.testing.assert_allclose(got, _brute_force_border(labels, 10, sigma), atol=2e-6)


def test_class_balance_weights():
    labels = np.zeros((4, 5), np.int32)
    labels[0, :4] = 3  # 4 of 20 pixels foreground: w_fg = 20/(2·4) = 2.5, w_bg = 20/(2·16)
    w = wm.class_balance_weights(labels)
    assert w[0, 0] == 2.5 and w[3, 3] == pytest.approx(0.625)
    # each class contributes equally: sum over fg == sum over bg == N/2
    assert w[labels > 0].sum() == pytest.approx(10) and w[labels == 0].sum() == pytest.approx(10)
    classes = np.array([[0, 1, 2, 2]])
    np.testing.assert_allclose(wm.class_balance_weights(classes, n_classes=3),
                               [[4 / 3, 4 / 3, 2 / 3, 2 / 3]])


def test_three_class_target_separates_touching_nuclei():
    labels = np.zeros((12, 14), np.int32)
    labels[3:9, 2:7] = 1
    labels[3:9, 7:12] = 2  # touching along columns 6 | 7
    t = wm.three_class_target(labels)
    assert set(np.unique(t)) == {0, 1, 2}
    assert (t[:, 6][3:9] == 2).all() and (t[:, 7][3:9] == 2).all()  # both rims at the contact
    assert t[5, 4] == 1 and t[0, 0] == 0
    # width 1 equals scikit-image's inner boundaries of the labels
    np.testing.assert_array_equal(wm.instance_borders(labels),
                                  find_boundaries(labels, mode="inner") & (labels > 0))
    # interior components are the two nuclei
    assert ndimage.label(t == 1)[1] == 2
    thick = wm.three_class_target(labels, border_width=2)
    assert (thick == 2).sum() > (t == 2).sum()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="H×W label image"):
        wm.weight_map(np.zeros((4, 4, 2), np.int32))
    with pytest.raises(ValueError, match="integer"):
        wm.border_weight(np.zeros((4, 4), np.float32))


def test_exercise_check_accepts_the_brute_force_and_rejects_the_interior_term(capsys):
    from course_lib import exercises

    def brute(labels, w0, sigma):
        return wm.class_balance_weights(labels) + _brute_force_border(labels, w0, sigma)

    assert exercises.check_weight_map(brute)

    def everywhere(labels, w0, sigma):  # the border term also inside the nuclei
        ids = [i for i in np.unique(labels) if i > 0]
        if len(ids) < 2:
            return wm.class_balance_weights(labels)
        d = np.sort(np.stack([ndimage.distance_transform_edt(labels != i) for i in ids]), 0)
        return wm.class_balance_weights(labels) + w0 * np.exp(-(d[0] + d[1]) ** 2 / (2 * sigma ** 2))

    with pytest.raises(exercises.ExerciseFailed, match="case 1"):
        exercises.check_weight_map(everywhere)
    assert "background pixels only" in capsys.readouterr().out

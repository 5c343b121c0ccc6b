"""The data-tour checks accept the library's answers and reject the usual mistakes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from course_lib import exercises
from course_lib.data.augment import flip_boxes_left_right
from course_lib.data.nuclei import has_hole
from course_lib.exercises import ch01_data_tour
from course_lib.ops.masks import masks_to_boxes


def test_hand_worked_cases_behind_the_checks():
    # rows 1-2 and columns 2-4 -> (1, 2, 3, 5); a single pixel (5, 7) -> (5, 7, 6, 8)
    np.testing.assert_array_equal(masks_to_boxes(ch01_data_tour._two_masks()),
                                  [[1, 2, 3, 5], [5, 7, 6, 8]])
    # x edges 2 and 5 in a 10-wide image land at 10 - 5 = 5 and 10 - 2 = 8
    np.testing.assert_array_equal(flip_boxes_left_right(np.array([[1.0, 2, 4, 5]]), 10),
                                  [[1, 5, 4, 8]])
    assert has_hole(ch01_data_tour._ring_mask()) and not has_hole(np.ones((3, 3), bool))


def test_library_functions_pass(capsys):
    assert exercises.check_masks_to_boxes(masks_to_boxes)
    assert exercises.check_flip_boxes_left_right(flip_boxes_left_right)
    assert exercises.check_has_hole(has_hole)
    assert capsys.readouterr().out.count("✓") == 3


def _inclusive_boxes(masks):  # the classic mistake: rmax instead of rmax + 1
    return masks_to_boxes(masks) - np.array([0, 0, 1, 1]) * (masks_to_boxes(masks) > 0)


def _flip_without_swapping(boxes, width):  # forgets that x1 comes from the old x2
    b = np.asarray(boxes, float).reshape(-1, 4)
    return np.stack([b[:, 0], width - b[:, 1], b[:, 2], width - b[:, 3]], axis=1)


def _any_background(mask):  # counts every background pixel as a hole
    return bool((~np.asarray(mask, bool)).any())


def _fill_counts_border(mask):  # binary_fill_holes with the border treated as enclosing
    padded = np.pad(np.asarray(mask, bool), 1, constant_values=True)
    return bool(ndimage.binary_fill_holes(padded).sum() > padded.sum())


@pytest.mark.parametrize("check, wrong", [
    (exercises.check_masks_to_boxes, _inclusive_boxes),
    (exercises.check_flip_boxes_left_right, _flip_without_swapping),
    (exercises.check_has_hole, _any_background),
    (exercises.check_has_hole, _fill_counts_border),
])
def test_usual_mistakes_fail_with_a_hint(check, wrong, capsys):
    with pytest.raises(exercises.ExerciseFailed):
        check(wrong)
    assert "Hint:" in capsys.readouterr().out


def _lloyd(x, centres, iterations=50):
    """k-means written out here: nearest centre, then the mean of each cluster, until still."""
    x, centres = np.asarray(x, float), np.asarray(centres, float).copy()
    for _ in range(iterations):
        labels = ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        moved = np.array([x[labels == j].mean(0) if (labels == j).any() else centres[j]
                          for j in range(len(centres))])
        if np.allclose(moved, centres):
            break
        centres = moved
    return centres, labels


def test_kmeans_check_accepts_lloyd_and_its_first_case_is_hand_worked():
    assert exercises.check_kmeans(_lloyd)
    # worked by hand: from centres 0 and 1, the points 0, 1, 10, 11 settle at 0.5 and 10.5
    x, start = exercises.KMEANS_CASES[0].args
    centres, labels = ch01_data_tour._kmeans_reference(x, start)
    np.testing.assert_allclose(centres.ravel(), [0.5, 10.5])
    assert labels.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("wrong", [
    lambda x, c, iterations=50: _lloyd(x, c, 1),                       # stops after one step
    lambda x, c, iterations=50: (_lloyd(x, c)[0], _lloyd(x, c)[1] * 0),  # every label 0
    lambda x, c, iterations=50: _lloyd(x, c)[0],                       # forgets the labels
])
def test_kmeans_check_rejects_usual_mistakes(wrong, capsys):
    with pytest.raises(exercises.ExerciseFailed):
        exercises.check_kmeans(wrong)
    assert "Hint:" in capsys.readouterr().out

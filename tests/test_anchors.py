"""Anchors per level and over the pyramid (course_lib.ops.anchors), against hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.ops import anchors as A
from course_lib.ops.boxes import area


def test_first_anchor_hand_worked():
    # stride 4: cell (0, 0) is centred at (2, 2); scale 32, ratio 0.5 -> h = 32/sqrt(.5) = 45.25,
    # w = 32*sqrt(.5) = 22.63: box (2 - 22.63, 2 - 11.31, 2 + 22.63, 2 + 11.31)
    a = A.level_anchors((64, 64), 32, (0.5, 1, 2), 4)
    h, w = 32 / np.sqrt(0.5), 32 * np.sqrt(0.5)
    np.testing.assert_allclose(a[0], [2 - h / 2, 2 - w / 2, 2 + h / 2, 2 + w / 2])
    # second anchor: same cell, ratio 1: a 32x32 square around (2, 2)
    np.testing.assert_allclose(a[1], [-14, -14, 18, 18])
    # fourth anchor: next cell to the right (centre x = 6), ratio 0.5
    np.testing.assert_allclose(a[3], [2 - h / 2, 6 - w / 2, 2 + h / 2, 6 + w / 2])


def test_ratio_is_width_over_height_and_area_is_scale_squared():
    a = A.cell_anchors([16, 64], [0.25, 1, 4])
    hw = np.stack([a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]], axis=1)
    np.testing.assert_allclose(hw[:, 1] / hw[:, 0], [0.25, 1, 4, 0.25, 1, 4])
    np.testing.assert_allclose(area(a), [256] * 3 + [4096] * 3)


def test_counts_per_level():
    scales, ratios, strides = (32, 64, 128, 256, 512), (0.5, 1, 2), (4, 8, 16, 32, 64)
    counts = A.level_counts((256, 128), scales, ratios, strides)
    assert counts == [(256 // s) * (128 // s) * 3 for s in strides]  # 64*32*3 = 6144, ...
    anchors = A.pyramid_anchors((256, 128), scales, ratios, strides)
    assert anchors.shape == (sum(counts), 4)
    # level 2 (stride 16) starts after 6144 + 1536 anchors; its first is a 128-scale anchor at (8, 8)
    first = anchors[6144 + 1536]
    np.testing.assert_allclose((first[0] + first[2]) / 2, 8.0)
    np.testing.assert_allclose(area(first[None]), [128.0 ** 2])


def test_ceil_grid_and_anchor_stride():
    assert A.feature_shape((100, 30), 32) == (4, 1)
    a = A.level_anchors((32, 32), [8, 16], [1.0], 4, anchor_stride=2)
    assert a.shape == (4 * 4 * 2, 4)  # cells 0, 2, 4, 6 each way, 2 scales
    centres = np.unique((a[:, 0] + a[:, 2]) / 2)
    np.testing.assert_allclose(centres, [2, 10, 18, 26])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="one scale"):
        A.pyramid_anchors((64, 64), (32, 64), (1,), (4, 8, 16))
    with pytest.raises(ValueError, match="image_shape"):
        A.level_anchors((0, 64), 32, (1,), 4)


def test_exercise_check_rejects_corner_aligned_anchors(capsys):
    from course_lib import exercises

    assert exercises.check_level_anchors(A.level_anchors)

    def corner_aligned(image_shape, scale, ratios, stride):  # centres at i * stride, no + 0.5
        return A.level_anchors(image_shape, scale, ratios, stride) - stride / 2

    with pytest.raises(exercises.ExerciseFailed, match="case 1"):
        exercises.check_level_anchors(corner_aligned)

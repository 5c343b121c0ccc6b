"""Headless tests of the RoI pictures and the explorer widget."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from course_lib.ops import roi
from course_lib.viz import roi as viz_roi


def _features():
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 12, 2))


def test_shift_slider_quarter_pixel_moves_roi_align_not_roi_pool():
    w = viz_roi.roi_explorer(_features(), box=(40.0, 40.0, 150.0, 140.0), stride=16)
    before = w.result
    assert before["pool_change"] == 0.0 and before["align_change"] == 0.0
    w.controls["shift_x"].value = 0.25
    after = w.result
    assert w.renders == 2
    np.testing.assert_allclose(after["box"], [40.0, 40.25, 150.0, 140.25])
    np.testing.assert_array_equal(after["pool"], before["pool"])  # RoIPool snapped
    assert after["pool_change"] == 0.0
    assert after["align_change"] > 1e-4                          # RoIAlign followed
    assert not np.allclose(after["align"], before["align"])
    assert plt.get_fignums() == []


def test_explorer_state_matches_the_ops_and_pool_jumps_past_half_a_cell():
    feats = _features()
    box = (40.0, 40.0, 150.0, 140.0)
    # Unmoved: x1 = 40/16 = 2.5 -> 3, x2 = 140/16 = 8.75 -> 9 (6 cells).
    # +8 px: x1 = 3.0 -> 3, x2 = 9.25 -> 9: same cells, no change.
    # +12 px: x1 = 3.25 -> 3, x2 = 152/16 = 9.5 -> 10: the box grows to 7 cells, output jumps.
    state = viz_roi.roi_explorer_state(feats, box, stride=16, shift_x=8.0)
    assert state["pool_change"] == 0.0
    state = viz_roi.roi_explorer_state(feats, box, stride=16, shift_x=12.0)
    np.testing.assert_allclose(state["pool"], roi.roi_pool(feats, np.array([state["box"]]), 7,
                                                           1 / 16)[0])
    assert state["pool_change"] > 0.0
    state = viz_roi.roi_explorer_state(feats, box, stride=16, scale=1.5, aligned=False)
    np.testing.assert_allclose(state["box"], [12.5, 15.0, 177.5, 165.0])


def test_aligned_checkbox_changes_output():
    w = viz_roi.roi_explorer(_features()[..., 0], stride=8)
    first = w.result["align"]
    w.controls["aligned"].value = False
    assert not np.allclose(w.result["align"], first)


def test_sample_grid_drawing_positions():
    fig = plt.figure()
    ax = fig.subplots()
    ys, xs = viz_roi.draw_roi_align_samples(ax, (0.0, 0.0, 32.0, 16.0), (2, 1), 8.0,
                                            sampling_ratio=2, aligned=True)
    # aligned: samples split the box evenly in image pixels: 32 px / 4 samples -> 4, 12, 20, 28.
    np.testing.assert_allclose(ys.ravel(), [4, 12, 20, 28])
    np.testing.assert_allclose(xs.ravel(), [4, 12])
    ys, _ = viz_roi.draw_roi_align_samples(ax, (0.0, 0.0, 32.0, 16.0), (2, 1), 8.0,
                                           sampling_ratio=2, aligned=False)
    np.testing.assert_allclose(ys.ravel(), [8, 16, 24, 32])  # half a cell (4 px) too far
    rects = viz_roi.draw_roi_pool_cells(ax, (3.0, 0.0, 29.0, 16.0), 2, 8.0)
    # 3/8 -> 0, 29/8 = 3.6 -> 4 cells; two bins of 2 cells: [0, 16) and [16, 32) px.
    np.testing.assert_allclose(rects[:, 0, [0, 2]], [[0, 16], [16, 32]])
    plt.close(fig)
    fig = viz_roi.draw_sample_grids(_features(), (20.0, 20.0, 100.0, 90.0))
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) >= 4
    plt.close(fig)

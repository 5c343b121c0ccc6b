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


def test_feature_grid_and_explorer_panels_have_labelled_axes():
    fig, ax = plt.subplots()
    viz_roi.draw_feature_grid(ax, _features(), 16)
    assert ax.get_xlabel() == "x (image px)" and ax.get_ylabel() == "y (image px)"
    plt.close(fig)
    state = viz_roi.draw_roi_explorer(_features(), (40.0, 40.0, 150.0, 140.0), 16)
    assert all(a.get_xlabel() and a.get_ylabel() for a in state["figure"].axes)
    plt.close(state["figure"])


def test_axis_samples_one_row_of_markers_per_method():
    fig, ax = plt.subplots()
    positions = {"a": np.array([10.0, 20.0, 30.0]), "b": np.array([12.0, 28.0])}
    viz_roi.draw_axis_samples(ax, positions, (8.0, 32.0), stride=8, n_cells=5)
    rows = {tuple(line.get_xdata()): set(line.get_ydata()) for line in ax.lines
            if line.get_linestyle() == "None"}
    assert rows[(10.0, 20.0, 30.0)] == {1} and rows[(12.0, 28.0)] == {0}   # top to bottom
    centres = [line for line in ax.lines if line.get_marker() == "|"][0]
    np.testing.assert_allclose(centres.get_xdata(), [4, 12, 20, 28, 36])    # (i + 0.5) * stride
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a", "cell centres"]
    assert ax.get_xlabel() == "x (image px)"
    plt.close(fig)


def test_crops_beside_boxes_pairs_each_box_with_its_crop():
    image = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    boxes = np.array([[4.0, 4.0, 20.0, 30.0], [30.0, 10.0, 60.0, 50.0]])
    crops = roi.roi_align(image[..., None], boxes, 7, 1.0)
    fig = viz_roi.draw_crops_beside_boxes(image, boxes, crops, [2, 3], per_row=2)
    used = [a for a in fig.axes if a.axison]
    assert len(used) == 4 and len(fig.axes) == 4
    assert [a.get_title() for a in used] == ["box 0: 16×26 px", "pooled from P2",
                                           "box 1: 30×40 px", "pooled from P3"]
    np.testing.assert_allclose(used[1].images[0].get_array(), crops[0, ..., 0])
    # the box is drawn where it is (edges at -0.5, as imshow puts pixel centres on integers)
    rect = used[0].patches[0]
    assert rect.get_xy() == (3.5, 3.5) and rect.get_width() == 26 and rect.get_height() == 16
    assert all(a.get_xlabel() and a.get_ylabel() for a in used)
    plt.close(fig)

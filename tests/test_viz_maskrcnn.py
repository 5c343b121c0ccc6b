"""Headless tests of the Mask R-CNN stage pictures and the stage explorer, on hand-made stages."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from course_lib.viz import maskrcnn as viz  # noqa: E402


def _stages():
    """Two 32×32 images; every count below is read off these arrays by hand."""
    anchors = np.array([[0, 0, 8, 8], [8, 8, 16, 16], [16, 16, 24, 24], [4, 4, 28, 28]], float)
    full = np.ones((28, 28))
    left = np.zeros((28, 28))
    left[:, :14] = 1.0
    return {
        "anchors": anchors,
        "rpn_scores": np.array([[0.9, 0.2, 0.6, 0.5], [0.1, 0.1, 0.1, 0.95]]),
        "proposals": np.array([[[0, 0, 8, 8], [8, 8, 16, 16], [0, 0, 0, 0]],
                               [[4, 4, 28, 28], [0, 0, 0, 0], [0, 0, 0, 0]]], float),
        "proposal_scores": np.array([[0.9, 0.3, 0.0], [0.95, 0.0, 0.0]]),
        "proposal_valid": np.array([[True, True, False], [True, False, False]]),
        "class_probs": np.array([[[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]],
                                 [[0.1, 0.9], [0.5, 0.5], [0.5, 0.5]]]),
        "refined_boxes": np.array([[[1, 1, 9, 9], [8, 8, 16, 16], [0, 0, 0, 0]],
                                   [[5, 5, 27, 27], [0, 0, 0, 0], [0, 0, 0, 0]]], float),
        "detections": np.array([[[1, 1, 9, 9], [0, 0, 0, 0]], [[5, 5, 27, 27], [0, 0, 0, 0]]],
                               float),
        "detection_scores": np.array([[0.8, 0.0], [0.9, 0.0]]),
        "detection_valid": np.array([[True, False], [True, False]]),
        "masks": np.stack([np.stack([full, left]), np.stack([left, full])]),
    }


@pytest.mark.parametrize("stage, threshold, count, first_score", [
    ("anchors", 0.5, 3, 0.9),          # 0.9, 0.6 and 0.5 (>= is inclusive)
    ("anchors", 0.95, 0, None),
    ("proposals", 0.0, 2, 0.9),        # the invalid padding row never shows
    ("refined boxes", 0.5, 1, 0.8),    # best non-background probability: 0.8 and 0.4
    ("detections", 0.5, 1, 0.8),
    ("masks", 0.85, 0, None),
])
def test_stage_content_thresholds_scores_per_stage(stage, threshold, count, first_score):
    out = viz.stage_content(_stages(), 0, stage, threshold)
    assert len(out["boxes"]) == count == out["total"]
    if first_score is not None:
        assert out["scores"][0] == pytest.approx(first_score)
        assert np.all(np.diff(out["scores"]) <= 0)             # highest first


def test_stage_content_caps_the_number_drawn_and_rejects_unknown_stages():
    out = viz.stage_content(_stages(), 0, "anchors", 0.0, max_drawn=2)
    assert out["total"] == 4 and len(out["boxes"]) == 2
    np.testing.assert_allclose(out["scores"], [0.9, 0.6])
    with pytest.raises(ValueError, match="not one of"):
        viz.stage_content(_stages(), 0, "rois", 0.5)


def test_draw_stage_pastes_the_detected_masks_at_their_boxes():
    image = np.zeros((32, 32, 3), np.float32)
    fig, ax = plt.subplots()
    out = viz.draw_stage(ax, image, _stages(), 1, "masks", 0.5)
    shown = ax.images[0].get_array()
    # image 1's detection (5, 5, 27, 27) carries the "left half" mask: pixels of columns 5..15
    # are tinted, columns 16..26 are not (a 22-px box: 11 columns per half).
    assert len(out["boxes"]) == 1
    assert shown[10, 10].sum() > 0 and shown[10, 20].sum() == 0
    assert "image 1: masks" in ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    plt.close(fig)


def test_score_stages_get_a_colour_bar_and_ground_truth_shows_on_bright_images():
    bright = np.full((32, 32, 3), 250.0, np.float32)          # a bright-field background
    fig, axes = plt.subplots(1, 2)
    viz.draw_stage(axes[0], bright, _stages(), 0, "anchors", 0.0, colorbar=True,
                   gt_boxes=np.array([[2, 2, 12, 12]], np.float32))
    viz.draw_stage(axes[1], bright, _stages(), 1, "masks", 0.5, colorbar=True)
    assert len(fig.axes) == 3                                  # one bar, for anchors only
    assert fig.axes[2].get_ylabel() == "objectness"
    gt = [p for p in axes[0].patches if p.get_linestyle() == "--"]
    assert gt and all(np.mean(p.get_edgecolor()[:3]) < 0.9 for p in gt)   # not white
    plt.close(fig)


def test_stage_explorer_follows_its_controls():
    stages = _stages()
    images = np.zeros((2, 32, 32, 3), np.float32)
    gt = np.zeros((2, 3, 4), np.float32)
    gt[0, 0] = [1, 1, 9, 9]
    w = viz.stage_explorer(images, stages, gt_boxes=gt)
    assert w.result["stage"] == "detections" and w.result["index"] == 0
    assert w.result["total"] == 1
    w.controls["stage"].value = "anchors"
    assert w.result["total"] == 3
    w.controls["score_threshold"].value = 0.05
    assert w.result["total"] == 4
    w.controls["index"].value = 1
    assert w.result["index"] == 1 and w.result["total"] == 4
    w.controls["stage"].value = "proposals"
    assert w.result["total"] == 1 and w.result["scores"][0] == pytest.approx(0.95)
    assert w.renders == 5
    assert plt.get_fignums() == []

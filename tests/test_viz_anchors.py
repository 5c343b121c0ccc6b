"""Anchor and NMS pictures and explorers, driven headlessly (course_lib.viz.anchors)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from course_lib.layers.rpn import match_anchors_np
from course_lib.ops.anchors import level_anchors
from course_lib.ops.nms import nms
from course_lib.viz import anchors as V

IMAGE = np.zeros((64, 64, 3), np.uint8)
GT = np.array([[8, 8, 24, 40], [40, 30, 56, 46]], float)


def _scene():
    rng = np.random.default_rng(0)
    c = rng.uniform(10, 54, (40, 2))
    hw = rng.uniform(8, 24, (40, 2))
    return np.concatenate([c - hw / 2, c + hw / 2], 1), rng.random(40)


def test_nms_explorer_follows_threshold():
    boxes, scores = _scene()
    w = V.nms_explorer(boxes, scores, image=IMAGE)
    np.testing.assert_array_equal(w.result, nms(boxes, scores, 0.5))
    w.controls["iou_threshold"].value = 0.1
    np.testing.assert_array_equal(w.result, nms(boxes, scores, 0.1))
    w.controls["iou_threshold"].value = 0.9
    assert len(w.result) > len(nms(boxes, scores, 0.1))  # a looser threshold keeps more
    assert plt.get_fignums() == []


def test_anchor_explorer_follows_controls():
    w = V.anchor_explorer(IMAGE, GT)
    labels, _, _ = match_anchors_np(level_anchors(IMAGE.shape, 32, (0.5, 1, 2), 8), GT)
    assert w.result["n_positive"] == (labels == 1).sum()
    assert w.result["n_anchors"] == 8 * 8 * 3  # 64/8 cells each way, three ratios
    w.controls["level"].value = "P2 (stride 4)"
    assert w.result["n_anchors"] == 16 * 16 * 3
    before = w.result["n_positive"]
    w.controls["positive_iou"].value = 0.3
    labels, _, _ = match_anchors_np(level_anchors(IMAGE.shape, 32, (0.5, 1, 2), 4), GT, None,
                                    0.3, 0.3)
    assert w.result["n_positive"] == (labels == 1).sum() > before
    w.controls["scale"].value = 8
    w.controls["ratios"].value = "1"
    assert w.result["n_anchors"] == 16 * 16


def test_draw_anchors_counts():
    view = V.anchor_labels_view((64, 64), GT, 16, (1.0,), 8)
    assert view["n_positive"] + view["n_negative"] + view["n_neutral"] == view["n_anchors"]
    fig, ax = plt.subplots()
    drawn = V.draw_anchors(ax, view["anchors"], view["labels"], image=IMAGE, gt_boxes=GT,
                           show_negatives=5)
    assert drawn[1] == view["n_positive"] and drawn[0] == 5
    segments = [len(c.get_segments()) for c in ax.collections]
    assert segments == [drawn[0], drawn[-1], drawn[1]]  # negatives, neutrals, positives on top
    assert len(ax.patches) == len(GT)  # gt boxes as patches
    plt.close(fig)

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
                                    0.3, negative_iou=0.3)
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


def test_cross_boundary_by_hand():
    anchors = np.array([[0, 0, 10, 10], [-1, 5, 9, 15], [5, 5, 64, 64], [5, 5, 65, 30],
                        [-3, -3, 70, 70]], float)
    np.testing.assert_array_equal(V.cross_boundary(anchors, (64, 64)),
                                  [False, True, False, True, True])
    # allowed_border lets anchors reach that far past the edge
    np.testing.assert_array_equal(V.cross_boundary(anchors, (64, 64), allowed_border=1),
                                  [False, False, False, False, True])


def test_draw_level_anchors_draws_the_middle_cell_with_labelled_axes():
    fig, ax = plt.subplots()
    drawn = V.draw_level_anchors(ax, (64, 64), 16, (0.5, 1.0, 2.0), 8, image=IMAGE, gt_boxes=GT)
    # middle cell (4, 4) of the 8x8 grid: centre (36, 36); ratio r: h = 16/sqrt(r), w = 16*sqrt(r)
    h = 16 / np.sqrt([0.5, 1.0, 2.0])
    w = 16 * np.sqrt([0.5, 1.0, 2.0])
    np.testing.assert_allclose(drawn, np.stack([36 - h / 2, 36 - w / 2, 36 + h / 2, 36 + w / 2], 1))
    centres = ax.lines[0]
    assert len(centres.get_xdata()) == 64                       # one dot per feature cell
    assert ax.get_xlabel() == "x (image px)" and ax.get_ylabel() == "y (image px)"
    drawn0 = V.draw_level_anchors(ax, (64, 64), 16, (1.0,), 8, cell=(0, 0), offset=0.0)
    np.testing.assert_allclose(drawn0, [[-8, -8, 8, 8]])        # i·stride convention
    plt.close(fig)


def test_draw_delta_crops_around_both_boxes():
    image = np.zeros((100, 100, 3), np.uint8)
    fig, ax = plt.subplots()
    corner = V.draw_delta(ax, image, [40, 42, 60, 58], [35, 30, 65, 60], decoded=[40, 42, 60, 58],
                          pad=5)
    np.testing.assert_array_equal(corner, [30, 25])              # min edges minus the pad
    assert len(ax.patches) == 3 and len(ax.texts) >= 2           # anchor, gt, decoded; arrow
    assert ax.get_xlim() == (24.5, 64.5) and ax.get_ylim() == (69.5, 29.5)
    plt.close(fig)


def test_draw_nms_before_after_counts_boxes_centred_in_the_window():
    boxes, scores = _scene()
    kept = nms(boxes, scores, 0.3)
    fig, axes = plt.subplots(1, 2)
    n_before, n_after = V.draw_nms_before_after(axes, boxes, boxes[kept], IMAGE, (0, 0, 32, 32))
    def centre(b):
        cy, cx = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        return (cy >= 0) & (cy < 32) & (cx >= 0) & (cx < 32)

    assert (n_before, n_after) == (centre(boxes).sum(), centre(boxes[kept]).sum())
    assert n_after < n_before
    assert [len(ax.collections[0].get_segments()) for ax in axes] == [n_before, n_after]
    plt.close(fig)


def test_explorer_output_is_built_in_the_kernel_not_captured():
    """The explorer writes its picture into ``output.outputs`` directly (no ``with output``
    capture, whose messages a headless executor answers on the shell channel and can hang on)."""
    w = V.anchor_explorer(IMAGE, GT)
    assert w.output.msg_id == ""
    outputs = w.output.outputs
    assert len(outputs) == 1 and outputs[0]["output_type"] == "display_data"
    png = __import__("base64").b64decode(outputs[0]["data"]["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w.controls["scale"].value = 8
    assert len(w.output.outputs) == 1 and w.output.outputs[0]["data"]["image/png"] != \
        outputs[0]["data"]["image/png"]
    assert plt.get_fignums() == []


def test_explorer_shows_printed_text_and_a_failing_render_traceback():
    import ipywidgets as widgets

    from course_lib.viz.widgets import explorer

    def render(n):
        print(f"n is {n}")
        if n == 2:
            raise ValueError("bad n")
        return n

    w = explorer(render, n=widgets.IntSlider(value=1))
    assert w.output.outputs == ({"output_type": "stream", "name": "stdout", "text": "n is 1\n"},)
    try:
        w.controls["n"].value = 2
    except ValueError:
        pass
    texts = [o["text"] for o in w.output.outputs]
    assert texts[0] == "n is 2\n" and "ValueError: bad n" in texts[1]
    assert w.renders == 1                                          # only successful renders


def test_anchor_pictures_label_their_axes():
    fig, axes = plt.subplots(1, 2)
    V.draw_anchors(axes[0], level_anchors((64, 64), 16, (1.0,), 8), image=IMAGE)
    boxes, scores = _scene()
    V.draw_nms(axes[1], boxes, scores, nms(boxes, scores, 0.5), image=IMAGE)
    assert all(ax.get_xlabel() == "x (image px)" and ax.get_ylabel() == "y (image px)"
               for ax in axes)
    plt.close(fig)

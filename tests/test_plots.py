"""course_lib.viz.plots: boxes drawn on pixel edges, masks blended, curves plotted."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from course_lib.viz import plots


def test_box_outline_hugs_its_pixels():
    # A mask covering rows 2..4 and columns 3..6 has the tight box (2, 3, 5, 7). imshow puts
    # pixel centres on integers, so the outline must run from x = 3 - 0.5 to 7 - 0.5.
    image = np.zeros((10, 10, 3), np.uint8)
    masks = np.zeros((10, 10, 1), bool)
    masks[2:5, 3:7, 0] = True
    ax = plots.show_instances(image, masks, boxes=np.array([[2.0, 3.0, 5.0, 7.0]]),
                              labels=["nucleus"], scores=[0.9])
    (rect,) = ax.patches
    assert rect.get_xy() == (2.5, 1.5)
    assert (rect.get_width(), rect.get_height()) == (4.0, 3.0)
    assert ax.texts[0].get_text() == "nucleus 0.90"
    plt.close("all")


def test_overlay_colours_only_masked_pixels():
    image = np.full((4, 4, 3), 100, np.uint8)
    masks = np.zeros((4, 4, 2), bool)
    masks[0, 0, 0] = masks[3, 3, 1] = True
    colors = np.array([[1.0, 0, 0], [0, 0, 1.0]])
    out = plots.overlay_masks(image, masks, alpha=0.5, colors=colors)
    base = 100 / 255
    np.testing.assert_allclose(out[1, 1], [base] * 3)
    np.testing.assert_allclose(out[0, 0], [0.5 * base + 0.5, 0.5 * base, 0.5 * base])
    np.testing.assert_allclose(out[3, 3], [0.5 * base, 0.5 * base, 0.5 * base + 0.5])


def test_instance_colors_are_distinct_and_repeatable():
    a, b = plots.instance_colors(12), plots.instance_colors(12)
    np.testing.assert_array_equal(a, b)
    assert len({tuple(np.round(c, 3)) for c in a}) == 12
    assert plots.instance_colors(0).shape == (0, 3)


def test_training_curves_draws_validation_dashed():
    ax = plots.training_curves({"loss": [3, 2, 1], "val_loss": [3.5, 2.5, 2]})
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["loss"].get_linestyle() == "-" and lines["val_loss"].get_linestyle() == "--"
    np.testing.assert_array_equal(lines["val_loss"].get_xdata(), [1, 2, 3])
    plt.close("all")


def test_image_grid_has_one_axes_per_slot():
    fig = plots.image_grid([np.zeros((3, 3))] * 5, titles=list("abcde"), ncols=3)
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[:5]] == list("abcde")
    plt.close("all")


def test_outline_marks_only_the_rim_and_keeps_the_image_inside():
    # A 3x3 mask in a 5x5 grey image: its inner outline is the 8 pixels around the centre
    # (worked by hand); the centre pixel and everything outside keep the image's grey.
    image = np.full((5, 5, 3), 100, np.uint8)
    masks = np.zeros((5, 5, 1), bool)
    masks[1:4, 1:4, 0] = True
    out = plots.outline_masks(image, masks, colors=np.array([[1.0, 0.0, 0.0]]))
    red = np.all(out == [1.0, 0.0, 0.0], axis=-1)
    expected = masks[..., 0].copy()
    expected[2, 2] = False
    assert np.array_equal(red, expected)
    np.testing.assert_allclose(out[~expected], 100 / 255)
    ax = plots.show_outlines(image, masks, boxes=np.array([[1.0, 1.0, 4.0, 4.0]]), title="t")
    assert ax.get_title() == "t" and len(ax.patches) == 1
    plt.close("all")

"""The weight-map explorer redraws with its sliders, as the formula says."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from course_lib.ops.weight_map import class_balance_weights
from course_lib.viz.unet import color_labels, draw_weight_map, weight_map_explorer


def _labels():
    labels = np.zeros((30, 40), np.int32)
    labels[10:20, 5:15] = 1
    labels[10:20, 18:28] = 2  # gap columns 15..17
    return labels


def test_draw_weight_map_returns_the_map_and_a_figure():
    out = draw_weight_map(_labels(), w0=10, sigma=5)
    assert out["weight_map"].shape == (30, 40)
    images = out["figure"].axes[1].get_images()
    np.testing.assert_allclose(images[0].get_array(), out["weight_map"])
    plt.close(out["figure"])


def test_sliders_change_the_map_as_the_formula_says():
    labels = _labels()
    wc = class_balance_weights(labels)
    w = weight_map_explorer(labels)
    first = w.result["weight_map"]
    # gap pixel (15, 16): 2 px from column 14 and 2 px from column 18 -> 10·exp(-(2+2)²/50)
    assert first[15, 16] - wc[15, 16] == pytest.approx(10 * np.exp(-16 / 50), rel=1e-5)
    w.controls["w0"].value = 20.0           # border term doubles
    np.testing.assert_allclose(w.result["weight_map"] - wc, 2 * (first - wc), rtol=1e-5, atol=1e-5)
    w.controls["sigma"].value = 2.0         # narrower: 20·exp(-16/(2·4)) = 20·exp(-2)
    assert w.result["weight_map"][15, 16] - wc[15, 16] == pytest.approx(
        20 * np.exp(-2), rel=1e-5)
    assert w.renders == 3
    assert plt.get_fignums() == []


def test_color_labels_black_background_distinct_colours():
    labels = np.array([[0, 1, 2], [3, 0, 1]], np.int32)
    rgb = color_labels(labels)
    assert rgb.shape == (2, 3, 3)
    assert (rgb[labels == 0] == 0).all()
    np.testing.assert_array_equal(rgb[0, 1], rgb[1, 2])           # same id, same colour
    assert len({tuple(rgb[0, 1]), tuple(rgb[0, 2]), tuple(rgb[1, 0])}) == 3
    with pytest.raises(ValueError, match="label image"):
        color_labels(np.zeros((2, 2), np.float32))


def test_weight_map_figure_labels_every_axis_and_the_colour_bar():
    out = draw_weight_map(_labels(), w0=10, sigma=5)
    axes = out["figure"].axes
    for ax in axes[:2]:
        assert ax.get_xlabel() == "x (px)" and ax.get_ylabel() == "y (px)"
    assert axes[2].get_ylabel() == "loss weight w(x)"      # the colour bar
    plt.close(out["figure"])

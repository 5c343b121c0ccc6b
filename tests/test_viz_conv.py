"""Headless tests of the convolution explorers in course_lib.viz.conv."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import ndimage

from course_lib.viz import conv as vconv


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, size=(24, 32), dtype=np.uint8)


def test_apply_kernel_matches_scipy_correlate(image):
    # oracle: scipy's correlate with zero padding ("constant", cval=0) equals "same" padding
    gray = image / 255.0
    for kernel in vconv.PRESET_KERNELS.values():
        expected = ndimage.correlate(gray, kernel, mode="constant", cval=0.0)
        np.testing.assert_allclose(vconv.apply_kernel(image, kernel), expected, atol=1e-12)


def test_identity_preset_returns_the_image(image):
    np.testing.assert_allclose(vconv.apply_kernel(image, vconv.PRESET_KERNELS["identity"]),
                               image / 255.0)


def test_kernel_explorer_preset_fills_cells_and_updates(image):
    box = vconv.kernel_explorer(image)
    np.testing.assert_allclose(box.result, image / 255.0)
    renders = box.renders
    box.controls["preset"].value = "Sobel x (vertical edges)"
    assert box.renders == renders + 1  # one redraw for nine cell changes
    assert [box.controls[f"k{r}{c}"].value for r in range(3) for c in range(3)] == \
        [-1, 0, 1, -2, 0, 2, -1, 0, 1]
    expected = ndimage.correlate(image / 255.0, vconv.PRESET_KERNELS["Sobel x (vertical edges)"],
                                 mode="constant")
    np.testing.assert_allclose(box.result, expected, atol=1e-12)
    plt.close("all")


def test_kernel_explorer_editing_a_cell_makes_it_custom(image):
    box = vconv.kernel_explorer(image)
    box.controls["k11"].value = 2.0  # identity with centre 2 doubles the image
    assert box.controls["preset"].value == "custom"
    np.testing.assert_allclose(box.result, 2 * (image / 255.0))
    box.controls["k11"].value = 1.0  # back to the identity: the dropdown recognises it
    assert box.controls["preset"].value == "identity"
    plt.close("all")


def test_conv_arithmetic_hand_worked():
    # n=7, k=3, s=2, p=1: floor((7 + 2 - 3) / 2) + 1 = 4; two such layers see 3 + 2*2 = 7
    info = vconv.conv_arithmetic(7, 3, 2, 1, 1, layers=2)
    assert info["output_size"] == 4 and info["stack_output_sizes"] == [4, 2]
    assert (info["receptive_field"], info["jump"]) == (7, 4)
    assert info["effective_kernel"] == 3 and (info["pad_before"], info["pad_after"]) == (1, 1)


def test_conv_arithmetic_explorer_responds_to_sliders():
    box = vconv.conv_arithmetic_explorer()
    assert box.result["output_size"] == 5  # defaults: 7, k 3, valid -> 5
    box.controls["stride"].value = 2
    assert box.result["output_size"] == 3  # floor((7 - 3) / 2) + 1
    box.controls["dilation"].value = 3
    box.controls["stride"].value = 1
    assert box.result["effective_kernel"] == 7 and box.result["output_size"] == 1
    box.controls["dilation"].value = 4  # spans 9 > 7: reported, not raised
    assert box.result is None
    box.controls["padding"].value = 1
    assert box.result["output_size"] == 1
    plt.close("all")


def test_draw_conv_arithmetic_draws_every_cell():
    fig = vconv.draw_conv_arithmetic(5, 3, 1, 1, 1)
    ax_in, ax_out = fig.axes
    # padded input 7x7 cells + 2 outputs' 9 taps; output 5x5 cells
    assert len(ax_in.patches) == 49 + 18
    assert len(ax_out.patches) == 25
    plt.close(fig)

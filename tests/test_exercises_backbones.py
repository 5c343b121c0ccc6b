"""The chapter 03-05 exercise checks accept the library and reject the usual mistakes."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from course_lib import exercises
from course_lib.exercises import ExerciseFailed
from course_lib.layers import fpn, resnet
from course_lib.ops import conv

layers = keras.layers


def test_conv_checks_accept_the_library():
    assert exercises.check_conv2d(lambda x, w, b, stride=1, padding="valid":
                                  conv.conv2d(x, w, b, stride, padding=padding))
    assert exercises.check_conv_output_size(
        lambda n, k, stride, padding, dilation: conv.conv_output_size(n, k, stride, padding,
                                                                      dilation=dilation))


def test_conv2d_check_rejects_flipped_kernel_and_centred_same_padding():
    def flipped(x, w, b, stride=1, padding="valid"):  # true convolution, not what Keras does
        return conv.conv2d(x, w[::-1, ::-1], b, stride, padding=padding)

    with pytest.raises(ExerciseFailed, match="case 1"):
        exercises.check_conv2d(flipped)

    def extra_zero_on_top(x, w, b, stride=1, padding="valid"):
        if padding == "same":  # the odd padding zero before instead of after
            x = np.pad(x, ((1, 0), (1, 0), (0, 0)))
            padding = 0
        return conv.conv2d(x, w, b, stride, padding=padding)

    with pytest.raises(ExerciseFailed, match="case 4"):
        exercises.check_conv2d(extra_zero_on_top)


def test_output_size_check_rejects_ignoring_dilation():
    with pytest.raises(ExerciseFailed, match="case 4"):
        exercises.check_conv_output_size(lambda n, k, s, p, d: (n + 2 * p - k) // s + 1)


def test_bottleneck_check_accepts_the_library_and_rejects_stride_in_the_3x3(capsys):
    assert exercises.check_bottleneck_block(
        lambda x, f, s=1, c=True: resnet.bottleneck_block(x, f, s, c, name="mine"))

    def stride_in_3x3(x, filters, stride=1, conv_shortcut=True):  # torchvision's "v1.5"
        shortcut = x
        if conv_shortcut:
            shortcut = layers.BatchNormalization(epsilon=1.001e-5)(
                layers.Conv2D(4 * filters, 1, strides=stride)(x))
        y = layers.Conv2D(filters, 1)(x)
        y = layers.Activation("relu")(layers.BatchNormalization(epsilon=1.001e-5)(y))
        y = layers.Conv2D(filters, 3, strides=stride, padding="same")(y)
        y = layers.Activation("relu")(layers.BatchNormalization(epsilon=1.001e-5)(y))
        y = layers.BatchNormalization(epsilon=1.001e-5)(layers.Conv2D(4 * filters, 1)(y))
        return layers.Activation("relu")(layers.Add()([shortcut, y]))

    # cases 1 and 2 have stride 1, where both arrangements are the same function
    with pytest.raises(ExerciseFailed, match="case 3"):
        exercises.check_bottleneck_block(stride_in_3x3)

    def no_bias(x, filters, stride=1, conv_shortcut=True):
        y = layers.Conv2D(4 * filters, 1, strides=stride, use_bias=False)(x)
        return layers.Activation("relu")(y)

    with pytest.raises(ExerciseFailed, match="parameters"):
        exercises.check_bottleneck_block(no_bias)


def test_fpn_checks_accept_the_library_and_reject_bilinear_style_upsampling():
    assert exercises.check_upsample_add(fpn.upsample_add)

    def tiled(higher, lateral):  # np.tile repeats the whole map instead of each cell
        return np.tile(higher, (2, 2, 1)) + lateral if higher.ndim == 3 else None

    with pytest.raises(ExerciseFailed, match="case 1"):
        exercises.check_upsample_add(tiled)

    def top_down(laterals):
        merged = [laterals[3]]
        for lateral in reversed(laterals[:3]):
            merged.insert(0, fpn.upsample_add(merged[0], lateral))
        return merged

    assert exercises.check_top_down(top_down)
    with pytest.raises(ExerciseFailed, match="case 1"):
        exercises.check_top_down(lambda lats: list(lats))  # forgot to merge
    # the verdict names the first wrong level from the top: forgetting to merge breaks M4 first
    with pytest.raises(ExerciseFailed, match="level M4 is wrong"):
        exercises.check_top_down(lambda lats: list(lats))

    def wrong_m2_only(laterals):
        merged = top_down(laterals)
        merged[0] = merged[0] * 2.0                       # only the finest level is wrong
        return merged

    with pytest.raises(ExerciseFailed, match="level M2 is wrong"):
        exercises.check_top_down(wrong_m2_only)

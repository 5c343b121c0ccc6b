"""Tests of course_lib.ops.conv: NumPy convolution and pooling against Keras, arithmetic by hand."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course_lib.ops import conv


def _keras_conv(x, w, b, stride, padding, dilation):
    layer = keras.layers.Conv2D(w.shape[-1], w.shape[:2], strides=stride, padding=padding,
                                dilation_rate=dilation)
    layer.build(x.shape)
    layer.set_weights([w, b])
    return np.asarray(layer(x))


def test_hand_worked_valid_conv():
    # x = 0..8 as a 3x3 image, kernel [[1, 0], [0, -1]] (top-left minus bottom-right):
    # y[i, j] = x[i, j] - x[i+1, j+1] = -4 everywhere; with bias 1 -> -3.
    x = np.arange(9, dtype=float).reshape(1, 3, 3, 1)
    w = np.array([[1.0, 0.0], [0.0, -1.0]]).reshape(2, 2, 1, 1)
    expected = np.full((1, 2, 2, 1), -3.0)
    np.testing.assert_allclose(conv.conv2d(x, w, np.array([1.0])), expected)
    np.testing.assert_allclose(conv.conv2d_loops(x, w, np.array([1.0])), expected)


def test_channels_are_summed_per_filter():
    # Two input channels of ones and twos, a 1x1 kernel (3, 5) -> 1*3 + 2*5 = 13 everywhere.
    x = np.stack([np.ones((4, 4)), 2 * np.ones((4, 4))], axis=-1)
    w = np.array([3.0, 5.0]).reshape(1, 1, 2, 1)
    np.testing.assert_allclose(conv.conv2d(x, w), np.full((4, 4, 1), 13.0))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(5, 12), w_=st.integers(5, 12), c_in=st.integers(1, 3), c_out=st.integers(1, 3),
    kh=st.integers(1, 3), kw=st.integers(1, 3), stride=st.integers(1, 3),
    dilation=st.integers(1, 2), padding=st.sampled_from(["valid", "same"]),
    seed=st.integers(0, 2**16),
)
def test_conv2d_matches_keras_conv2d(h, w_, c_in, c_out, kh, kw, stride, dilation, padding, seed):
    if stride > 1 and dilation > 1:
        stride = 1  # Keras does not allow both > 1 at once
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, h, w_, c_in)).astype("float32")
    w = rng.normal(size=(kh, kw, c_in, c_out)).astype("float32")
    b = rng.normal(size=(c_out,)).astype("float32")
    expected = _keras_conv(x, w, b, stride, padding, dilation)
    got = conv.conv2d(x, w, b, stride, padding=padding, dilation=dilation)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    # the output-size formula predicts the shape Keras produced
    assert expected.shape[1] == conv.conv_output_size(h, kh, stride, padding, dilation=dilation)
    assert expected.shape[2] == conv.conv_output_size(w_, kw, stride, padding, dilation=dilation)


@settings(max_examples=15, deadline=None)
@given(h=st.integers(3, 7), c_in=st.integers(1, 2), k=st.integers(1, 3), stride=st.integers(1, 2),
       dilation=st.integers(1, 2), padding=st.sampled_from(["valid", "same", 0, 1, 2]),
       seed=st.integers(0, 2**16))
def test_loops_equal_vectorised(h, c_in, k, stride, dilation, padding, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, h, h + 1, c_in))
    w = rng.normal(size=(k, k, c_in, 2))
    b = rng.normal(size=(2,))
    if conv.effective_kernel_size(k, dilation) > h + 2 * (padding if isinstance(padding, int) else 0) \
            and padding != "same":
        with pytest.raises(ValueError, match="kernel"):
            conv.conv2d(x, w, b, stride, padding=padding, dilation=dilation)
        return
    np.testing.assert_allclose(conv.conv2d_loops(x, w, b, stride, padding=padding,
                                                 dilation=dilation),
                               conv.conv2d(x, w, b, stride, padding=padding,
                                           dilation=dilation), atol=1e-10)


def test_int_padding_matches_zero_padding_layer():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 6, 5, 2)).astype("float32")
    w = rng.normal(size=(3, 3, 2, 4)).astype("float32")
    b = np.zeros(4, "float32")
    padded = np.asarray(keras.layers.ZeroPadding2D(2)(x))
    np.testing.assert_allclose(conv.conv2d(x, w, b, 2, padding=2),
                               _keras_conv(padded, w, b, 2, "valid", 1), atol=1e-5)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("pool,stride", [(2, None), (3, 2), (3, 1), ((2, 3), (1, 2))])
def test_pooling_matches_keras(pool, stride, padding):
    x = np.random.default_rng(1).normal(size=(2, 7, 9, 3)).astype("float32")
    got_max = conv.max_pool2d(x, pool, stride, padding)
    got_avg = conv.avg_pool2d(x, pool, stride, padding)
    exp_max = np.asarray(keras.layers.MaxPooling2D(pool, stride, padding)(x))
    exp_avg = np.asarray(keras.layers.AveragePooling2D(pool, stride, padding)(x))
    np.testing.assert_allclose(got_max, exp_max, atol=1e-6)
    np.testing.assert_allclose(got_avg, exp_avg, atol=1e-6)


def test_output_size_hand_worked():
    # ResNet stem: 224 + 2*3 = 230, (230 - 7) // 2 + 1 = 112; 3x3 valid on 5 -> 3
    assert conv.conv_output_size(224, 7, 2, 3) == 112
    assert conv.conv_output_size(5, 3) == 3
    assert conv.conv_output_size(7, 3, 2, "same") == 4  # ceil(7 / 2)
    assert conv.conv_output_size(7, 3, 1, "valid", dilation=2) == 3  # span 5: 7 - 5 + 1
    with pytest.raises(ValueError, match="spans 5"):
        conv.conv_output_size(4, 3, dilation=2)
    with pytest.raises(ValueError, match="padding"):
        conv.conv_output_size(4, 3, padding="full")


def test_same_padding_puts_extra_at_the_end():
    # n=6, k=3, s=2: out 3, total pad (3-1)*2 + 3 - 6 = 1 -> (0, 1) as TensorFlow does
    assert conv.padding_amounts(6, 3, 2, "same") == (0, 1)
    assert conv.padding_amounts(5, 3, 1, "same") == (1, 1)


def test_receptive_field_hand_worked():
    # three 3x3 stride-1 convs see 7 pixels (the VGG argument)
    assert [s.size for s in conv.receptive_field([(3, 1)] * 3)] == [3, 5, 7]
    # ResNet stem: conv 7/2 -> 7, jump 2; pool 3/2 -> 7 + 2*2 = 11, jump 4
    assert conv.receptive_field([(7, 2), (3, 2)]) == [(7, 2), (11, 4)]
    # dilations 1, 2, 4 of a 3x3 kernel: 3, 3 + 4 = 7, 7 + 8 = 15 (exponential growth)
    assert [s.size for s in conv.receptive_field([(3, 1, 1), (3, 1, 2), (3, 1, 4)])] == [3, 7, 15]
    with pytest.raises(ValueError, match="layers\\[0\\]"):
        conv.receptive_field([(3,)])


@pytest.mark.parametrize("stack", [[(3, 1), (3, 2), (3, 1)], [(5, 2, 1), (3, 1, 2)],
                                   [(2, 2), (2, 2), (3, 1)]])
def test_receptive_field_matches_gradient_support(stack):
    """Oracle: the input pixels whose gradient reaches one output unit, via TensorFlow."""
    size = 40
    model = keras.Sequential([keras.Input((size, size, 1))] + [
        keras.layers.Conv2D(1, layer[0], strides=layer[1],
                            dilation_rate=layer[2] if len(layer) == 3 else 1,
                            kernel_initializer="ones", use_bias=False) for layer in stack])
    x = tf.ones((1, size, size, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x)[0, 0, 0, 0]
    grad = tape.gradient(y, x).numpy()[0, :, :, 0]
    rows = np.nonzero(grad.any(axis=1))[0]
    span = rows.max() - rows.min() + 1
    assert span == conv.receptive_field(stack)[-1].size


def test_bad_inputs_give_clear_errors():
    x = np.zeros((5, 5, 2))
    with pytest.raises(ValueError, match="HWIO"):
        conv.conv2d(x, np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match="input channels"):
        conv.conv2d(x, np.zeros((3, 3, 3, 1)))
    with pytest.raises(ValueError, match="bias"):
        conv.conv2d(x, np.zeros((3, 3, 2, 1)), np.zeros(2))
    with pytest.raises(ValueError, match="stride"):
        conv.conv2d(x, np.zeros((3, 3, 2, 1)), stride=0)

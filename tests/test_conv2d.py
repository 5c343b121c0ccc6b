"""course_lib.layers.conv2d: Keras' Conv2D with the kernel gradient of a large map written out.

Oracle: the backend's own convolution and its autodiff gradient (TensorFlow's
``tf.nn.conv2d`` under a tape, and JAX's ``jax.grad`` of ``lax.conv`` in a subprocess).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from other_backends import OTHER_BACKENDS, run_under_backend

from course_lib.layers import conv2d


def _tf_conv_and_grads(x, kernel, w_out):
    x, kernel = tf.constant(x, tf.float32), tf.constant(kernel, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = tf.nn.conv2d(x, kernel, 1, "SAME")
        loss = tf.reduce_sum(y * w_out)
    return (y.numpy(), *(g.numpy() for g in tape.gradient(loss, [x, kernel])))


@pytest.mark.parametrize("written_out, k, shape", [
    # Rectangular maps, a 5×5 kernel whose taps overhang a 6-row map, and the 1×1 case.
    ("gemm_kernel_grad", 3, (2, 9, 7, 5)), ("gemm_kernel_grad", 5, (1, 6, 11, 3)),
    ("gemm_kernel_grad", 1, (2, 4, 4, 6)),
    # One image in halves: a 5×5 kernel on 3-row halves needs two halo rows each, and a
    # 2-row map halves into single rows.
    ("in_two_halves", 3, (1, 8, 7, 5)), ("in_two_halves", 5, (1, 6, 9, 3)),
    ("in_two_halves", 3, (1, 2, 4, 2)),
])
def test_the_written_out_forms_give_the_backends_output_and_gradients(written_out, k, shape):
    function = {"gemm_kernel_grad": conv2d.conv_same_with_gemm_kernel_grad,
                "in_two_halves": conv2d.conv_same_in_two_halves}[written_out]
    rng = np.random.default_rng(k + shape[1])
    x = rng.normal(size=shape).astype("float32")
    kernel = rng.normal(size=(k, k, shape[-1], 4)).astype("float32")
    w_out = rng.normal(size=(*shape[:3], 4)).astype("float32")
    want = _tf_conv_and_grads(x, kernel, w_out)
    xt, kt = tf.constant(x), tf.constant(kernel)
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        y = function(xt, kt)
        loss = tf.reduce_sum(y * w_out)
    got = (np.asarray(y), *(g.numpy() for g in tape.gradient(loss, [xt, kt])))
    for name, g, w in zip(("output", "d input", "d kernel"), got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=name)


def test_even_kernels_are_refused():
    with pytest.raises(ValueError, match="odd kernel"):
        conv2d.conv_same_with_gemm_kernel_grad(tf.zeros((1, 4, 4, 2)), tf.zeros((2, 2, 2, 3)))


def _count_calls(monkeypatch, name="conv_same_with_gemm_kernel_grad"):
    """The input shapes ``conv2d.<name>`` is traced with, from now on."""
    calls = []
    original = getattr(conv2d, name)
    monkeypatch.setattr(conv2d, name, lambda x, k: calls.append(tuple(x.shape)) or original(x, k))
    return calls


@pytest.mark.parametrize("side, channels, kwargs, gpu, avx2, used", [
    (16, 8, {}, False, False, True),             # at the (lowered) thresholds
    (15, 8, {}, False, False, False),            # one row short of MIN_CELLS
    (16, 7, {}, False, False, False),            # one channel short of MIN_CHANNELS
    (16, 4, {}, False, True, True),              # AVX2: from MIN_CHANNELS_AVX2 (lowered to 4)
    (16, 3, {}, False, True, False),
    (15, 8, {}, False, True, False),             # AVX2 too needs MIN_CELLS
    (16, 8, {"strides": 2}, False, False, False),
    (16, 8, {"dilation_rate": 2}, False, False, False),
    (16, 8, {"padding": "valid"}, False, False, False),
    (16, 8, {"kernel_size": 1}, False, False, False),
    (16, 8, {}, True, False, False),             # a GPU keeps the backend's gradient
])
def test_the_layer_writes_the_gradient_out_only_where_it_was_measured_to_pay(
        side, channels, kwargs, gpu, avx2, used, monkeypatch):
    from course_lib import config

    monkeypatch.setattr(conv2d, "MIN_CELLS", 16 * 16)
    monkeypatch.setattr(conv2d, "MIN_CHANNELS", 8)
    monkeypatch.setattr(conv2d, "MIN_CHANNELS_AVX2", 4)
    monkeypatch.setattr(config, "gpu_devices", lambda: ("/physical_device:GPU:0",) if gpu else ())
    monkeypatch.setattr(config, "onednn_runs_avx2", lambda: avx2)
    calls = _count_calls(monkeypatch)
    settings = {"kernel_size": 3, "padding": "same", **kwargs}
    layer = conv2d.Conv2D(channels, settings.pop("kernel_size"), **settings)
    layer(tf.zeros((2, side, side, channels)))          # two images: never halved
    assert bool(calls) is used


def test_the_layer_equals_keras_conv2d_with_the_same_weights(monkeypatch):
    # Output and every gradient (input, kernel, bias) through a ReLU, on a map that takes
    # the written-out path; and the weights load across (same variables, same order).
    import keras

    from course_lib import config

    monkeypatch.setattr(conv2d, "MIN_CELLS", 12 * 10)
    monkeypatch.setattr(conv2d, "MIN_CHANNELS", 4)
    monkeypatch.setattr(config, "onednn_runs_avx2", lambda: False)
    calls = _count_calls(monkeypatch)
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(2, 12, 10, 4)), tf.float32)
    w_out = tf.constant(rng.normal(size=(2, 12, 10, 6)), tf.float32)
    ours = conv2d.Conv2D(6, 3, padding="same", activation="relu")
    reference = keras.layers.Conv2D(6, 3, padding="same", activation="relu")
    ours.build(x.shape)
    reference.build(x.shape)
    ours.set_weights([w + 0.1 for w in reference.get_weights()])   # a bias that is not zero
    reference.set_weights(ours.get_weights())
    results = []
    for layer in (ours, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * w_out)
        grads = tape.gradient(loss, [x, *layer.trainable_weights])
        results.append([y.numpy(), *(g.numpy() for g in grads)])
    assert calls == [(2, 12, 10, 4)]
    assert (results[1][0] > 0).mean() > 0.2          # the ReLU lets some through, not all
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("x_shape, k", [((2, 8, 8, 1), 3), ((1, 7, 8, 1), 3), ((1, 8, 8, 1), 2)])
def test_halving_refuses_two_images_an_odd_height_and_an_even_kernel(x_shape, k):
    with pytest.raises(ValueError, match="one image with an even, known height"):
        conv2d.conv_same_in_two_halves(tf.zeros(x_shape), tf.zeros((k, k, 1, 1)))


@pytest.mark.parametrize("avx2, batch, side, kwargs, gpu, used", [
    (True, 1, 16, {}, False, True),
    (True, 1, 18, {"kernel_size": 5}, False, True),
    (False, 1, 16, {}, False, False),            # AVX-512 (or unknown): one image stays whole
    (True, 2, 16, {}, False, False),             # two images: oneDNN's fast kernel already
    (True, 1, 14, {}, False, False),             # under MIN_ROWS_TO_HALVE
    (True, 1, 17, {}, False, False),             # an odd height does not halve
    (True, 1, 16, {"kernel_size": 1}, False, False),
    (True, 1, 16, {"strides": 2}, False, False),
    (True, 1, 16, {"dilation_rate": 2}, False, False),
    (True, 1, 16, {"padding": "valid"}, False, False),
    (True, 1, 16, {}, True, False),              # a GPU
])
def test_one_image_is_halved_only_on_an_avx2_cpu_and_where_it_was_measured_to_pay(
        avx2, batch, side, kwargs, gpu, used, monkeypatch):
    from course_lib import config

    monkeypatch.setattr(config, "onednn_runs_avx2", lambda: avx2)
    monkeypatch.setattr(config, "gpu_devices", lambda: ("/physical_device:GPU:0",) if gpu else ())
    calls = _count_calls(monkeypatch, "conv_same_in_two_halves")
    settings = {"kernel_size": 3, "padding": "same", **kwargs}
    layer = conv2d.Conv2D(4, settings.pop("kernel_size"), **settings)
    layer(tf.zeros((batch, side, side, 3)))
    assert bool(calls) is used


def test_a_batch_unknown_when_traced_is_halved_only_when_it_holds_one_image(monkeypatch):
    # Keras traces its predict function with the batch unknown once it has seen two batch
    # sizes; the layer then decides in the graph. Every batch size must still give Keras'
    # convolution and gradients (reshaping the input to a literal batch of 1 in the halving
    # branch once let TensorFlow's graph optimiser take that branch for every batch: batch 2
    # came back wrong). The other branch here takes the written-out kernel gradient.
    import keras

    from course_lib import config

    monkeypatch.setattr(config, "onednn_runs_avx2", lambda: True)
    monkeypatch.setattr(conv2d, "MIN_CELLS", 16 * 10)
    monkeypatch.setattr(conv2d, "MIN_CHANNELS_AVX2", 3)
    halved = _count_calls(monkeypatch, "conv_same_in_two_halves")
    written_out = _count_calls(monkeypatch)
    ours = conv2d.Conv2D(5, 3, padding="same")
    reference = keras.layers.Conv2D(5, 3, padding="same")
    for layer in (ours, reference):
        layer.build((None, 16, 10, 3))
    reference.set_weights([w + 0.1 for w in ours.get_weights()])
    ours.set_weights(reference.get_weights())

    def output_and_gradients(layer, x, w_out):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * w_out)
        return [layer(x), *tape.gradient(loss, [x, layer.kernel])]

    spec = tf.TensorSpec((None, 16, 10, 3), tf.float32), tf.TensorSpec((None, 16, 10, 5))
    run = tf.function(lambda x, w: output_and_gradients(ours, x, w), input_signature=spec)
    rng = np.random.default_rng(4)
    for batch in (1, 2, 1, 3):
        x = tf.constant(rng.normal(size=(batch, 16, 10, 3)), tf.float32)
        w_out = tf.constant(rng.normal(size=(batch, 16, 10, 5)), tf.float32)
        for name, got, want in zip(("output", "d input", "d kernel"), run(x, w_out),
                                   output_and_gradients(reference, x, w_out), strict=True):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4,
                                       err_msg=f"{name}, batch {batch}")
    assert halved and all(shape[0] is None for shape in halved)   # decided in the graph
    assert written_out and all(shape[0] is None for shape in written_out)


def test_resnet_on_one_image_halved_equals_keras_applications(monkeypatch):
    # The ResNet's 3×3 convolutions are the course's Conv2D: halved on an AVX2 CPU, same outputs.
    import keras

    from course_lib import config
    from course_lib.layers import resnet

    monkeypatch.setattr(config, "onednn_runs_avx2", lambda: True)
    calls = _count_calls(monkeypatch, "conv_same_in_two_halves")
    ours = resnet.resnet(50, (64, 64, 3))
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    resnet.copy_weights(reference, ours)
    x = np.random.default_rng(5).normal(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(ours(x)[-1]), np.asarray(reference(x)),
                               rtol=1e-4, atol=1e-4)
    assert calls == [(1, 16, 16, 64)] * 3     # conv2's blocks; C3–C5 maps are under 16 rows


@pytest.mark.slow
@pytest.mark.other_backend
@pytest.mark.skipif("jax" not in OTHER_BACKENDS, reason="jax is not installed")
def test_the_written_out_gradient_under_jax():
    out = run_under_backend("jax", """
import jax, jax.numpy as jnp, numpy as np
from course_lib.layers.conv2d import conv_same_with_gemm_kernel_grad
rng = np.random.default_rng(0)
x = jnp.asarray(rng.normal(size=(2, 9, 7, 5)), jnp.float32)
k = jnp.asarray(rng.normal(size=(3, 3, 5, 4)), jnp.float32)
w = jnp.asarray(rng.normal(size=(2, 9, 7, 4)), jnp.float32)
def plain(x, k):
    return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
want = jax.grad(lambda x, k: jnp.sum(plain(x, k) * w), argnums=(0, 1))(x, k)
got = jax.jit(jax.grad(lambda x, k: jnp.sum(conv_same_with_gemm_kernel_grad(x, k) * w),
                       argnums=(0, 1)))(x, k)
for g, v in zip(got, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(v), rtol=1e-4, atol=1e-4)
print("ok", float(jnp.abs(got[1]).max()))
""")
    assert out.startswith("ok")

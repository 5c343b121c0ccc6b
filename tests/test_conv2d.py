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


@pytest.mark.parametrize("k, shape", [(3, (2, 9, 7, 5)), (5, (1, 6, 11, 3)), (1, (2, 4, 4, 6))])
def test_the_written_out_gradient_is_the_backends(k, shape):
    # Rectangular maps, a 5×5 kernel whose taps overhang a 6-row map, and the 1×1 case.
    rng = np.random.default_rng(k)
    x = rng.normal(size=shape).astype("float32")
    kernel = rng.normal(size=(k, k, shape[-1], 4)).astype("float32")
    w_out = rng.normal(size=(*shape[:3], 4)).astype("float32")
    want = _tf_conv_and_grads(x, kernel, w_out)
    xt, kt = tf.constant(x), tf.constant(kernel)
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        y = conv2d.conv_same_with_gemm_kernel_grad(xt, kt)
        loss = tf.reduce_sum(y * w_out)
    got = (np.asarray(y), *(g.numpy() for g in tape.gradient(loss, [xt, kt])))
    for name, g, w in zip(("output", "d input", "d kernel"), got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=name)


def test_even_kernels_are_refused():
    with pytest.raises(ValueError, match="odd kernel"):
        conv2d.conv_same_with_gemm_kernel_grad(tf.zeros((1, 4, 4, 2)), tf.zeros((2, 2, 2, 3)))


def _count_written_out(monkeypatch):
    calls = []
    original = conv2d.conv_same_with_gemm_kernel_grad
    monkeypatch.setattr(conv2d, "conv_same_with_gemm_kernel_grad",
                        lambda x, k: calls.append(tuple(x.shape)) or original(x, k))
    return calls


@pytest.mark.parametrize("side, channels, kwargs, gpu, used", [
    (16, 8, {}, False, True),                    # at the (lowered) thresholds
    (15, 8, {}, False, False),                   # one row short of MIN_CELLS
    (16, 7, {}, False, False),                   # one channel short of MIN_CHANNELS
    (16, 8, {"strides": 2}, False, False),
    (16, 8, {"dilation_rate": 2}, False, False),
    (16, 8, {"padding": "valid"}, False, False),
    (16, 8, {"kernel_size": 1}, False, False),
    (16, 8, {}, True, False),                    # a GPU keeps the backend's gradient
])
def test_the_layer_writes_the_gradient_out_only_where_it_was_measured_to_pay(
        side, channels, kwargs, gpu, used, monkeypatch):
    from course_lib import config

    monkeypatch.setattr(conv2d, "MIN_CELLS", 16 * 16)
    monkeypatch.setattr(conv2d, "MIN_CHANNELS", 8)
    monkeypatch.setattr(config, "gpu_devices", lambda: ("/physical_device:GPU:0",) if gpu else ())
    calls = _count_written_out(monkeypatch)
    settings = {"kernel_size": 3, "padding": "same", **kwargs}
    layer = conv2d.Conv2D(channels, settings.pop("kernel_size"), **settings)
    layer(tf.zeros((1, side, side, channels)))
    assert bool(calls) is used


def test_the_layer_equals_keras_conv2d_with_the_same_weights(monkeypatch):
    # Output and every gradient (input, kernel, bias) through a ReLU, on a map that takes
    # the written-out path; and the weights load across (same variables, same order).
    import keras

    monkeypatch.setattr(conv2d, "MIN_CELLS", 12 * 10)
    monkeypatch.setattr(conv2d, "MIN_CHANNELS", 4)
    calls = _count_written_out(monkeypatch)
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

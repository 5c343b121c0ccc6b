"""Keras' ``Conv2D`` with the kernel gradient of a large map written out as matrix products.

Used by the FPN's output convolutions and the RPN head, whose 3×3 convolutions on P2 (a
quarter of the image in each direction, 256 channels in and out) are the largest in
Mask R-CNN. The layer computes exactly what ``keras.layers.Conv2D`` computes, with the same
weights (a model built with it loads weights saved from one built without it); only the
backward pass differs, and only where that was measured to pay.

Why. The gradient of a stride-1 "same" convolution ``y = x ⋆ w`` (``k×k`` kernel) with
respect to its kernel is, for each tap ``(i, j)`` of the kernel, one matrix product:

    dL/dw[i, j] = x_shifted(i, j)ᵀ · dL/dy        (C_in × N·H·W) · (N·H·W × C_out)

where ``x_shifted(i, j)`` is the zero-padded input moved by ``(i - k//2, j - k//2)`` and
flattened to ``(N·H·W, C_in)``. TensorFlow's oneDNN kernel for this gradient
(``Conv2DBackpropFilter``) is 3.7× slower than the forward convolution on a 128×128 map with
256 channels when oneDNN is limited to AVX2 (0.73 s against 0.19 s for batch 2, AMD EPYC,
``ONEDNN_MAX_CPU_ISA=AVX2``), while the nine matrix products take 0.25 s; with AVX-512 they
take 0.23 s against 0.30 s (bench/README.md, "The kernel gradient of the P2 convolutions").
On smaller maps, and with fewer channels on an AVX-512 CPU, the backend's kernel is as fast or
faster, so the layer keeps it there (the thresholds below); on a GPU it is always kept.

The input gradient is the backend's forward convolution of ``dL/dy`` with the kernel turned by
180° and its channel axes swapped (exact for stride 1, "same" padding, odd kernels).
"""

from __future__ import annotations

import keras
from keras import ops

#: Written-out kernel gradient from this many output cells (``H × W``) per image up...
MIN_CELLS = 128 * 128
#: ... and at least this many channels in and out (smaller products lose to oneDNN's kernel).
MIN_CHANNELS = 128


def conv_same_with_gemm_kernel_grad(x, kernel):
    """``ops.conv(x, kernel, padding="same")`` at stride 1, its kernel gradient as matrix products.

    Args:
        x: ``(N, H, W, C_in)`` with static ``H``, ``W``.
        kernel: ``(k, k, C_in, C_out)``, ``k`` odd.

    Returns ``(N, H, W, C_out)``; the gradients into ``x`` and ``kernel`` are those of the
    convolution (tests: against the backend's own gradient).

    Taught in notebooks/03_convolution.
    """
    kh, kw, c_in, c_out = kernel.shape
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"conv_same_with_gemm_kernel_grad needs an odd kernel, got {kh}×{kw}")
    height, width = x.shape[1], x.shape[2]

    @ops.custom_gradient
    def conv(x, kernel):
        def grad(*args, upstream=None):
            dy = args[0] if upstream is None else upstream                 # (N, H, W, C_out)
            turned = ops.transpose(ops.flip(kernel, axis=(0, 1)), (0, 1, 3, 2))
            dx = ops.conv(dy, turned, padding="same")
            padded = ops.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
            dy_rows = ops.reshape(dy, (-1, c_out))
            taps = [ops.einsum("pc,po->co",
                               ops.reshape(padded[:, i:i + height, j:j + width, :], (-1, c_in)),
                               dy_rows)
                    for i in range(kh) for j in range(kw)]
            return dx, ops.reshape(ops.stack(taps), (kh, kw, c_in, c_out))

        return ops.conv(x, kernel, padding="same"), grad

    # A tensor, not the variable (tf.custom_gradient refuses those): the gradient reaches a
    # layer's kernel variable through this read.
    return conv(ops.convert_to_tensor(x), ops.copy(kernel))


@keras.saving.register_keras_serializable(package="course_lib")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose kernel gradient on a large map is written out (see module).

    The written-out gradient is used when all of these hold, decided when the layer is traced:
    no GPU is visible (:func:`course_lib.config.gpu_devices`), stride 1, dilation 1, "same"
    padding, an odd square kernel larger than 1×1, ``groups=1``, channels-last, and the map
    has at least :data:`MIN_CELLS` cells with :data:`MIN_CHANNELS` channels in and out.
    Otherwise it is ``keras.layers.Conv2D`` unchanged.

    Taught in notebooks/03_convolution (the gradient) and notebooks/05_fpn (where it is used).
    """

    def _writes_out_kernel_grad(self, inputs) -> bool:
        from course_lib.config import gpu_devices

        kh, kw = self.kernel_size
        height, width = inputs.shape[1], inputs.shape[2]
        return (tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                and self.padding == "same" and kh == kw and kh % 2 == 1 and kh > 1
                and self.groups == 1 and self.data_format == "channels_last"
                and height is not None and width is not None
                and height * width >= MIN_CELLS
                and min(inputs.shape[-1], self.filters) >= MIN_CHANNELS
                and not gpu_devices())

    def convolution_op(self, inputs, kernel):
        if self._writes_out_kernel_grad(inputs):
            return conv_same_with_gemm_kernel_grad(inputs, kernel)
        return super().convolution_op(inputs, kernel)

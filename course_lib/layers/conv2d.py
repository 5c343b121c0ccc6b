"""Keras' ``Conv2D`` made faster on CPUs in two measured places: the kernel gradient of a large
map written out as matrix products, and one image convolved as its two halves on AVX2 CPUs.

Used by the ResNet's 3×3 convolutions, the FPN's output convolutions and the RPN head, whose
3×3 convolutions on P2 (a quarter of the image in each direction, 256 channels in and out) are
the largest in Mask R-CNN. The layer computes what ``keras.layers.Conv2D`` computes, with the
same weights (a model built with it loads weights saved from one built without it); only how
it is computed differs, and only where that was measured to pay.

Why. The gradient of a stride-1 "same" convolution ``y = x ⋆ w`` (``k×k`` kernel) with
respect to its kernel is, for each tap ``(i, j)`` of the kernel, one matrix product:

    dL/dw[i, j] = x_shifted(i, j)ᵀ · dL/dy        (C_in × N·H·W) · (N·H·W × C_out)

where ``x_shifted(i, j)`` is the zero-padded input moved by ``(i - k//2, j - k//2)`` and
flattened to ``(N·H·W, C_in)``. TensorFlow's oneDNN kernel for this gradient
(``Conv2DBackpropFilter``) is 3.7× slower than the forward convolution on a 128×128 map with
256 channels when oneDNN is limited to AVX2 (0.73 s against 0.19 s for batch 2, AMD EPYC,
``ONEDNN_MAX_CPU_ISA=AVX2``), while the nine matrix products take 0.25 s; with AVX-512 they
take 0.23 s against 0.30 s (bench/README.md, "The kernel gradient of the P2 convolutions").
On smaller maps, and with fewer channels (under 256 with AVX-512, under 64 with AVX2), the
backend's kernel is as fast or faster, so the layer keeps it there (the thresholds below); on a
GPU it is always kept.

The input gradient is the backend's forward convolution of ``dL/dy`` with the kernel turned by
180° and its channel axes swapped (exact for stride 1, "same" padding, odd kernels).

One image on an AVX2 CPU. oneDNN picks its kernel by the shape it is given: for a single
image under AVX2 it runs a 3×3 convolution as im2col + matrix product at about a third of the
speed of its kernel for two images (256 → 256 channels on 128×128: 306 ms for one image, 94 ms
for the same map cut in two halves run as a batch of two; AMD EPYC capped with
``ONEDNN_MAX_CPU_ISA=AVX2``). A "same" convolution of one image *is* the convolution of its two
halves, each given the ``k // 2`` rows of its neighbour it needs at the cut (a *halo*), so on
such a CPU (:func:`course_lib.config.onednn_runs_avx2`) the layer runs a lone image that way
(:func:`conv_same_in_two_halves`). With AVX-512, oneDNN's one-image kernel is already the fast
one and the cut would cost 5–35 %, so it is not made there.
"""

from __future__ import annotations

import keras
from keras import ops

#: Written-out kernel gradient from this many output cells (``H × W``) per image up...
MIN_CELLS = 128 * 128
#: ... and at least this many channels in and out (smaller products lose to oneDNN's kernel:
#: with AVX-512, 128 channels on 128×128 took 108 ms written out against the backend's 99)...
MIN_CHANNELS = 256
#: ... or this many where oneDNN runs AVX2, whose kernel-gradient kernel is slow from 64
#: channels on (128×128, 64 channels, batch 2: 0.05 s against 0.03 s written out; 128
#: channels: 209 ms against 108; 256×256, 64 channels: 405 ms against 163).
MIN_CHANNELS_AVX2 = 64
#: One image is cut in two from this many rows (at 12 rows the halves lose to the whole).
MIN_ROWS_TO_HALVE = 16


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


def conv_same_in_two_halves(x, kernel):
    """``ops.conv(x, kernel, padding="same")`` of one image, computed as a batch of its two halves.

    Args:
        x: ``(1, H, W, C_in)``, static ``H`` even (a batch traced as unknown must hold one
            image when it runs).
        kernel: ``(k, k, C_in, C_out)``, ``k`` odd.

    Returns ``(1, H, W, C_out)``: the same numbers (to float rounding) as the whole
    convolution. Output row ``r`` needs input rows ``r - k//2 … r + k//2``, so the top half
    (output rows ``0 … H/2 - 1``) needs the zero-padded input down to row ``H/2 + k//2`` and the
    bottom half from row ``H/2 - k//2``: two overlapping slices of the padded image, stacked as
    a batch of two and convolved without padding. Gradients flow through the slices as usual.

    Taught in notebooks/03_convolution.
    """
    kh, kw = kernel.shape[0], kernel.shape[1]
    height, width = x.shape[1], x.shape[2]
    if x.shape[0] not in (1, None) or height is None or height % 2 or kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"conv_same_in_two_halves needs one image with an even, known height "
                         f"and an odd kernel; got input {tuple(x.shape)}, kernel {kh}×{kw}")
    half, ph, pw = height // 2, kh // 2, kw // 2
    padded = ops.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))       # (1, H + 2ph, W + 2pw, C)
    halves = ops.concatenate([padded[:, :half + 2 * ph], padded[:, half:]], axis=0)
    y = ops.conv(halves, kernel, padding="valid")                    # (2, H/2, W, C_out)
    # Top rows, then bottom rows. Nothing here reshapes to a literal batch of 1: reshaping the
    # input so inside the layer's cond branch let TensorFlow's graph optimiser infer that the
    # batch is 1 and take this branch for every batch (tests/test_conv2d.py).
    return ops.reshape(y, (-1, height, width, kernel.shape[-1]))


@keras.saving.register_keras_serializable(package="course_lib")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose kernel gradient on a large map is written out (see module).

    Both paths are decided when the layer is traced, and both need no visible GPU
    (:func:`course_lib.config.gpu_devices`), stride 1, dilation 1, "same" padding, an odd
    square kernel larger than 1×1, ``groups=1``, channels-last and a known height and width.
    Then the kernel gradient is written out when the map has at least :data:`MIN_CELLS` cells
    and :data:`MIN_CHANNELS` channels in and out (:data:`MIN_CHANNELS_AVX2` where
    :func:`course_lib.config.onednn_runs_avx2`); and a lone image (batch 1) with an even
    height of at least :data:`MIN_ROWS_TO_HALVE` rows is convolved as its two halves
    (:func:`conv_same_in_two_halves`) where oneDNN runs AVX2. Otherwise it is
    ``keras.layers.Conv2D`` unchanged.

    Taught in notebooks/03_convolution (the gradient, section 9; the halves, section 10) and
    notebooks/05_fpn (where it is used).
    """

    def _stride1_same_on_cpu(self, inputs) -> bool:
        """What both paths need: no GPU, stride 1, dilation 1, "same", an odd square kernel
        larger than 1×1, ``groups=1``, channels-last, the map's height and width known."""
        from course_lib.config import gpu_devices

        kh, kw = self.kernel_size
        return (tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                and self.padding == "same" and kh == kw and kh % 2 == 1 and kh > 1
                and self.groups == 1 and self.data_format == "channels_last"
                and inputs.shape[1] is not None and inputs.shape[2] is not None
                and not gpu_devices())

    def _writes_out_kernel_grad(self, inputs) -> bool:
        from course_lib.config import onednn_runs_avx2

        if not (self._stride1_same_on_cpu(inputs)
                and inputs.shape[1] * inputs.shape[2] >= MIN_CELLS):
            return False
        channels = min(inputs.shape[-1], self.filters)
        return channels >= (MIN_CHANNELS_AVX2 if onednn_runs_avx2() else MIN_CHANNELS)

    def _halves_one_image(self, inputs) -> bool:
        from course_lib.config import onednn_runs_avx2

        return (self._stride1_same_on_cpu(inputs) and inputs.shape[0] in (1, None)
                and inputs.shape[1] % 2 == 0 and inputs.shape[1] >= MIN_ROWS_TO_HALVE
                and onednn_runs_avx2())

    def convolution_op(self, inputs, kernel):
        def whole(x):
            if self._writes_out_kernel_grad(x):
                return conv_same_with_gemm_kernel_grad(x, kernel)
            return super(Conv2D, self).convolution_op(x, kernel)

        if not self._halves_one_image(inputs):
            return whole(inputs)
        if inputs.shape[0] == 1:
            return conv_same_in_two_halves(inputs, kernel)
        # The batch is unknown when traced (Keras relaxes it once it has seen two batch
        # sizes): decide when the graph runs.
        return ops.cond(ops.shape(inputs)[0] == 1,
                        lambda: conv_same_in_two_halves(inputs, kernel),
                        lambda: whole(inputs))

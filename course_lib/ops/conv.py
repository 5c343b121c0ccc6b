"""2-D convolution and pooling in NumPy, written to be read, plus the arithmetic around them.

Taught in notebooks/03_convolution.

Layout follows Keras: images are ``NHWC`` (batch, height, width, channels) and kernels are
``HWIO`` (kernel height, kernel width, input channels, output channels), so a kernel copied
from ``keras.layers.Conv2D(...).kernel`` plugs straight in. Like every deep-learning library,
"convolution" here is really cross-correlation: the kernel is not flipped.

Padding is ``"valid"`` (none), ``"same"`` (output size ``ceil(n / stride)``, with any odd
leftover padding on the bottom/right, exactly as TensorFlow and Keras place it) or an
``int`` ``p`` (``p`` zeros on every side).

Two implementations of the same function:

- :func:`conv2d_loops` with explicit loops, the definition written out, for tiny inputs;
- :func:`conv2d` vectorised with ``sliding_window_view`` and one ``einsum`` (a matrix
  product over the window), fast enough for a photograph.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Padding = str | int


def _check_positive(name: str, value: int) -> int:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def effective_kernel_size(k: int, dilation: int = 1) -> int:
    """Span in pixels of a ``k``-tap kernel with gaps of ``dilation - 1``: ``d·(k-1) + 1``.

    Taught in notebooks/03_convolution.
    """
    return dilation * (k - 1) + 1


def padding_amounts(n: int, k: int, stride: int = 1, padding: Padding = "valid",
                    *, dilation: int = 1) -> tuple[int, int]:
    """``(before, after)`` zeros added along one axis of length ``n``.

    ``"same"`` pads a total of ``max((ceil(n/s) - 1)·s + k_eff - n, 0)`` and puts the odd one
    after (bottom/right), as TensorFlow does.

    Taught in notebooks/03_convolution.
    """
    k_eff = effective_kernel_size(k, dilation)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return 0, 0
        if mode == "same":
            out = math.ceil(n / stride)
            total = max((out - 1) * stride + k_eff - n, 0)
            return total // 2, total - total // 2
        raise ValueError(f"padding={padding!r} is not understood; use 'valid', 'same' or an int.")
    if isinstance(padding, (int, np.integer)) and padding >= 0:
        return int(padding), int(padding)
    raise ValueError(f"padding={padding!r} is not understood; use 'valid', 'same' or an int >= 0.")


def conv_output_size(n: int, k: int, stride: int = 1, padding: Padding = "valid",
                     *, dilation: int = 1) -> int:
    """Output length of a convolution (or pooling) along one axis.

    ``floor((n + p_before + p_after - k_eff) / stride) + 1`` with ``k_eff = d·(k-1) + 1``;
    for ``"same"`` this is ``ceil(n / stride)``. A result below 1 means the (dilated) kernel
    does not fit and raises ``ValueError``.

    Args:
        n: input length in pixels.
        k: kernel taps along this axis.
        stride, dilation: positive integers.
        padding: ``"valid"``, ``"same"`` or an int of zeros per side.

    Returns:
        The output length (an ``int``).

    Taught in notebooks/03_convolution.
    """
    for name, value in (("n", n), ("k", k), ("stride", stride), ("dilation", dilation)):
        _check_positive(name, value)
    before, after = padding_amounts(n, k, stride, padding, dilation=dilation)
    k_eff = effective_kernel_size(k, dilation)
    span = n + before + after - k_eff
    if span < 0:
        raise ValueError(
            f"kernel of size {k} with dilation {dilation} spans {k_eff} pixels, more than the "
            f"{n + before + after} pixels of the padded input; pad more or use a smaller kernel."
        )
    return span // stride + 1


def _pair(name: str, value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (height, width), got {value!r}.")
        return _check_positive(name, value[0]), _check_positive(name, value[1])
    v = _check_positive(name, value)
    return v, v


def _as_batch(x: np.ndarray, name: str = "x") -> tuple[np.ndarray, bool]:
    """``(N, H, W, C)`` view of ``x``; remembers whether a batch axis was added."""
    x = np.asarray(x)
    if x.ndim == 3:
        return x[None], True
    if x.ndim != 4:
        raise ValueError(f"{name} must be (H, W, C) or (N, H, W, C); got shape {x.shape}.")
    return x, False


def _pad_input(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
               padding: Padding, *, dilation: tuple[int, int], value: float = 0.0) -> np.ndarray:
    """Pad ``(N, H, W, C)`` on H and W as ``padding`` asks, with ``value``."""
    (top, bottom) = padding_amounts(x.shape[1], kernel[0], stride[0], padding, dilation=dilation[0])
    (left, right) = padding_amounts(x.shape[2], kernel[1], stride[1], padding, dilation=dilation[1])
    # Validate sizes with the clear message of conv_output_size.
    conv_output_size(x.shape[1], kernel[0], stride[0], padding, dilation=dilation[0])
    conv_output_size(x.shape[2], kernel[1], stride[1], padding, dilation=dilation[1])
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _check_kernel(x: np.ndarray, w: np.ndarray, b) -> tuple[np.ndarray, np.ndarray | None]:
    w = np.asarray(w)
    if w.ndim != 4:
        raise ValueError(f"kernel w must be HWIO (kh, kw, in_channels, out_channels); got shape "
                         f"{w.shape}. For one 2-D filter use w[:, :, None, None].")
    if w.shape[2] != x.shape[-1]:
        raise ValueError(f"kernel expects {w.shape[2]} input channels but x has {x.shape[-1]} "
                         "(the last axis of x must match axis 2 of w).")
    if b is not None:
        b = np.asarray(b)
        if b.shape != (w.shape[3],):
            raise ValueError(f"bias b must have shape ({w.shape[3]},), one per output channel; "
                             f"got {b.shape}.")
    return w, b


def conv2d_loops(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride=1,
                 *, padding: Padding = "valid", dilation=1) -> np.ndarray:
    """2-D convolution written as the definition: loops over outputs, taps and channels.

    ``y[n, i, j, o] = b[o] + sum_{u, v, c} xp[n, i·s + u·d, j·s + v·d, c] · w[u, v, c, o]``
    where ``xp`` is the padded input. Slow: use on inputs of a few pixels only.

    Args:
        x: ``(N, H, W, C_in)`` or ``(H, W, C_in)`` input.
        w: ``(kh, kw, C_in, C_out)`` kernel (HWIO, as Keras stores it).
        b: ``(C_out,)`` bias or ``None``.
        stride, dilation: int or ``(height, width)`` pair.
        padding: ``"valid"``, ``"same"`` or int zeros per side.

    Returns:
        ``(N, H_out, W_out, C_out)`` float64 (no batch axis when ``x`` had none).

    Taught in notebooks/03_convolution.
    """
    x, squeezed = _as_batch(x)
    w, b = _check_kernel(x, w, b)
    sh, sw = _pair("stride", stride)
    dh, dw = _pair("dilation", dilation)
    kh, kw, c_in, c_out = w.shape
    xp = _pad_input(x.astype(np.float64), (kh, kw), (sh, sw), padding, dilation=(dh, dw))
    h_out = (xp.shape[1] - effective_kernel_size(kh, dh)) // sh + 1
    w_out = (xp.shape[2] - effective_kernel_size(kw, dw)) // sw + 1
    y = np.zeros((x.shape[0], h_out, w_out, c_out))
    for n in range(x.shape[0]):
        for i in range(h_out):
            for j in range(w_out):
                for o in range(c_out):
                    total = 0.0 if b is None else float(b[o])
                    for u in range(kh):
                        for v in range(kw):
                            for c in range(c_in):  # every input channel adds into output o
                                total += xp[n, i * sh + u * dh, j * sw + v * dw, c] * w[u, v, c, o]
                    y[n, i, j, o] = total
    return y[0] if squeezed else y


def _windows(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int]) -> np.ndarray:
    """``(N, H_out, W_out, C, kh, kw)`` view of every (dilated, strided) window of ``xp``.

    ``sliding_window_view`` gives every window of the *dilated* span without copying; taking
    every ``d``-th tap keeps the kernel's taps and every ``s``-th window applies the stride.
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    span = (effective_kernel_size(kh, dh), effective_kernel_size(kw, dw))
    win = sliding_window_view(xp, span, axis=(1, 2))
    return win[:, ::sh, ::sw, :, ::dh, ::dw]


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride=1,
           *, padding: Padding = "valid", dilation=1) -> np.ndarray:
    """Vectorised 2-D convolution (same result as :func:`conv2d_loops`, and as Keras).

    Every window is viewed (no copy) with ``sliding_window_view``, then one ``einsum``
    multiplies each window by the kernel and sums over taps and input channels: the
    "im2col + matrix product" idea without building the column matrix by hand.

    Args:
        x: ``(N, H, W, C_in)`` or ``(H, W, C_in)`` input.
        w: ``(kh, kw, C_in, C_out)`` kernel (HWIO).
        b: ``(C_out,)`` bias or ``None``.
        stride, dilation: int or ``(height, width)`` pair.
        padding: ``"valid"``, ``"same"`` or int zeros per side.

    Returns:
        ``(N, H_out, W_out, C_out)`` float (no batch axis when ``x`` had none), with
        ``H_out = conv_output_size(H, kh, stride, padding, dilation)``.

    Taught in notebooks/03_convolution.
    """
    x, squeezed = _as_batch(x)
    w, b = _check_kernel(x, w, b)
    kernel = w.shape[:2]
    stride, dilation = _pair("stride", stride), _pair("dilation", dilation)
    dtype = np.result_type(x.dtype, w.dtype, np.float32)
    xp = _pad_input(x.astype(dtype, copy=False), kernel, stride, padding, dilation=dilation)
    win = _windows(xp, kernel, stride, dilation)
    y = np.einsum("nhwcuv,uvco->nhwo", win, w.astype(dtype, copy=False), optimize=True)
    if b is not None:
        y = y + b
    return y[0] if squeezed else y


def _pool(x, pool_size, strides, padding, *, reduce) -> np.ndarray:
    x, squeezed = _as_batch(x)
    pool = _pair("pool_size", pool_size)
    stride = pool if strides is None else _pair("strides", strides)
    # NaN marks padding so that max and mean ignore it, as Keras does with "same" pooling:
    # the average divides by the number of real pixels in the window, not by the window size.
    xp = _pad_input(x.astype(np.float64), pool, stride, padding, dilation=(1, 1), value=np.nan)
    win = _windows(xp, pool, stride, (1, 1))
    out = reduce(win, axis=(-2, -1))
    return out[0] if squeezed else out


def max_pool2d(x: np.ndarray, pool_size=2, strides=None, padding: str = "valid") -> np.ndarray:
    """Max over each ``pool_size`` window, channel by channel (like ``keras.layers.MaxPooling2D``).

    Args:
        x: ``(N, H, W, C)`` or ``(H, W, C)``.
        pool_size: int or pair; strides: int, pair or ``None`` (= ``pool_size``).
        padding: ``"valid"`` or ``"same"`` (padding never wins the max).

    Returns:
        ``(N, H_out, W_out, C)`` float64.

    Taught in notebooks/03_convolution.
    """
    return _pool(x, pool_size, strides, padding, reduce=np.nanmax)


def avg_pool2d(x: np.ndarray, pool_size=2, strides=None, padding: str = "valid") -> np.ndarray:
    """Mean over each window (like ``keras.layers.AveragePooling2D``).

    With ``"same"`` padding a border window averages only its real pixels, as Keras does.

    Taught in notebooks/03_convolution.
    """
    return _pool(x, pool_size, strides, padding, reduce=np.nanmean)


class RFStep(NamedTuple):
    """Receptive field after one layer of a stack.

    Attributes:
        size: side in input pixels of the region one output unit sees.
        jump: distance in input pixels between neighbouring output units (product of strides).

    Taught in notebooks/03_convolution.
    """

    size: int
    jump: int


def receptive_field(layers: Sequence[Sequence[int]]) -> list[RFStep]:
    """Growth of the receptive field over a stack of convolutions or poolings.

    Each layer is ``(k, stride)`` or ``(k, stride, dilation)``. Going up one layer,
    ``size += (k_eff - 1) · jump`` and ``jump *= stride``: a layer widens the view by its
    kernel span measured in the *input* pixels between its inputs. Padding shifts the
    field but does not change its size.

    Args:
        layers: the stack, first layer first.

    Returns:
        One :class:`RFStep` per layer; ``[-1].size`` is the whole stack's receptive field.

    Taught in notebooks/03_convolution.
    """
    size, jump, steps = 1, 1, []
    for i, layer in enumerate(layers):
        if len(layer) not in (2, 3):
            raise ValueError(f"layers[{i}] = {layer!r}: give (k, stride) or (k, stride, dilation).")
        k, s = int(layer[0]), int(layer[1])
        d = int(layer[2]) if len(layer) == 3 else 1
        for name, v in (("k", k), ("stride", s), ("dilation", d)):
            if v < 1:
                raise ValueError(f"layers[{i}]: {name} must be >= 1, got {v}.")
        size += (effective_kernel_size(k, d) - 1) * jump
        jump *= s
        steps.append(RFStep(size, jump))
    return steps

"""Exercise checks of notebooks/03_convolution: conv2d forward, the output-size formula.

Taught in notebooks/03_convolution.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.exercises.checking import Case, check_function, exact

_CONV_RNG = np.random.default_rng(3)
CONV2D_CASES = [
    Case("hand-worked: 0..8 in a 3x3 image, kernel [[1, 0], [0, -1]], bias 1 (all -3)",
         (np.arange(9.0).reshape(3, 3, 1), np.array([1.0, 0.0, 0.0, -1.0]).reshape(2, 2, 1, 1),
          np.array([1.0]))),
    Case("3 input channels, 4 filters: each filter sums over the channels",
         (_CONV_RNG.normal(size=(6, 7, 3)), _CONV_RNG.normal(size=(3, 3, 3, 4)),
          _CONV_RNG.normal(size=4))),
    Case("stride 2, valid", (_CONV_RNG.normal(size=(7, 7, 2)), _CONV_RNG.normal(size=(3, 3, 2, 2)),
                             np.zeros(2)), {"stride": 2}),
    Case("'same' padding with stride 2 on an even side: the odd zero goes bottom/right",
         (_CONV_RNG.normal(size=(6, 6, 1)), _CONV_RNG.normal(size=(3, 3, 1, 1)), np.zeros(1)),
         {"stride": 2, "padding": "same"}),
    Case("a 1x1 kernel mixes channels only", (_CONV_RNG.normal(size=(4, 5, 3)),
                                              _CONV_RNG.normal(size=(1, 1, 3, 2)), np.ones(2))),
]


def _conv2d_reference(x, w, b, stride=1, padding="valid"):
    from course_lib.ops import conv

    return conv.conv2d(x, w, b, stride=stride, padding=padding)


def check_conv2d(fn: Callable) -> bool:
    """Check ``conv2d(x (H, W, C_in), w (kh, kw, C_in, C_out), b, stride, padding)``.

    Taught in notebooks/03_convolution.
    """
    return check_function(
        fn, _conv2d_reference, CONV2D_CASES, name="conv2d",
        hint="output size floor((n + pads - k) / stride) + 1; for 'same' pad a total of "
             "max((ceil(n/s) - 1)*s + k - n, 0) with the smaller half first; output[i, j, o] = "
             "b[o] + sum over (u, v, c) of x[i*s + u, j*s + v, c] * w[u, v, c, o].",
    )


CONV_OUTPUT_SIZE_CASES = [
    Case("3x3 valid on 5 pixels: 3", (5, 3, 1, 0, 1)),
    Case("ResNet's stem: 224 px, 7x7, stride 2, padding 3 -> 112", (224, 7, 2, 3, 1)),
    Case("stride 2 that does not divide evenly: 8 px, 3x3, no padding -> 3", (8, 3, 2, 0, 1)),
    Case("dilation 2 makes a 3-tap kernel span 5 pixels: 9 -> 5", (9, 3, 1, 0, 2)),
    Case("a 1x1 kernel with stride 2 on 7 pixels -> 4", (7, 1, 2, 0, 1)),
]


def _conv_output_size_reference(n, k, stride, padding, dilation):
    from course_lib.ops import conv

    return conv.conv_output_size(n, k, stride, padding, dilation=dilation)


def check_conv_output_size(fn: Callable) -> bool:
    """Check ``conv_output_size(n, k, stride, padding, dilation) -> int`` (int padding).

    Taught in notebooks/03_convolution.
    """
    return check_function(
        fn, _conv_output_size_reference, CONV_OUTPUT_SIZE_CASES, name="conv_output_size",
        compare=lambda got, exp: exact(int(got), exp) if np.ndim(got) == 0 else "not one number",
        hint="k_eff = dilation * (k - 1) + 1, then (n + 2 * padding - k_eff) // stride + 1 "
             "(integer division rounds down).",
    )

"""U-Net (Ronneberger, Fischer & Brox, 2015) and its same-padding variant, as Keras models.

Taught in notebooks/10_unet.

Two flavours share one builder, :func:`build_unet`:

- ``padding="valid"``: the paper's net. Every 3×3 convolution is unpadded, so it eats one
  pixel on each side (a side of ``s`` becomes ``s - 2``); 2×2 max pooling halves the side;
  a 2×2 up-convolution (transposed convolution, stride 2) doubles it; the skip connection's
  larger map is centre-cropped to the up-sampled one and concatenated ("crop and copy").
  The output is smaller than the input: 572×572 in, 388×388 out with ``depth=4``. Predicting
  a large image therefore needs overlap-tiling (:mod:`course_lib.models.overlap_tile`).
- ``padding="same"``: the variant most Kaggle/DSB write-ups (and the seed report) used.
  Zero-padded convolutions keep the side, so the output has the input's size (which must be
  divisible by ``2**depth``); optional batch normalisation and dropout.

Size arithmetic of the valid net (two 3×3 convolutions per level, ``d = depth``): going down,
a side ``s`` becomes ``(s - 4) / 2`` at each pooling, which must be an integer, so ``s - 4``
must be even at every level. At the bottom two more convolutions take 4 pixels. Going up,
a side ``t`` becomes ``2·t - 4``. Writing ``b`` for the side entering the bottom block:

    input  = 2**d · b + 4 · (2**d - 1)          (572 = 16·32 + 60)
    output = 2**d · (b - 4) - 4 · (2**d - 1)    (388 = 16·28 - 60)

so ``input - output = 12 · 2**d - 8`` (184 for the paper: a margin of 92 px per side that
the net needs as context), and valid inputs are exactly the sizes ``≡ -4 (mod 2**d)``.

Model code uses Keras layers and ``keras.ops`` only, so it builds on TensorFlow, JAX and
PyTorch backends.
"""

from __future__ import annotations

import math

import keras
import numpy as np

#: Smallest side allowed at the bottom of the valid net (before its two convolutions): 8
#: leaves 4 after them, and a side of 4 stays 4 through every up step (2·4 - 4 = 4).
_MIN_BOTTOM = 8


# --------------------------------------------------------------------------------------
# Size arithmetic (valid convolutions)
# --------------------------------------------------------------------------------------

def unet_level_sizes(input_size: int, depth: int = 4) -> list[tuple[str, int]]:
    """Every feature-map side of the valid U-Net, in the order the paper's figure shows them.

    Args:
        input_size: side of the square input tile, in pixels.
        depth: number of poolings (4 in the paper).

    Returns:
        ``[(stage name, side), ...]`` from ``"input"`` to ``"output"``, e.g. for 572:
        572, 570, 568, 284, 282, 280, ..., 32, 30, 28, 56, 54, 52, ..., 392, 390, 388.

    Raises:
        ValueError: when a pooling would see an odd side, or a side would fall below the
            minimum; the message names the nearest valid input (:func:`valid_input_size`).

    Taught in notebooks/10_unet.
    """
    _check_depth(depth)
    s = int(input_size)
    sizes = [("input", s)]
    for level in range(1, depth + 1):
        s -= 2
        sizes.append((f"down{level} conv1", s))
        s -= 2
        sizes.append((f"down{level} conv2", s))
        if s <= 0 or s % 2:
            raise ValueError(
                f"input_size={input_size} gives an odd or empty side ({s}) before pooling "
                f"{level}; a valid U-Net input of depth {depth} is ≡ -4 mod {2 ** depth}. "
                f"Use valid_input_size({input_size}, {depth}) = "
                f"{valid_input_size(max(input_size, 1), depth)}."
            )
        s //= 2
        sizes.append((f"pool{level}", s))
    if s < _MIN_BOTTOM:
        raise ValueError(
            f"input_size={input_size} is too small for depth {depth}: the bottom side would be "
            f"{s} (< {_MIN_BOTTOM}). The smallest valid input is {min_input_size(depth)}."
        )
    s -= 2
    sizes.append(("bottom conv1", s))
    s -= 2
    sizes.append(("bottom conv2", s))
    for level in range(depth, 0, -1):
        s *= 2
        sizes.append((f"up{level} upconv", s))
        s -= 2
        sizes.append((f"up{level} conv1", s))
        s -= 2
        sizes.append((f"up{level} conv2", s))
    sizes.append(("output", s))
    return sizes


def unet_output_size(input_size: int, depth: int = 4) -> int:
    """Output side of the valid U-Net for a square input side (572 → 388 for depth 4).

    Each level down: two 3×3 valid convolutions (-2 each), then a 2×2 pooling (÷2, needs an
    even side). Bottom: two convolutions (-4). Each level up: 2×2 up-convolution (×2), then
    two convolutions (-4). See the module docstring for the closed form.

    Raises:
        ValueError: for an input that is not valid (see :func:`valid_input_size`).

    Taught in notebooks/10_unet.
    """
    return unet_level_sizes(input_size, depth)[-1][1]


def min_input_size(depth: int = 4) -> int:
    """Smallest valid input side: bottom side 8, so ``2**d · 8 + 4 · (2**d - 1)`` (188 for d=4).

    Taught in notebooks/10_unet.
    """
    _check_depth(depth)
    return 2 ** depth * _MIN_BOTTOM + 4 * (2 ** depth - 1)


def valid_input_size(input_size: int, depth: int = 4, direction: str = "nearest") -> int:
    """The valid input side nearest to ``input_size`` (every pooling sees an even side).

    Valid sides are ``2**d · b + 4 · (2**d - 1)`` for a bottom side ``b ≥ 8``, i.e. the sides
    ``≡ -4 (mod 2**d)`` from :func:`min_input_size` up: for ``d = 4`` they are 188, 204, …,
    556, 572, 588, … (steps of 16).

    Args:
        input_size: the side you would like, in pixels.
        depth: number of poolings.
        direction: ``"nearest"`` (ties go up), ``"up"`` (smallest valid ≥ input_size) or
            ``"down"`` (largest valid ≤ input_size, at least the minimum).

    Taught in notebooks/10_unet.
    """
    _check_depth(depth)
    if direction not in ("nearest", "up", "down"):
        raise ValueError(f"direction={direction!r}: use 'nearest', 'up' or 'down'")
    step, offset = 2 ** depth, 4 * (2 ** depth - 1)
    b_exact = (input_size - offset) / step
    below = max(math.floor(b_exact), _MIN_BOTTOM)
    above = max(math.ceil(b_exact), _MIN_BOTTOM)
    lo, hi = step * below + offset, step * above + offset
    if direction == "up":
        return hi
    if direction == "down":
        return lo
    return lo if input_size - lo < hi - input_size else hi


def input_size_for_output(output_size: int, depth: int = 4) -> int:
    """Smallest valid input side whose output side is at least ``output_size``.

    Useful to choose an overlap-tile size: ask for the output tile you want.

    Taught in notebooks/10_unet.
    """
    margin = 12 * 2 ** depth - 8  # input - output, the same for every valid input
    return valid_input_size(output_size + margin, depth, direction="up")


def _check_depth(depth: int) -> None:
    if not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth={depth!r}: the number of poolings must be an integer ≥ 1")


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------

def center_crop(x: np.ndarray, target_hw: tuple[int, int]) -> np.ndarray:
    """Centre crop of a ``(..., H, W, C)`` array to ``target_hw`` (NumPy; what crop-and-copy does).

    When ``H - h`` is odd the extra row is dropped at the bottom (the same rule as
    :func:`_crop_amounts`, and as the model's Cropping2D).

    Taught in notebooks/10_unet.
    """
    x = np.asarray(x)
    h, w = target_hw
    (top, bottom), (left, right) = _crop_amounts(x.shape[-3:-1], (h, w))
    return x[..., top:x.shape[-3] - bottom, left:x.shape[-2] - right, :]


def _crop_amounts(big_hw, small_hw) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) to centre-crop ``big_hw`` down to ``small_hw``."""
    out = []
    for big, small in zip(big_hw, small_hw, strict=True):
        if big is None or small is None:
            raise ValueError("crop-and-concatenate needs static spatial sizes: build the "
                             "valid U-Net with a fixed input_shape such as (572, 572, 1)")
        diff = big - small
        if diff < 0:
            raise ValueError(f"cannot centre-crop side {big} to the larger side {small}")
        out.append((diff // 2, diff - diff // 2))
    return tuple(out)


@keras.saving.register_keras_serializable(package="course_lib")
class PerImageStandardization(keras.layers.Layer):
    """``(x - mean) / max(std, eps)`` per image over H, W and C (``keras.ops`` only).

    Nuclei images range from nearly black fluorescence to bright bright-field: standardising
    each image makes their contrast comparable before the first convolution.

    Taught in notebooks/10_unet.
    """

    def __init__(self, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x):
        x = keras.ops.cast(x, self.compute_dtype)
        mean = keras.ops.mean(x, axis=(1, 2, 3), keepdims=True)
        std = keras.ops.std(x, axis=(1, 2, 3), keepdims=True)
        return (x - mean) / keras.ops.maximum(std, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def _conv_block(x, filters: int, padding: str, batch_norm: bool, dropout: float, name: str,
                bn_momentum: float = 0.99, kernel_initializer="he_normal"):
    """Two 3×3 convolutions with ReLU (optionally BatchNorm before ReLU, dropout between)."""
    for i in (1, 2):
        x = keras.layers.Conv2D(filters, 3, padding=padding, use_bias=not batch_norm,
                                kernel_initializer=kernel_initializer, name=f"{name}_conv{i}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{i}")(x)
        if i == 1 and dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def build_unet(
    input_shape: tuple = (572, 572, 1),
    n_classes: int = 2,
    base_filters: int = 64,
    depth: int = 4,
    padding: str = "valid",
    batch_norm: bool = False,
    dropout: float = 0.0,
    final_activation: str | None = "softmax",
    rescale: float | str | keras.layers.Layer | None = None,
    name: str | None = None,
    bn_momentum: float = 0.99,
    kernel_initializer=None,
) -> keras.Model:
    """A U-Net as a Keras functional model.

    Args:
        input_shape: ``(H, W, C)``. For ``padding="valid"`` H and W must be fixed valid sides
            (:func:`valid_input_size`); for ``"same"`` they may be ``None`` (any size divisible
            by ``2**depth``).
        n_classes: output channels (2 in the paper: background and cell; 3 for background /
            interior / border).
        base_filters: filters at the first level; level ``k`` has ``base_filters · 2**k``
            (64, 128, 256, 512, 1024 in the paper).
        depth: number of poolings (4 in the paper).
        padding: ``"valid"`` (the paper) or ``"same"`` (output size = input size).
        batch_norm: BatchNorm after each convolution (the same-padding variant's option).
        dropout: dropout rate inside each block (0 = none). The paper used dropout only at
            the end of the contracting path; here it applies in every block when > 0.
        final_activation: ``"softmax"``, ``"sigmoid"`` or ``None`` (logits).
        rescale: input scaling done inside the model, so it takes the pixels as the data
            pipeline gives them: a number multiplies them (``1 / 255``), ``"per_image"``
            standardises each image (:class:`PerImageStandardization`; note that it makes a
            tile's output depend on the tile's own statistics, which overlap-tiling exposes),
            a Keras layer is applied as it is (e.g. a ``keras.layers.Normalization`` adapted
            on training images: one fixed affine map for every tile), ``None`` does nothing.
        name: the model's name (default ``unet_valid`` / ``unet_same``).
        bn_momentum: momentum of the batch-norm moving statistics. Keras' 0.99 averages over
            ~100 steps: after a short run the statistics used at inference are still mostly
            their initial values (0 mean, unit variance); 0.9 (~10 steps) suits short runs.
        kernel_initializer: ``None`` for He-normal 3×3 convolutions and Keras' defaults
            elsewhere; any Keras initializer to use it for every kernel. ``"zeros"`` builds a
            model whose weights only get counted much faster under JAX, where each random
            initializer is compiled once per weight shape.

    Returns:
        A model mapping ``(B, H, W, C)`` to ``(B, H_out, W_out, n_classes)``.

    Taught in notebooks/10_unet.
    """
    _check_depth(depth)
    conv_init = kernel_initializer or "he_normal"
    other_init = kernel_initializer or "glorot_uniform"      # Keras' default
    if padding not in ("valid", "same"):
        raise ValueError(f"padding={padding!r}: use 'valid' (the paper) or 'same'")
    h, w = input_shape[0], input_shape[1]
    if padding == "valid":
        for side in (h, w):
            if side is None:
                raise ValueError("the valid U-Net needs a fixed input size, e.g. (572, 572, 1)")
            unet_output_size(side, depth)  # raises with the nearest valid size
    else:
        for side in (h, w):
            if side is not None and side % 2 ** depth:
                raise ValueError(f"the same-padding U-Net of depth {depth} needs sides divisible "
                                 f"by {2 ** depth}; got {side}")

    inputs = keras.Input(shape=input_shape, name="image")
    if rescale is None:
        x = inputs
    elif isinstance(rescale, keras.layers.Layer):
        x = rescale(inputs)
    elif rescale == "per_image":
        x = PerImageStandardization(name="standardize")(inputs)
    else:
        x = keras.layers.Rescaling(float(rescale), name="rescale")(inputs)
    skips = []
    for level in range(depth):
        x = _conv_block(x, base_filters * 2 ** level, padding, batch_norm, dropout,
                        name=f"down{level + 1}", bn_momentum=bn_momentum,
                        kernel_initializer=conv_init)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{level + 1}")(x)
    x = _conv_block(x, base_filters * 2 ** depth, padding, batch_norm, dropout, name="bottom",
                    bn_momentum=bn_momentum, kernel_initializer=conv_init)
    for level in range(depth - 1, -1, -1):
        filters = base_filters * 2 ** level
        x = keras.layers.Conv2DTranspose(filters, 2, strides=2, kernel_initializer=other_init,
                                         name=f"up{level + 1}_upconv")(x)
        skip = skips[level]
        if padding == "valid":
            # crop-and-copy: the skip map is larger because its convolutions ate less border
            crop = _crop_amounts(skip.shape[1:3], x.shape[1:3])
            skip = keras.layers.Cropping2D(crop, name=f"up{level + 1}_crop")(skip)
        x = keras.layers.Concatenate(name=f"up{level + 1}_concat")([skip, x])
        x = _conv_block(x, filters, padding, batch_norm, dropout, name=f"up{level + 1}",
                        bn_momentum=bn_momentum, kernel_initializer=conv_init)
    outputs = keras.layers.Conv2D(n_classes, 1, activation=final_activation,
                                  kernel_initializer=other_init, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name or f"unet_{padding}")


def paper_unet(input_size: int = 572, in_channels: int = 1, n_classes: int = 2,
               base_filters: int = 64, depth: int = 4, **kwargs) -> keras.Model:
    """The paper's valid-convolution U-Net: 572×572×1 → 388×388×2 with the defaults.

    Taught in notebooks/10_unet.
    """
    return build_unet((input_size, input_size, in_channels), n_classes=n_classes,
                      base_filters=base_filters, depth=depth, padding="valid", **kwargs)


def same_unet(input_shape: tuple = (None, None, 3), n_classes: int = 1, base_filters: int = 16,
              depth: int = 4, batch_norm: bool = True, dropout: float = 0.1,
              final_activation: str | None = "sigmoid", **kwargs) -> keras.Model:
    """The same-padding U-Net (output size = input size) with batch norm and dropout.

    Defaults follow the common DSB2018 recipe: 3 input channels, one sigmoid output (the
    nucleus probability), 16 base filters. Use ``n_classes=3, final_activation="softmax"``
    for background / interior / border targets.

    Taught in notebooks/10_unet.
    """
    return build_unet(input_shape, n_classes=n_classes, base_filters=base_filters, depth=depth,
                      padding="same", batch_norm=batch_norm, dropout=dropout,
                      final_activation=final_activation, **kwargs)


def unet_parameter_count(base_filters: int = 64, depth: int = 4, in_channels: int = 1,
                         n_classes: int = 2) -> int:
    """Trainable parameters of the plain U-Net (no batch norm), counted by formula.

    A k×k convolution from ``a`` to ``b`` channels has ``k·k·a·b + b`` parameters. Level ``i``
    (filters ``f_i = base·2**i``) down: ``3·3·f_{i-1}·f_i + f_i`` and ``3·3·f_i·f_i + f_i``;
    up: the 2×2 up-convolution ``2·2·f_{i+1}·f_i + f_i``, then ``3·3·2f_i·f_i + f_i`` (the
    concatenation doubles the channels) and ``3·3·f_i·f_i + f_i``; finally a 1×1 classifier.

    Taught in notebooks/10_unet.
    """
    def conv(k, a, b):
        return k * k * a * b + b

    f = [base_filters * 2 ** i for i in range(depth + 1)]
    total, prev = 0, in_channels
    for i in range(depth + 1):           # the contracting path and the bottom block
        total += conv(3, prev, f[i]) + conv(3, f[i], f[i])
        prev = f[i]
    for i in range(depth - 1, -1, -1):   # the expanding path
        total += conv(2, f[i + 1], f[i]) + conv(3, 2 * f[i], f[i]) + conv(3, f[i], f[i])
    return total + conv(1, f[0], n_classes)

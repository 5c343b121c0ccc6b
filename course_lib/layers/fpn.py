"""Feature Pyramid Network: the top-down pathway that gives every level strong features.

Taught in notebooks/05_fpn.

From the backbone's ``C2..C5`` (strides 4, 8, 16, 32):

1. a 1×1 *lateral* convolution brings each ``Ci`` to the same width (256 channels);
2. top-down, each level adds the level above, upsampled ×2 by nearest neighbour:
   ``M5 = lat5``, ``M4 = lat4 + up(M5)``, ``M3 = lat3 + up(M4)``, ``M2 = lat2 + up(M3)``;
3. a 3×3 convolution *smooths* each sum (reducing the aliasing of upsampling): ``P2..P5``;
4. ``P6`` subsamples ``P5`` by 2 (a 1×1 max pool with stride 2), a coarser level used only
   by the RPN for the largest anchors.

Level sides are ``input_side / stride``, so sides must be divisible by 32 for the upsampled
map to line up with the lateral (checked by :func:`build_backbone`).

Keras layers only, so the model builds on TensorFlow, JAX and PyTorch.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from course_lib.layers import resnet as resnet_lib
from course_lib.layers.conv2d import Conv2D

#: Pyramid levels produced and their strides.
LEVELS = ("P2", "P3", "P4", "P5", "P6")
STRIDES = {"P2": 4, "P3": 8, "P4": 16, "P5": 32, "P6": 64}
BACKBONES = ("light", "resnet50", "resnet101")


def top_down(features, channels: int = 256, name: str = "fpn"):
    """The FPN top-down pathway on Keras tensors ``[C2, C3, C4, C5]``; returns ``[P2..P6]``.

    Layer names follow the level: ``fpn_c5p5`` (lateral), ``fpn_p5upsampled``,
    ``fpn_p4add``, ``fpn_p4`` (3×3 smoothing), ``fpn_p6``.

    Args:
        features: four Keras tensors, strides 4, 8, 16, 32 (any channel counts).
        channels: width of every pyramid level (256 in the paper).
        name: layer-name prefix.

    Returns:
        Five Keras tensors ``P2..P6``, each with ``channels`` channels, strides 4…64.

    Taught in notebooks/05_fpn.
    """
    if len(features) != 4:
        raise ValueError(f"top_down needs [C2, C3, C4, C5], got {len(features)} tensors.")
    merged = {}
    higher = None
    for level in (5, 4, 3, 2):
        lateral = layers.Conv2D(channels, 1, name=f"{name}_c{level}p{level}")(features[level - 2])
        if higher is None:
            merged[level] = lateral
        else:
            up = layers.UpSampling2D(2, interpolation="nearest",
                                     name=f"{name}_p{level + 1}upsampled")(higher)
            merged[level] = layers.Add(name=f"{name}_p{level}add")([up, lateral])
        higher = merged[level]
    # The smoothing convolutions are the model's largest (P2: 256 channels at a quarter of the
    # image side): this Conv2D is Keras' with a cheaper kernel gradient there (layers/conv2d.py).
    outputs = [Conv2D(channels, 3, padding="same", name=f"{name}_p{level}")(merged[level])
               for level in (2, 3, 4, 5)]
    p6 = layers.MaxPooling2D(pool_size=1, strides=2, name=f"{name}_p6")(outputs[-1])
    return outputs + [p6]


def fpn_shapes(input_size, channels: int = 256) -> list[dict]:
    """Table of pyramid levels for an input of ``input_size`` (int side or ``(H, W)``).

    Returns:
        One dict per level ``P2..P6``: ``level``, ``stride``, ``height``, ``width``,
        ``channels``. Sizes are ``ceil(side / stride)`` (exact when sides divide by 32).

    Taught in notebooks/05_fpn.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    table = []
    for level in LEVELS:
        s = STRIDES[level]
        table.append({"level": level, "stride": s, "height": -(-h // s), "width": -(-w // s),
                      "channels": channels})
    return table


def _check_side(input_shape) -> None:
    for side in input_shape[:2]:
        if side is not None and side % 32:
            raise ValueError(
                f"input_shape {tuple(input_shape)}: sides must be divisible by 32 so each "
                f"upsampled level lines up with its lateral (got {side}); resize or pad the "
                f"image to {-(-side // 32) * 32}.")


def build_backbone(name: str = "light", input_shape=(None, None, 3), channels: int = 256,
                   freeze_bn: bool = True, *, backbone_kwargs: dict | None = None) -> keras.Model:
    """Backbone + FPN as one model: image ``(N, H, W, 3)`` to ``[P2, P3, P4, P5, P6]``.

    Args:
        name: ``"light"`` (quick mode on a CPU), ``"resnet50"`` or ``"resnet101"``.
        input_shape: ``(H, W, 3)``; sides divisible by 32, or ``None``.
        channels: pyramid width (256 in the paper).
        freeze_bn: BatchNorm in inference mode, as detection fine-tuning does.
        backbone_kwargs: extra arguments of :func:`~course_lib.layers.resnet.light_resnet`
            or :func:`~course_lib.layers.resnet.resnet`.

    Returns:
        ``keras.Model`` named ``f"{name}_fpn"`` with five outputs of ``channels`` channels at
        strides 4, 8, 16, 32, 64. Its layer named ``"backbone"`` (the ResNet, a nested model) can
        receive ImageNet weights with :func:`~course_lib.layers.resnet.load_imagenet_weights`.

    Taught in notebooks/05_fpn.
    """
    input_shape = tuple(input_shape)
    _check_side(input_shape)
    kwargs = dict(backbone_kwargs or {})
    if name == "light":
        backbone = resnet_lib.light_resnet(input_shape, freeze_bn=freeze_bn, name="backbone",
                                              **kwargs)
    elif name in ("resnet50", "resnet101"):
        backbone = resnet_lib.resnet(int(name[6:]), input_shape, freeze_bn=freeze_bn,
                                        name="backbone", **kwargs)
    else:
        raise ValueError(f"backbone name {name!r} is not known; use one of {BACKBONES}.")
    inputs = keras.Input(shape=input_shape, name="image")
    pyramid = top_down(backbone(inputs), channels)
    return keras.Model(inputs, pyramid, name=f"{name}_fpn")


def upsample_add(higher, lateral):
    """NumPy reference of one top-down merge: nearest ×2 upsampling of ``higher`` plus ``lateral``.

    Args:
        higher: ``(..., h, w, C)`` coarser level (already merged).
        lateral: ``(..., 2h, 2w, C)`` lateral of the next finer level.

    Returns:
        ``(..., 2h, 2w, C)``: each coarse cell copied into a 2×2 block, then added.

    Taught in notebooks/05_fpn.
    """
    higher, lateral = np.asarray(higher), np.asarray(lateral)
    up = np.repeat(np.repeat(higher, 2, axis=-3), 2, axis=-2)
    if up.shape != lateral.shape:
        raise ValueError(f"upsampled higher level has shape {up.shape} but the lateral has "
                         f"{lateral.shape}; the finer level must be exactly twice as large.")
    return up + lateral

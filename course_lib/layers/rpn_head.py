"""The RPN head: a small convolutional net, shared by every pyramid level, that scores each
anchor (object or not) and predicts the deltas that refine it.

Taught in notebooks/06_anchors_and_rpn.

A shared 3×3 conv (ReLU) then two 1×1 convs per pyramid level, the *same weights on every
level*: ``k`` objectness logits and ``4k`` deltas per cell (``k`` anchors per cell). Outputs are
flattened in the anchor order of :mod:`course_lib.ops.anchors` (and of
:class:`course_lib.layers.anchors.AnchorGenerator`), so prediction ``a`` belongs to anchor ``a``.
"""

from __future__ import annotations

import keras
from keras import ops

from course_lib.layers.conv2d import Conv2D


@keras.saving.register_keras_serializable(package="course_lib")
class RPNHead(keras.layers.Layer):
    """RPN head shared over pyramid levels.

    Args:
        anchors_per_location: ``k`` = len(scales per level) * len(ratios).
        channels: filters of the shared 3×3 conv (256 in FPN).

    Call:
        ``features``: one ``(B, H, W, C)`` tensor or a list of them (P2..P6), all with ``C``
        channels.

    Returns:
        ``(logits, deltas)``: ``(B, A)`` objectness logits (sigmoid gives P(object)) and
        ``(B, A, 4)`` deltas, ``A = sum(H * W * k)`` over levels, level by level, each level in
        (row, column, anchor) order: the order of ``pyramid_anchors``.

    Taught in notebooks/06_anchors_and_rpn.
    """

    def __init__(self, anchors_per_location: int = 3, channels: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.anchors_per_location = int(anchors_per_location)
        self.channels = int(channels)
        # Keras' Conv2D, with a cheaper kernel gradient on P2's large map (layers/conv2d.py).
        self.shared = Conv2D(self.channels, 3, padding="same", activation="relu",
                             name="rpn_conv_shared")
        self.objectness = keras.layers.Conv2D(self.anchors_per_location, 1, name="rpn_class_logits")
        self.box = keras.layers.Conv2D(4 * self.anchors_per_location, 1, name="rpn_bbox")

    def build(self, input_shape):
        # One feature shape (B, H, W, C) or a list of them; every level has the same C.
        shape = input_shape[0] if isinstance(input_shape[0], (list, tuple)) else input_shape
        self.shared.build(shape)
        hidden = tuple(shape[:-1]) + (self.channels,)
        self.objectness.build(hidden)
        self.box.build(hidden)

    def call(self, features):
        if not isinstance(features, (list, tuple)):
            features = [features]
        logits, deltas = [], []
        for f in features:
            h = self.shared(f)
            # static counts where the level's size is known, so (B, A) keeps a static A
            cells = (f.shape[1] * f.shape[2] * self.anchors_per_location
                     if f.shape[1] is not None and f.shape[2] is not None else -1)
            logits.append(ops.reshape(self.objectness(h), (-1, cells)))
            deltas.append(ops.reshape(self.box(h), (-1, cells, 4)))
        return ops.concatenate(logits, axis=1), ops.concatenate(deltas, axis=1)

    def compute_output_shape(self, input_shape):
        shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
        total = 0
        for s in shapes:
            if s[1] is None or s[2] is None:
                total = None
                break
            total += s[1] * s[2] * self.anchors_per_location
        batch = shapes[0][0]
        return (batch, total), (batch, total, 4)

    def get_config(self):
        return {**super().get_config(), "anchors_per_location": self.anchors_per_location,
                "channels": self.channels}

"""The anchor generator layer: the model makes its anchors from the image shape it is given.

Taught in notebooks/06_anchors_and_rpn.

The arithmetic (scales, ratios, strides, the order row → column → scale → ratio, centres at
``(i + 0.5) * stride``) is :func:`course_lib.ops.anchors.pyramid_anchors`; this layer calls it
on the *static* shape of the images it receives, so a model needs no anchor input and a saved
model carries only the settings. The anchors are a constant of the traced graph.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from course_lib.ops import anchors as anchor_ops


@keras.saving.register_keras_serializable(package="course_lib")
class AnchorGenerator(keras.layers.Layer):
    """``layer(images) -> (A, 4)`` float32 anchors of every pyramid level, level by level.

    Args:
        scales: one scale per level (pixels, square root of the area) or one list per level.
        ratios: aspect ratios width / height, shared by every level.
        strides: feature strides of the levels (4 … 64 for P2 … P6).
        anchor_stride: place anchors on every ``anchor_stride``-th cell.

    Call:
        ``images``: ``(B, H, W, C)`` with static ``H`` and ``W`` (only the shape is read).

    Returns:
        ``(A, 4)`` anchors ``(y1, x1, y2, x2)`` in image pixels, the order of the RPN head's
        outputs. :meth:`level_counts` gives the anchors per level for an image side.

    Taught in notebooks/06_anchors_and_rpn.
    """

    def __init__(self, scales=anchor_ops.DEFAULT_SCALES, ratios=anchor_ops.DEFAULT_RATIOS,
                 strides=anchor_ops.DEFAULT_STRIDES, anchor_stride: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.scales = [list(map(float, s)) if np.ndim(s) else float(s) for s in scales]
        self.ratios = [float(r) for r in ratios]
        self.strides = [int(s) for s in strides]
        self.anchor_stride = int(anchor_stride)
        if len(self.scales) != len(self.strides):
            raise ValueError(f"AnchorGenerator: {len(self.scales)} scales for "
                             f"{len(self.strides)} strides; give one scale (or list) per level.")

    @property
    def anchors_per_location(self) -> int:
        """Anchors per feature cell (scales of one level × ratios)."""
        first = self.scales[0]
        return (len(first) if isinstance(first, list) else 1) * len(self.ratios)

    def anchors_np(self, image_shape) -> np.ndarray:
        """``(A, 4)`` float32 anchors for an image shape ``(H, W[, C])`` (NumPy)."""
        return anchor_ops.pyramid_anchors(tuple(image_shape)[:2], self.scales, self.ratios,
                                          self.strides,
                                          anchor_stride=self.anchor_stride).astype(np.float32)

    def level_counts(self, image_shape) -> list[int]:
        """Anchors on each level for an image shape, in the order of ``strides``."""
        return anchor_ops.level_counts(tuple(image_shape)[:2], self.scales, self.ratios,
                                       self.strides, anchor_stride=self.anchor_stride)

    def call(self, images):
        h, w = images.shape[1], images.shape[2]
        if h is None or w is None:
            raise ValueError("AnchorGenerator needs images with a static height and width "
                             "(fixed shapes); build the model with image_size set.")
        return ops.convert_to_tensor(self.anchors_np((h, w)), dtype="float32")

    def compute_output_shape(self, input_shape):
        return (sum(self.level_counts(input_shape[1:3])), 4)

    def get_config(self):
        return {**super().get_config(), "scales": self.scales, "ratios": self.ratios,
                "strides": self.strides, "anchor_stride": self.anchor_stride}

"""Keras layers for RoIAlign: one feature map (``RoIAlign``) or a feature pyramid
(``PyramidRoIAlign``).

Taught in notebooks/07_roi_pool_vs_roi_align.

Like torchvision, each layer is a thin wrapper over a functional op in
:mod:`course_lib.ops.roi` (``roi_align_ops`` / ``multilevel_roi_align_ops``), which holds the
arithmetic; the layer only stores the settings and serialises them. Boxes are
``(y1, x1, y2, x2)`` in image pixels (DESIGN.md), padded to a fixed ``N`` per image.
"""

from __future__ import annotations

import keras

from course_lib.ops import roi as roi_ops


def _size_pair(output_size) -> tuple[int, int]:
    if isinstance(output_size, int):
        return (output_size, output_size)
    h, w = output_size
    return (int(h), int(w))


@keras.saving.register_keras_serializable(package="course_lib")
class RoIAlign(keras.layers.Layer):
    """RoIAlign over one feature map: ``layer(features, boxes) -> (B, N, h, w, C)``.

    Args:
        output_size: ``h`` or ``(h, w)`` bins per box (7 for a box head, 14 for a mask head).
        spatial_scale: feature cells per image pixel (``1 / stride``).
        sampling_ratio: ``sampling_ratio²`` bilinear samples averaged per bin.
        aligned: half-pixel shift (``u * spatial_scale - 0.5``), the course's convention.

    Call args:
        features: ``(B, H, W, C)`` with static ``H, W``.
        boxes: ``(B, N, 4)`` image pixels.
        (Or one list ``[features, boxes]``, the Keras multi-input habit.)

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """

    def __init__(self, output_size=7, spatial_scale: float = 1.0 / 16, sampling_ratio: int = 2,
                 aligned: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.output_size = _size_pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        # Check the settings now, where the mistake is made, not at the first call.
        roi_ops.check_sampling_ratio(self.sampling_ratio)
        if self.spatial_scale <= 0:
            raise ValueError(f"RoIAlign spatial_scale must be > 0 (1 / stride); got {spatial_scale}")

    def call(self, features, boxes=None):
        if boxes is None:  # one list input, as in layer([features, boxes])
            features, boxes = features
        out = roi_ops.roi_align_ops(features, boxes, self.output_size, self.spatial_scale,
                                    sampling_ratio=self.sampling_ratio, aligned=self.aligned)
        return keras.ops.cast(out, self.compute_dtype)  # float32 inside, policy dtype out

    def compute_output_shape(self, features_shape, boxes_shape=None):
        if boxes_shape is None:
            features_shape, boxes_shape = features_shape
        return (boxes_shape[0], boxes_shape[1], *self.output_size, features_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(output_size=list(self.output_size), spatial_scale=self.spatial_scale,
                      sampling_ratio=self.sampling_ratio, aligned=self.aligned)
        return config


@keras.saving.register_keras_serializable(package="course_lib")
class PyramidRoIAlign(keras.layers.Layer):
    """Multi-level RoIAlign over ``P2..P5``: ``layer(boxes, [P2, P3, P4, P5])``.

    Each box is pooled from the level ``k = floor(k0 + log2(sqrt(wh) / canonical))`` clamped to
    the pyramid (:func:`course_lib.ops.roi.fpn_level`), with that level's stride.

    Args:
        output_size: ``h`` or ``(h, w)``.
        strides: stride of each pyramid level passed in, lowest level first.
        sampling_ratio, aligned: as in :class:`RoIAlign`.
        k0, canonical: the level rule (4 and 224 in the FPN paper).
        min_level: level of the first map (2 for ``P2``).

    Call args:
        boxes: ``(B, N, 4)`` image pixels.
        features: list of ``(B, H_l, W_l, C)``, one per stride, static sizes.
        (Or one list ``[boxes, [P2, P3, P4, P5]]``.)

    Returns ``(B, N, h, w, C)``.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """

    def __init__(self, output_size=7, strides=(4, 8, 16, 32), sampling_ratio: int = 2,
                 aligned: bool = True, *, k0: int = 4, canonical: float = 224.0,
                 min_level: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.output_size = _size_pair(output_size)
        self.strides = tuple(int(s) for s in strides)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.k0 = int(k0)
        self.canonical = float(canonical)
        self.min_level = int(min_level)
        roi_ops.check_sampling_ratio(self.sampling_ratio)
        if not self.strides:
            raise ValueError("PyramidRoIAlign needs at least one stride, e.g. strides=(4, 8, 16, 32)")

    @property
    def max_level(self) -> int:
        return self.min_level + len(self.strides) - 1

    def call(self, boxes, features=None):
        if features is None:  # one list input, as in layer([boxes, [P2, P3, P4, P5]])
            boxes, features = boxes
        if len(features) != len(self.strides):
            raise ValueError(f"PyramidRoIAlign got {len(features)} feature maps but was built "
                             f"for strides {self.strides}; pass one map per stride.")
        out = roi_ops.multilevel_roi_align_ops(
            features, boxes, self.output_size, self.sampling_ratio, aligned=self.aligned,
            strides=self.strides, k0=self.k0, canonical=self.canonical, min_level=self.min_level)
        return keras.ops.cast(out, self.compute_dtype)

    def levels(self, boxes):
        """``(B, N)`` int32 level of each box (for inspection and plots)."""
        return roi_ops.fpn_level_ops(boxes, self.k0, self.canonical, self.min_level,
                                     max_level=self.max_level)

    def compute_output_shape(self, boxes_shape, features_shape=None):
        if features_shape is None:
            boxes_shape, features_shape = boxes_shape
        return (boxes_shape[0], boxes_shape[1], *self.output_size, features_shape[0][-1])

    def get_config(self):
        config = super().get_config()
        config.update(output_size=list(self.output_size), strides=list(self.strides),
                      sampling_ratio=self.sampling_ratio, aligned=self.aligned, k0=self.k0,
                      canonical=self.canonical, min_level=self.min_level)
        return config

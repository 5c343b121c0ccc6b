"""The box coder: boxes <-> the deltas a head predicts, and clipping to the image window.

Taught in notebooks/06_anchors_and_rpn (deltas) and 08_heads_and_losses (per-class deltas).

The arithmetic lives in :mod:`course_lib.ops.boxes` (``encode``/``decode`` and their ``_ops``
twins, deltas ``(dy, dx, log dh, log dw)`` divided by ``std = (0.1, 0.1, 0.2, 0.2)``); this
module names the piece the way detection libraries do (torchvision's ``BoxCoder``) and adds the
one operation the model needs on top: clipping to each image's *window*, the part of the padded
square that holds the image (read from ``image_meta`` by :func:`course_lib.ops.geometry.meta_window`).
Boxes are never clipped to the zero padding around the window: nothing is there to detect.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from course_lib.ops import boxes as box_ops

BOX_STD = box_ops.BOX_STD


class BoxCoder:
    """Encode boxes relative to reference boxes (anchors or RoIs) and decode them back.

    Args:
        std: the four standard deviations the deltas are divided by.

    ``encode(boxes, refs)`` and ``decode(deltas, refs)`` take ``(..., 4)`` tensors (keras.ops);
    ``encode_np`` / ``decode_np`` are the NumPy references. ``decode(encode(b, r), r) == b``.

    Taught in notebooks/06_anchors_and_rpn.
    """

    def __init__(self, std=BOX_STD):
        self.std = tuple(float(s) for s in std)
        if len(self.std) != 4 or min(self.std) <= 0:
            raise ValueError(f"BoxCoder std must be four positive numbers, got {std!r}.")

    def encode(self, boxes, refs):
        """``(..., 4)`` boxes -> ``(..., 4)`` float32 deltas relative to ``refs``."""
        return box_ops.encode_ops(boxes, refs, self.std)

    def decode(self, deltas, refs):
        """``(..., 4)`` deltas -> ``(..., 4)`` float32 boxes (pixel edges)."""
        return box_ops.decode_ops(deltas, refs, self.std)

    def encode_np(self, boxes, refs) -> np.ndarray:
        """NumPy reference of :meth:`encode` for ``(N, 4)`` arrays."""
        return box_ops.encode(boxes, refs, self.std)

    def decode_np(self, deltas, refs) -> np.ndarray:
        """NumPy reference of :meth:`decode` for ``(N, 4)`` arrays."""
        return box_ops.decode(deltas, refs, self.std)


def clip_to_window_np(boxes, window) -> np.ndarray:
    """Clip ``(N, 4)`` boxes to one window ``(y1, x1, y2, x2)`` (NumPy reference).

    Taught in notebooks/06_anchors_and_rpn.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    y1, x1, y2, x2 = (float(v) for v in np.asarray(window).reshape(4))
    return np.clip(boxes, [y1, x1, y1, x1], [y2, x2, y2, x2])


def clip_to_window_ops(boxes, windows):
    """Clip ``(B, N, 4)`` boxes to each image's window ``(B, 4)`` (``keras.ops``).

    Returns:
        ``(B, N, 4)`` float32: y clipped to ``[wy1, wy2]``, x to ``[wx1, wx2]``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    boxes = ops.convert_to_tensor(boxes, dtype="float32")
    windows = ops.cast(windows, "float32")
    low = ops.concatenate([windows[:, :2], windows[:, :2]], axis=-1)[:, None, :]   # (B, 1, 4)
    high = ops.concatenate([windows[:, 2:], windows[:, 2:]], axis=-1)[:, None, :]
    return ops.minimum(ops.maximum(boxes, low), high)


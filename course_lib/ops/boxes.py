"""Boxes: areas, IoU, clipping, format conversions and the delta coding used by anchors and heads.

Taught in notebooks/06_anchors_and_rpn (and the convention in 00_start_here).

Convention (DESIGN.md): a box is float ``(y1, x1, y2, x2)`` in pixel-edge coordinates. Pixel
``(r, c)`` covers ``[r, r+1) x [c, c+1)``, so a mask's tight box is
``(rmin, cmin, rmax + 1, cmax + 1)`` and its height is ``y2 - y1`` with no ``+1``.

Naming scheme: every function here has a NumPy *reference* (plain name: ``iou``, ``encode``,
``decode``, ``clip``, ``to_normalized``, ``from_normalized``) that the notebooks and tests read,
and a ``keras.ops`` *twin* with the suffix ``_ops`` (``iou_ops``, ``encode_ops``, ...) that model
code calls. Twins take and return backend tensors, accept any leading batch dimensions, keep
shapes fixed, and are tested against their reference.

Deltas: for a box with centre ``(cy, cx)`` and size ``(h, w)`` and an anchor
``(acy, acx, ah, aw)`` (centre = (y1 + y2) / 2, size = y2 - y1),

    dy = (cy - acy) / ah / 0.1,   dx = (cx - acx) / aw / 0.1,
    dh = log(h / ah) / 0.2,       dw = log(w / aw) / 0.2.

The standard deviations ``BOX_STD = (0.1, 0.1, 0.2, 0.2)`` scale the deltas to roughly unit
variance so the regression loss weighs centre and size alike.
"""

from __future__ import annotations

import numpy as np
from keras import ops

#: Standard deviations the deltas are divided by: (dy, dx, log dh, log dw).
BOX_STD = (0.1, 0.1, 0.2, 0.2)

#: Largest ``log`` size delta (before the std) that decode accepts: exp(4.135) = 62.5×, as in
#: Detectron's ``log(1000 / 16)``. Keeps an untrained head from producing inf-sized boxes.
MAX_LOG_SCALE = float(np.log(1000.0 / 16.0))


def _as_boxes(boxes, name: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.shape[-1:] != (4,):
        raise ValueError(
            f"{name} must have shape (..., 4) holding (y1, x1, y2, x2); got shape {arr.shape}. "
            "Reshape to (N, 4) (COCO (x, y, w, h) boxes: convert with from_xywh first)."
        )
    return arr


def area(boxes: np.ndarray) -> np.ndarray:
    """Areas of boxes.

    Args:
        boxes: ``(N, 4)`` float ``(y1, x1, y2, x2)``, pixel edges.

    Returns:
        ``(N,)`` areas in square pixels; degenerate boxes (y2 <= y1 or x2 <= x1) give 0.

    Taught in notebooks/00_start_here.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    heights = np.clip(boxes[:, 2] - boxes[:, 0], 0.0, None)
    widths = np.clip(boxes[:, 3] - boxes[:, 1], 0.0, None)
    return heights * widths


# ----------------------------------------------------------------------------- NumPy references

def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: ``(N, 4)`` boxes ``(y1, x1, y2, x2)``, pixel edges.
        b: ``(M, 4)`` boxes, same convention.

    Returns:
        ``(N, M)`` float64 IoU in [0, 1]. Pairs whose union is empty (two degenerate boxes)
        give 0. Computed by broadcasting ``(N, 1)`` against ``(1, M)``, no Python loop.

    Taught in notebooks/06_anchors_and_rpn.
    """
    a = _as_boxes(a, "a").reshape(-1, 4)
    b = _as_boxes(b, "b").reshape(-1, 4)
    y1 = np.maximum(a[:, None, 0], b[None, :, 0])
    x1 = np.maximum(a[:, None, 1], b[None, :, 1])
    y2 = np.minimum(a[:, None, 2], b[None, :, 2])
    x2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(y2 - y1, 0.0, None) * np.clip(x2 - x1, 0.0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def _centre_size(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * h, boxes[..., 1] + 0.5 * w, h, w


def encode(boxes: np.ndarray, anchors: np.ndarray, std=BOX_STD) -> np.ndarray:
    """Deltas that move each anchor onto its box (row ``i`` of one to row ``i`` of the other).

    Args:
        boxes: ``(N, 4)`` target boxes (or any ``(..., 4)`` broadcastable with ``anchors``).
        anchors: ``(N, 4)`` anchors (or proposals), with positive height and width.
        std: the four divisors, default :data:`BOX_STD`.

    Returns:
        ``(N, 4)`` deltas ``(dy, dx, log dh, log dw) / std`` (formula in the module docstring).

    Raises:
        ValueError: an anchor or box with zero or negative size (its log is undefined).

    Taught in notebooks/06_anchors_and_rpn.
    """
    boxes = _as_boxes(boxes, "boxes")
    anchors = _as_boxes(anchors, "anchors")
    cy, cx, h, w = _centre_size(boxes)
    acy, acx, ah, aw = _centre_size(anchors)
    if np.any(ah <= 0) or np.any(aw <= 0) or np.any(h <= 0) or np.any(w <= 0):
        raise ValueError("encode: boxes and anchors need y2 > y1 and x2 > x1 (a log of the size "
                         "ratio is taken); drop empty boxes before encoding.")
    deltas = np.stack([(cy - acy) / ah, (cx - acx) / aw, np.log(h / ah), np.log(w / aw)], -1)
    return deltas / np.asarray(std, dtype=np.float64)


def decode(deltas: np.ndarray, anchors: np.ndarray, std=BOX_STD) -> np.ndarray:
    """Boxes from deltas and anchors; the exact inverse of :func:`encode` (for size ratios up
    to ``exp(MAX_LOG_SCALE)`` = 62.5×, beyond which sizes are capped).

    Args:
        deltas: ``(N, 4)`` ``(dy, dx, log dh, log dw) / std``.
        anchors: ``(N, 4)`` anchors ``(y1, x1, y2, x2)``.
        std: the four divisors, default :data:`BOX_STD`.

    Returns:
        ``(N, 4)`` boxes in pixel edges. Size deltas are capped at :data:`MAX_LOG_SCALE` so an
        untrained head cannot overflow.

    Taught in notebooks/06_anchors_and_rpn.
    """
    deltas = _as_boxes(deltas, "deltas") * np.asarray(std, dtype=np.float64)
    anchors = _as_boxes(anchors, "anchors")
    acy, acx, ah, aw = _centre_size(anchors)
    cy = acy + deltas[..., 0] * ah
    cx = acx + deltas[..., 1] * aw
    h = ah * np.exp(np.minimum(deltas[..., 2], MAX_LOG_SCALE))
    w = aw * np.exp(np.minimum(deltas[..., 3], MAX_LOG_SCALE))
    return np.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], -1)


def _image_hw(shape, name: str = "shape") -> tuple[int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or shape[0] <= 0 or shape[1] <= 0:
        raise ValueError(f"{name} must be an image shape (H, W) or (H, W, C) with H, W > 0; "
                         f"got {shape}. Pass image.shape.")
    return shape[0], shape[1]


def clip(boxes: np.ndarray, shape) -> np.ndarray:
    """Clip boxes to the image: y to [0, H], x to [0, W] (pixel edges, so H is the bottom edge).

    Args:
        boxes: ``(N, 4)`` boxes.
        shape: the image shape ``(H, W)`` or ``(H, W, C)``.

    Returns:
        ``(N, 4)`` clipped copy.

    Taught in notebooks/06_anchors_and_rpn.
    """
    boxes = _as_boxes(boxes, "boxes")
    h, w = _image_hw(shape)
    return np.clip(boxes, 0.0, np.array([h, w, h, w], dtype=np.float64))


def to_xywh(boxes: np.ndarray) -> np.ndarray:
    """Course boxes ``(y1, x1, y2, x2)`` to COCO ``(x, y, width, height)`` (both pixel edges).

    Taught in notebooks/06_anchors_and_rpn.
    """
    b = _as_boxes(boxes, "boxes")
    return np.stack([b[..., 1], b[..., 0], b[..., 3] - b[..., 1], b[..., 2] - b[..., 0]], -1)


def from_xywh(xywh: np.ndarray) -> np.ndarray:
    """COCO ``(x, y, width, height)`` to course boxes ``(y1, x1, y2, x2)``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    b = _as_boxes(xywh, "xywh")
    return np.stack([b[..., 1], b[..., 0], b[..., 1] + b[..., 3], b[..., 0] + b[..., 2]], -1)


def to_normalized(boxes: np.ndarray, shape) -> np.ndarray:
    """Pixel-edge boxes to normalised coordinates: divide y by H and x by W (the image is [0, 1]²).

    Used only inside models (DESIGN.md); the inverse is :func:`from_normalized`.

    Taught in notebooks/06_anchors_and_rpn.
    """
    h, w = _image_hw(shape)
    return _as_boxes(boxes, "boxes") / np.array([h, w, h, w], dtype=np.float64)


def from_normalized(boxes: np.ndarray, shape) -> np.ndarray:
    """Normalised boxes back to pixel edges: multiply y by H and x by W.

    Taught in notebooks/06_anchors_and_rpn.
    """
    h, w = _image_hw(shape)
    return _as_boxes(boxes, "boxes") * np.array([h, w, h, w], dtype=np.float64)


# ------------------------------------------------------------------------- keras.ops twins

def _split(boxes):
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def area_ops(boxes):
    """``keras.ops`` twin of :func:`area` for ``(..., 4)`` tensors -> ``(...)``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    y1, x1, y2, x2 = _split(boxes)
    return ops.maximum(y2 - y1, 0.0) * ops.maximum(x2 - x1, 0.0)


def iou_ops(a, b):
    """``keras.ops`` twin of :func:`iou`: ``(..., N, 4)`` and ``(..., M, 4)`` -> ``(..., N, M)``.

    Leading (batch) dimensions broadcast. Empty unions give 0, like the reference.

    Taught in notebooks/06_anchors_and_rpn.
    """
    a = ops.convert_to_tensor(a, dtype="float32")
    b = ops.convert_to_tensor(b, dtype="float32")
    ay1, ax1, ay2, ax2 = [ops.expand_dims(t, -1) for t in _split(a)]  # (..., N, 1)
    by1, bx1, by2, bx2 = [ops.expand_dims(t, -2) for t in _split(b)]  # (..., 1, M)
    inter = (ops.maximum(ops.minimum(ay2, by2) - ops.maximum(ay1, by1), 0.0)
             * ops.maximum(ops.minimum(ax2, bx2) - ops.maximum(ax1, bx1), 0.0))
    union = (ops.expand_dims(area_ops(a), -1) + ops.expand_dims(area_ops(b), -2) - inter)
    positive = union > 0
    return ops.where(positive, inter / ops.where(positive, union, 1.0), 0.0)


def _centre_size_ops(boxes):
    y1, x1, y2, x2 = _split(boxes)
    h, w = y2 - y1, x2 - x1
    return y1 + 0.5 * h, x1 + 0.5 * w, h, w


def encode_ops(boxes, anchors, std=BOX_STD):
    """``keras.ops`` twin of :func:`encode` for ``(..., 4)`` tensors (no size check: in a
    model, rows of padding are masked out afterwards, so sizes are floored at a tiny epsilon).

    Taught in notebooks/06_anchors_and_rpn.
    """
    boxes = ops.convert_to_tensor(boxes, dtype="float32")
    anchors = ops.convert_to_tensor(anchors, dtype="float32")
    cy, cx, h, w = _centre_size_ops(boxes)
    acy, acx, ah, aw = _centre_size_ops(anchors)
    eps = 1e-6
    ah, aw = ops.maximum(ah, eps), ops.maximum(aw, eps)
    h, w = ops.maximum(h, eps), ops.maximum(w, eps)
    deltas = ops.stack([(cy - acy) / ah, (cx - acx) / aw, ops.log(h / ah), ops.log(w / aw)], -1)
    return deltas / ops.convert_to_tensor(np.asarray(std, dtype=np.float32))


def decode_ops(deltas, anchors, std=BOX_STD):
    """``keras.ops`` twin of :func:`decode` for ``(..., 4)`` tensors.

    Taught in notebooks/06_anchors_and_rpn.
    """
    deltas = ops.convert_to_tensor(deltas, dtype="float32")
    deltas = deltas * ops.convert_to_tensor(np.asarray(std, dtype=np.float32))
    anchors = ops.convert_to_tensor(anchors, dtype="float32")
    acy, acx, ah, aw = _centre_size_ops(anchors)
    cy = acy + deltas[..., 0] * ah
    cx = acx + deltas[..., 1] * aw
    h = ah * ops.exp(ops.minimum(deltas[..., 2], MAX_LOG_SCALE))
    w = aw * ops.exp(ops.minimum(deltas[..., 3], MAX_LOG_SCALE))
    return ops.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], -1)


def clip_ops(boxes, shape):
    """``keras.ops`` twin of :func:`clip`; ``shape`` is a static ``(H, W[, C])``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    h, w = _image_hw(shape)
    boxes = ops.convert_to_tensor(boxes, dtype="float32")
    limit = ops.convert_to_tensor(np.array([h, w, h, w], dtype=np.float32))
    return ops.minimum(ops.maximum(boxes, 0.0), limit)


def to_normalized_ops(boxes, shape):
    """``keras.ops`` twin of :func:`to_normalized` (static image shape).

    Taught in notebooks/06_anchors_and_rpn.
    """
    h, w = _image_hw(shape)
    boxes = ops.convert_to_tensor(boxes, dtype="float32")
    return boxes / ops.convert_to_tensor(np.array([h, w, h, w], dtype=np.float32))


def from_normalized_ops(boxes, shape):
    """``keras.ops`` twin of :func:`from_normalized` (static image shape).

    Taught in notebooks/06_anchors_and_rpn.
    """
    h, w = _image_hw(shape)
    boxes = ops.convert_to_tensor(boxes, dtype="float32")
    return boxes * ops.convert_to_tensor(np.array([h, w, h, w], dtype=np.float32))

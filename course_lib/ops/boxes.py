"""Boxes: areas, IoU and the delta coding used by anchors and heads.

Taught in notebooks/06_anchors_and_rpn (and the convention in 00_start_here).

Convention (DESIGN.md): a box is float ``(y1, x1, y2, x2)`` in pixel-edge coordinates. Pixel
``(r, c)`` covers ``[r, r+1) x [c, c+1)``, so a mask's tight box is
``(rmin, cmin, rmax + 1, cmax + 1)`` and its height is ``y2 - y1`` with no ``+1``.
"""

from __future__ import annotations

import numpy as np


def area(boxes: np.ndarray) -> np.ndarray:
    """Areas of boxes.

    Args:
        boxes: ``(N, 4)`` float ``(y1, x1, y2, x2)``, pixel edges.

    Returns:
        ``(N,)`` areas in square pixels; degenerate boxes (y2 <= y1 or x2 <= x1) give 0.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    heights = np.clip(boxes[:, 2] - boxes[:, 0], 0.0, None)
    widths = np.clip(boxes[:, 3] - boxes[:, 1], 0.0, None)
    return heights * widths

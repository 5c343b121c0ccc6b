"""Anchors: the fixed reference boxes an RPN scores and refines, one set per pyramid level.

Taught in notebooks/06_anchors_and_rpn.

Conventions (DESIGN.md), stated once:

- A *scale* ``s`` is the square root of the anchor's area in image pixels; a *ratio* ``r`` is
  width / height. So ``h = s / sqrt(r)`` and ``w = s * sqrt(r)`` (``r = 2``: a wide box).
- Level with stride ``t`` has a feature grid of ``ceil(H / t) x ceil(W / t)`` cells (what
  'same'-padded stride-2 convolutions give). Cell ``(i, j)`` holds anchors centred on
  ``((i + 0.5) * t, (j + 0.5) * t)``: the centre of the image patch the cell covers.
- ``anchor_stride = k`` keeps every k-th cell in each direction (cells 0, k, 2k, ...).
- Order within a level: row ``i``, then column ``j``, then scale, then ratio (innermost). This is
  the order a head's ``(B, Hf, Wf, n_anchors * 4)`` output has after reshaping to
  ``(B, Hf * Wf * n_anchors, 4)``, so anchor ``a`` and prediction ``a`` line up.
- :func:`pyramid_anchors` concatenates the levels in the order of ``strides``.
"""

from __future__ import annotations

import math

import numpy as np

#: Matterport / FPN defaults: one scale per level P2..P6, three ratios.
DEFAULT_SCALES = (32, 64, 128, 256, 512)
DEFAULT_RATIOS = (0.5, 1.0, 2.0)
DEFAULT_STRIDES = (4, 8, 16, 32, 64)


def _hw(image_shape) -> tuple[int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) < 2 or shape[0] <= 0 or shape[1] <= 0:
        raise ValueError(f"image_shape must be (H, W) or (H, W, C) with H, W > 0; got {shape}.")
    return shape[0], shape[1]


def _as_list(value) -> list[float]:
    if np.isscalar(value):
        return [float(value)]
    return [float(v) for v in value]


def feature_shape(image_shape, stride: int) -> tuple[int, int]:
    """``(ceil(H / stride), ceil(W / stride))``: the grid a level with this stride has.

    Taught in notebooks/06_anchors_and_rpn.
    """
    h, w = _hw(image_shape)
    if stride <= 0:
        raise ValueError(f"stride must be a positive integer; got {stride}.")
    return math.ceil(h / stride), math.ceil(w / stride)


def cell_anchors(scales, ratios) -> np.ndarray:
    """``(len(scales) * len(ratios), 4)`` anchors centred on (0, 0), scale-major, ratio-minor.

    Taught in notebooks/06_anchors_and_rpn.
    """
    scales = np.asarray(_as_list(scales), dtype=np.float64)
    ratios = np.asarray(_as_list(ratios), dtype=np.float64)
    if np.any(scales <= 0) or np.any(ratios <= 0):
        raise ValueError(f"scales and ratios must be positive; got {scales}, {ratios}.")
    s, r = np.meshgrid(scales, ratios, indexing="ij")
    h = (s / np.sqrt(r)).ravel()
    w = (s * np.sqrt(r)).ravel()
    return np.stack([-h / 2, -w / 2, h / 2, w / 2], axis=1)


def level_anchors(image_shape, scales, ratios, stride: int, *,
                  anchor_stride: int = 1) -> np.ndarray:
    """Anchors of one pyramid level.

    Args:
        image_shape: ``(H, W)`` or ``(H, W, C)`` of the (padded) input image.
        scales: one scale or a list of scales for this level (pixels, sqrt of area).
        ratios: aspect ratios width / height.
        stride: the level's feature stride in image pixels (4 for P2, ..., 64 for P6).
        anchor_stride: place anchors on every ``anchor_stride``-th cell.

    Returns:
        ``(n, 4)`` float64 anchors ``(y1, x1, y2, x2)`` with
        ``n = ceil(Hf / anchor_stride) * ceil(Wf / anchor_stride) * len(scales) * len(ratios)``,
        ordered row, column, scale, ratio. Not clipped: anchors may reach past the border.

    Taught in notebooks/06_anchors_and_rpn.
    """
    if anchor_stride <= 0:
        raise ValueError(f"anchor_stride must be a positive integer; got {anchor_stride}.")
    hf, wf = feature_shape(image_shape, stride)
    cy = (np.arange(0, hf, anchor_stride) + 0.5) * stride
    cx = (np.arange(0, wf, anchor_stride) + 0.5) * stride
    cy, cx = np.meshgrid(cy, cx, indexing="ij")
    centres = np.stack([cy, cx, cy, cx], axis=-1).reshape(-1, 1, 4)
    return (centres + cell_anchors(scales, ratios)[None]).reshape(-1, 4)


def _per_level_scales(scales, n_levels: int) -> list[list[float]]:
    if np.isscalar(scales):
        scales = [scales] * n_levels
    scales = list(scales)
    if len(scales) != n_levels:
        raise ValueError(f"scales has {len(scales)} entries but strides has {n_levels}: give "
                         "one scale (or one list of scales) per level.")
    return [_as_list(s) for s in scales]


def level_counts(image_shape, scales, ratios, strides, *, anchor_stride: int = 1) -> list[int]:
    """Number of anchors on each level, in the order of ``strides``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    out = []
    for level_scales, stride in zip(_per_level_scales(scales, len(strides)), strides,
                                      strict=True):
        hf, wf = feature_shape(image_shape, stride)
        cells = math.ceil(hf / anchor_stride) * math.ceil(wf / anchor_stride)
        out.append(cells * len(level_scales) * len(_as_list(ratios)))
    return out


def pyramid_anchors(image_shape, scales=DEFAULT_SCALES, ratios=DEFAULT_RATIOS,
                    strides=DEFAULT_STRIDES, *, anchor_stride: int = 1) -> np.ndarray:
    """Anchors of every pyramid level, concatenated level by level.

    Args:
        image_shape: ``(H, W)`` or ``(H, W, C)``.
        scales: one scale per level (FPN: 32 on P2 ... 512 on P6), or one list per level.
        ratios: aspect ratios width / height, shared by every level.
        strides: feature strides of the levels, same length as ``scales``.
        anchor_stride: place anchors on every ``anchor_stride``-th cell.

    Returns:
        ``(A, 4)`` float64 anchors; ``A = sum(level_counts(...))``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    per_level = _per_level_scales(scales, len(strides))
    return np.concatenate([
        level_anchors(image_shape, s, ratios, t, anchor_stride=anchor_stride)
        for s, t in zip(per_level, strides, strict=True)
    ], axis=0)

"""Hypothesis strategies for boxes and scores, shared by the property tests.

Why strategies rather than a seed fed to NumPy: hypothesis shrinks a failing example to a
minimal one (two boxes, one tie) and remembers it; a seed only says "seed 4711 failed".

What they draw, on purpose:

- coordinates on a quarter-pixel grid (``k / 4``), so areas and intersections are exact in
  float32 *and* float64. The NumPy references (float64) and TensorFlow's ops (float32) then
  see the same IoUs, and a comparison such as "IoU > threshold" cannot flip on rounding;
- zero-area boxes (a height or a width of 0), duplicated boxes, and boxes that only touch;
- scores from a handful of values, so ties are common (ties keep the lower index first);
- IoU thresholds that real IoUs hit exactly (1/2, 1/3, ...), to test "greater than" vs "at least";
- ``max_output`` from 0 to past the number of boxes, so it often cuts the kept list short.

CI runs them derandomised (the ``ci`` profile in conftest.py); each test bounds its examples.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

#: Grid step of every drawn coordinate, in pixels.
STEP = 0.25

#: IoU thresholds, several of which drawn IoUs hit exactly (1/3 = 2 px of 6, 1/2, ...).
IOU_THRESHOLDS = (0.0, 0.2, 0.25, 1 / 3, 0.4, 0.5, 0.6, 2 / 3, 0.7, 0.75, 0.9, 1.0)


def grid_floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Floats ``lo, lo + STEP, ..., hi`` (``lo`` and ``hi`` multiples of STEP)."""
    return st.integers(round(lo / STEP), round(hi / STEP)).map(lambda k: k * STEP)


def box(max_coord: float = 32.0, max_side: float = 16.0,
        min_side: float = 0.0) -> st.SearchStrategy[tuple[float, float, float, float]]:
    """One ``(y1, x1, y2, x2)`` box with corner in ``[0, max_coord]`` and sides in
    ``[min_side, max_side]`` (``min_side = 0`` allows zero-area boxes: lines and points)."""
    corner = grid_floats(0.0, max_coord)
    side = grid_floats(min_side, max_side)
    return st.tuples(corner, corner, side, side).map(
        lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))


@st.composite
def boxes(draw, min_boxes: int = 0, max_boxes: int = 10, max_coord: float = 32.0,
          max_side: float = 16.0, min_side: float = 0.0, duplicates: bool = True) -> np.ndarray:
    """``(N, 4)`` float64 boxes; with ``duplicates`` some rows repeat earlier ones exactly."""
    rows = draw(st.lists(box(max_coord, max_side, min_side), min_size=min_boxes,
                         max_size=max_boxes))
    if duplicates and rows:
        picks = draw(st.lists(st.integers(0, len(rows) - 1), max_size=min(3, max_boxes)))
        rows = (rows + [rows[i] for i in picks])[:max(max_boxes, min_boxes)]
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def scores(n: int) -> st.SearchStrategy[np.ndarray]:
    """``(n,)`` float64 scores in [0, 1] drawn from eight values, so ties are frequent."""
    return st.lists(st.integers(0, 7).map(lambda k: k / 7), min_size=n, max_size=n).map(
        lambda v: np.array(v, dtype=np.float64))


@st.composite
def scored_boxes(draw, min_boxes: int = 0, max_boxes: int = 10,
                 **box_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes (N, 4), scores (N,))`` with duplicates, zero-area boxes and tied scores."""
    b = draw(boxes(min_boxes=min_boxes, max_boxes=max_boxes, **box_kwargs))
    return b, draw(scores(len(b)))


def iou_thresholds() -> st.SearchStrategy[float]:
    """IoU thresholds from :data:`IOU_THRESHOLDS`."""
    return st.sampled_from(IOU_THRESHOLDS)


def score_thresholds() -> st.SearchStrategy[float]:
    """``-inf`` (keep every score) or one of the score values (ties with the threshold)."""
    return st.one_of(st.just(float("-inf")), st.integers(0, 7).map(lambda k: k / 7))


def max_outputs(n: int) -> st.SearchStrategy[int]:
    """A ``max_output`` from 0 to ``n + 2``: often fewer than NMS would keep."""
    return st.integers(0, n + 2)


def image_shapes(max_side: int = 48) -> st.SearchStrategy[tuple[int, int]]:
    """``(H, W)`` image shapes with sides 1 to ``max_side`` pixels."""
    return st.tuples(st.integers(1, max_side), st.integers(1, max_side))


@st.composite
def label_images(draw, shape: tuple[int, int] = (24, 24), max_objects: int = 6,
                 max_label: int = 1000) -> np.ndarray:
    """``H×W`` int32 label images made of disks (later disks overwrite earlier ones, so objects
    touch, get cut, or vanish), with distinct labels that need not be consecutive."""
    n = draw(st.integers(0, max_objects))
    values = draw(st.lists(st.integers(1, max_label), min_size=n, max_size=n, unique=True))
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for v in values:
        cy = draw(st.integers(0, shape[0] - 1))
        cx = draw(st.integers(0, shape[1] - 1))
        r = draw(st.integers(1, max(shape) // 3))
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = v
    return labels

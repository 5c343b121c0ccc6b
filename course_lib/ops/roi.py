"""RoIPool and RoIAlign: cutting a fixed-size feature grid out of a feature map for each box.

Taught in notebooks/07_roi_pool_vs_roi_align.

Both operations take a feature map (one image's ``H×W×C`` array, at some stride) and boxes in
*image* pixels, and return an ``h×w×C`` grid per box. They differ in how they turn a box with
fractional edges into feature cells:

* **RoIPool** (Fast R-CNN) rounds the box edges to whole feature cells, splits the rounded box
  into ``h×w`` bins whose edges are rounded again (floor for the start, ceil for the end), and
  takes the max over each bin's cells. Two roundings: a box that moves by less than half a
  cell gives exactly the same output.
* **RoIAlign** (Mask R-CNN) keeps the box exact. Each of the ``h×w`` bins holds
  ``sampling_ratio × sampling_ratio`` regularly spaced sample points; each point is read with
  bilinear interpolation between its 4 neighbouring cells, and the points of a bin are averaged.

Coordinates (DESIGN.md). Boxes are ``(y1, x1, y2, x2)`` in image pixel *edges*. On the feature
grid, cell ``(i, j)`` has its *centre* at continuous coordinate ``(i, j)``. With ``aligned=True``
an image coordinate ``u`` maps to ``u * spatial_scale - 0.5`` on that grid (a feature cell of
stride ``s`` covers image pixels ``[i*s, (i+1)*s)``, whose centre ``(i + 0.5) * s`` maps to
``i``). ``aligned=False`` is the original Mask R-CNN / Detectron convention, ``u * spatial_scale``
with no half-pixel shift, and it also forces each box to be at least one cell high and wide.

Out-of-range samples follow torchvision and detectron2 exactly: a sample point with
``y < -1`` or ``y > H`` (or ``x < -1`` or ``x > W``) reads 0; a point inside that band but off
the grid is clamped to the nearest border cell (so ``y = -0.7`` reads row 0).

RoIPool here uses pixel-edge boxes consistently: the rounded box covers cells
``[round(y1*s), round(y2*s))`` (at least one cell). torchvision's ``roi_pool`` keeps Caffe's
legacy inclusive end (``+1`` cell); we do not, so the rounded box means what the box means.
Rounding is half-up (``floor(v + 0.5)``). A bin that lies wholly outside the feature map is
empty and gives 0.

Two implementations live here: NumPy references (``roi_pool``, ``roi_align``,
``multilevel_roi_align``), written to be read, and ``keras.ops`` twins (``roi_align_ops``,
``multilevel_roi_align_ops``) for use inside models: batched, fixed shapes, backend-agnostic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "bilinear_sample",
    "roi_align_sample_points",
    "roi_align",
    "roi_pool_bins",
    "roi_pool",
    "fpn_level",
    "multilevel_roi_align",
    "fpn_level_ops",
    "roi_align_ops",
    "multilevel_roi_align_ops",
    "gather_chunk_bytes",
    "check_sampling_ratio",
    "roi_align_table_ops",
]

#: Added inside log2 of the level rule so that a box of exactly 224 px lands on level 4
#: even after float rounding (torchvision and detectron2 do the same).
LEVEL_EPS = 1e-6

#: Bytes of gathered neighbours the keras.ops twin holds at once in the forward pass (see
#: ``_align_from_flat``): small, so each chunk stays in the CPU cache. At 512², batch 2, the
#: box RoIAlign's forward (1,024 RoIs at 7×7) took 0.07 s in 4 MiB chunks and 0.12 s in
#: 64 MiB ones (bench/README.md).
GATHER_CHUNK_BYTES = 4 * 2**20
#: The same on an accelerator (a GPU the Keras backend sees): there an ``ops.map`` step is a
#: loop iteration with its own kernel launches, not a cache-sized bite, so the gather is done
#: in as few steps as memory allows. 1 GiB holds a whole training batch of two images in one
#: step (box head: 1,024 RoIs × 7×7 bins × 16 neighbours × 256 channels × 4 bytes = 0.8 GB;
#: mask head: 256 RoIs at 14×14, the same) and splits batch 8 into four.
ACCELERATOR_GATHER_CHUNK_BYTES = 2**30
#: Bytes of weighted neighbour gradients the backward pass scatters into the feature table
#: per step, on any device (see ``_weighted_gather``). Each step writes one dense gradient
#: the size of the whole table (≈ 45 MB for P2-P5 of two 512² images), so few large steps
#: beat many small ones: a training batch of two 512² images is one step.
SCATTER_CHUNK_BYTES = 2**30


def gather_chunk_bytes() -> int:
    """Bytes of gathered neighbours per forward ``ops.map`` step for the backend's device.

    :data:`ACCELERATOR_GATHER_CHUNK_BYTES` when a GPU is visible
    (:func:`course_lib.config.gpu_devices`), else :data:`GATHER_CHUNK_BYTES`. Chosen when the
    graph is traced; the result of the RoIAlign does not depend on it, and the backward pass
    has its own chunk (:data:`SCATTER_CHUNK_BYTES`).

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    from course_lib.config import gpu_devices

    return ACCELERATOR_GATHER_CHUNK_BYTES if gpu_devices() else GATHER_CHUNK_BYTES


# ------------------------------------------------------------------------------------------
# Argument checking shared by the NumPy references
# ------------------------------------------------------------------------------------------

def _pair(output_size, name: str = "output_size") -> tuple[int, int]:
    if np.isscalar(output_size):
        output_size = (output_size, output_size)
    try:
        h, w = (int(v) for v in output_size)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an int or a pair (h, w) of ints; got {output_size!r}") from err
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive; got {(h, w)}")
    return h, w


def _check_features(features) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 3:
        raise ValueError(
            f"features must be one image's H×W×C array; got shape {features.shape}. "
            "Add a channel axis with features[..., None] for a single-channel map, "
            "or index one image out of a batch."
        )
    if features.shape[0] < 1 or features.shape[1] < 1:
        raise ValueError(f"features must have at least one cell; got shape {features.shape}")
    return features


def _check_boxes(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim == 1 and boxes.shape[0] == 4:
        raise ValueError("boxes must be (N, 4); for one box pass boxes[None] (shape (1, 4)).")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) as (y1, x1, y2, x2) in image pixels; "
                         f"got shape {boxes.shape}")
    return boxes


def check_sampling_ratio(sampling_ratio) -> int:
    """``sampling_ratio`` as an int, or a ``ValueError`` saying why it cannot be one: the
    check every RoIAlign (function or layer) makes where the setting is given.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    if int(sampling_ratio) != sampling_ratio or sampling_ratio < 1:
        raise ValueError(
            f"sampling_ratio must be a positive int (samples per bin side); got {sampling_ratio!r}. "
            "torchvision's adaptive ratio (0 or -1) gives each box its own sample count, which "
            "a fixed-shape model cannot hold, so it is not offered here."
        )
    return int(sampling_ratio)


# ------------------------------------------------------------------------------------------
# RoIAlign, NumPy reference
# ------------------------------------------------------------------------------------------

def bilinear_sample(features, y, x) -> np.ndarray:
    """Read a feature map at continuous positions with bilinear interpolation.

    Args:
        features: ``H×W×C`` array.
        y, x: arrays of the same (or broadcastable) shape ``S``: positions on the feature grid,
            where cell ``(i, j)``'s centre is at ``(i, j)``.

    Returns:
        ``S + (C,)`` float64 values. A point with ``y < -1``, ``y > H``, ``x < -1`` or ``x > W``
        reads 0; a point in the band between the grid and that limit reads the clamped
        position (torchvision/detectron2 behaviour).

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    features = _check_features(features)
    height, width = features.shape[:2]
    y, x = np.broadcast_arrays(np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64))
    inside = (y >= -1.0) & (y <= height) & (x >= -1.0) & (x <= width)
    # Clamp to the grid: a point in [-1, 0) reads row 0, one in (H-1, H] reads row H-1.
    y = np.clip(y, 0.0, height - 1)
    x = np.clip(x, 0.0, width - 1)
    y0 = np.floor(y).astype(np.int64)
    x0 = np.floor(x).astype(np.int64)
    y1 = np.minimum(y0 + 1, height - 1)  # on the last row both neighbours are that row
    x1 = np.minimum(x0 + 1, width - 1)
    ly, lx = (y - y0)[..., None], (x - x0)[..., None]  # distance past the low neighbour
    hy, hx = 1.0 - ly, 1.0 - lx
    value = (hy * hx * features[y0, x0] + hy * lx * features[y0, x1]
             + ly * hx * features[y1, x0] + ly * lx * features[y1, x1])
    return np.where(inside[..., None], value, 0.0)


def roi_align_sample_points(boxes, output_size, spatial_scale: float, sampling_ratio: int = 2,
                            *, aligned: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Where RoIAlign samples, on the feature grid.

    Args:
        boxes: ``(N, 4)`` ``(y1, x1, y2, x2)`` in image pixels.
        output_size: ``h`` or ``(h, w)``, bins per box.
        spatial_scale: feature cells per image pixel (``1 / stride``).
        sampling_ratio: sample points per bin along each axis.
        aligned: shift by half a cell so pixel centres land on cell centres (see module doc).

    Returns:
        ``(ys, xs)``: ``ys`` is ``(N, h, sampling_ratio)`` (row of every sample, bin by bin),
        ``xs`` is ``(N, w, sampling_ratio)``. The sample grid of a box is their outer product:
        a bin's points are all pairs ``(ys[n, i, a], xs[n, j, b])``.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    boxes = _check_boxes(boxes)
    out_h, out_w = _pair(output_size)
    sr = check_sampling_ratio(sampling_ratio)
    offset = 0.5 if aligned else 0.0
    start = boxes[:, :2] * spatial_scale - offset          # (N, 2): y and x of the box start
    size = (boxes[:, 2:] - boxes[:, :2]) * spatial_scale     # (N, 2): box height and width
    if not aligned:
        size = np.maximum(size, 1.0)  # the legacy rule: never thinner than one cell
    # Sample a sits at (a + 0.5) / sr of the way through its bin.
    frac = (np.arange(sr) + 0.5) / sr                        # (sr,)

    def axis_points(k: int, n_bins: int) -> np.ndarray:
        bin_size = size[:, k] / n_bins                       # (N,)
        steps = np.arange(n_bins)[:, None] + frac[None, :]   # (n_bins, sr) in bin units
        return start[:, k, None, None] + steps[None] * bin_size[:, None, None]

    return axis_points(0, out_h), axis_points(1, out_w)


def roi_align(features, boxes, output_size, spatial_scale: float, *, sampling_ratio: int = 2,
              aligned: bool = True) -> np.ndarray:
    """RoIAlign (NumPy reference): bilinear samples averaged per bin, no rounding anywhere.

    Args:
        features: ``H×W×C`` feature map of one image.
        boxes: ``(N, 4)`` ``(y1, x1, y2, x2)`` in image pixels.
        output_size: ``h`` or ``(h, w)``.
        spatial_scale: feature cells per image pixel (``1 / stride``, e.g. 1/16).
        sampling_ratio: ``sampling_ratio²`` points per bin.
        aligned: sample at ``u * spatial_scale - 0.5`` (True, the course's convention) or at
            ``u * spatial_scale`` with boxes at least one cell wide (False, the 2017 original).

    Returns:
        ``(N, h, w, C)`` float64.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    features = _check_features(features)
    ys, xs = roi_align_sample_points(boxes, output_size, spatial_scale, sampling_ratio,
                                     aligned=aligned)
    # Every (row, column) pair of a box: broadcast to (N, h, sr, w, sr).
    grid_y = ys[:, :, :, None, None]
    grid_x = xs[:, None, None, :, :]
    values = bilinear_sample(features, grid_y, grid_x)  # (N, h, sr, w, sr, C)
    return values.mean(axis=(2, 4))


# ------------------------------------------------------------------------------------------
# RoIPool, NumPy reference
# ------------------------------------------------------------------------------------------

def _round_half_up(v: np.ndarray) -> np.ndarray:
    return np.floor(v + 0.5).astype(np.int64)


def roi_pool_bins(boxes, output_size, spatial_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The quantised cells RoIPool takes each bin's max over (before clipping to the map).

    Args:
        boxes: ``(N, 4)`` in image pixels.
        output_size: ``h`` or ``(h, w)``.
        spatial_scale: feature cells per image pixel.

    Returns:
        ``(rows, cols)``: ``rows`` is ``(N, h, 2)`` int, bin ``i`` of box ``n`` covers feature rows
        ``rows[n, i, 0] <= r < rows[n, i, 1]``; ``cols`` is ``(N, w, 2)`` likewise. Neighbouring
        bins may share a cell (floor for starts, ceil for ends) and never leave a gap.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    boxes = _check_boxes(boxes)
    out_h, out_w = _pair(output_size)
    start = _round_half_up(boxes[:, :2] * spatial_scale)                  # first rounding
    end = _round_half_up(boxes[:, 2:] * spatial_scale)
    size = np.maximum(end - start, 1)                                     # at least one cell

    def axis_bins(k: int, n_bins: int) -> np.ndarray:
        # Second rounding: bin i covers [floor(i * size / n), ceil((i + 1) * size / n)). In
        # whole numbers (floor division, and ceil as minus floor of minus), because the float
        # i * (size / n) can land a hair past a whole number: 7 * (29 / 7) = 29.000000000000004
        # would give the last bin a cell beyond the box.
        i = np.arange(n_bins)[None, :]
        cells = size[:, k, None]
        lo = start[:, k, None] + (i * cells) // n_bins
        hi = start[:, k, None] - (-(i + 1) * cells) // n_bins
        return np.stack([lo, hi], axis=-1)

    return axis_bins(0, out_h), axis_bins(1, out_w)


def roi_pool(features, boxes, output_size, spatial_scale: float) -> np.ndarray:
    """RoIPool (NumPy reference): rounded box, rounded bins, max per bin.

    Args:
        features: ``H×W×C`` feature map of one image.
        boxes: ``(N, 4)`` ``(y1, x1, y2, x2)`` in image pixels.
        output_size: ``h`` or ``(h, w)``.
        spatial_scale: feature cells per image pixel.

    Returns:
        ``(N, h, w, C)`` float64; a bin with no cell inside the map gives 0.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    features = _check_features(features)
    height, width, channels = features.shape
    rows, cols = roi_pool_bins(boxes, output_size, spatial_scale)
    rows = np.clip(rows, 0, height)
    cols = np.clip(cols, 0, width)
    n, out_h, out_w = rows.shape[0], rows.shape[1], cols.shape[1]
    out = np.zeros((n, out_h, out_w, channels))
    r_idx, c_idx = np.arange(height), np.arange(width)
    # One box at a time (linear in N); inside a box, every bin at once through masks.
    for b in range(n):
        in_row = (r_idx >= rows[b, :, :1]) & (r_idx < rows[b, :, 1:])    # (h, H) bin i has row r
        in_col = (c_idx >= cols[b, :, :1]) & (c_idx < cols[b, :, 1:])    # (w, W)
        # Max over columns first: (w, H, C), then over rows: (h, w, C).
        col_max = np.where(in_col[:, None, :, None], features[None], -np.inf).max(axis=2)
        cell_max = np.where(in_row[:, None, :, None], col_max[None], -np.inf).max(axis=2)
        out[b] = np.where(np.isfinite(cell_max), cell_max, 0.0)           # empty bin -> 0
    return out


# ------------------------------------------------------------------------------------------
# Feature-pyramid level assignment and multi-level RoIAlign, NumPy
# ------------------------------------------------------------------------------------------

def fpn_level(boxes, k0: int = 4, canonical: float = 224.0, min_level: int = 2,
              *, max_level: int = 5) -> np.ndarray:
    """Which pyramid level each box is pooled from (FPN paper, eq. 1).

    ``k = floor(k0 + log2(sqrt(w * h) / canonical))``, clamped to ``[min_level, max_level]``:
    a 224-pixel box goes to ``P4`` (stride 16), one half as big to ``P3``, twice as big to ``P5``.

    Args:
        boxes: ``(N, 4)`` in image pixels.
        k0: level of a canonical-size box.
        canonical: the canonical box side in pixels (ImageNet's 224).
        min_level, max_level: the pyramid's levels (P2–P5 by default).

    Returns:
        ``(N,)`` int64 levels. Empty boxes go to ``min_level``.

    Taught in notebooks/07_roi_pool_vs_roi_align (and 05_fpn).
    """
    boxes = _check_boxes(boxes)
    if min_level > max_level:
        raise ValueError(f"min_level ({min_level}) must not exceed max_level ({max_level})")
    heights = np.clip(boxes[:, 2] - boxes[:, 0], 0.0, None)
    widths = np.clip(boxes[:, 3] - boxes[:, 1], 0.0, None)
    side = np.sqrt(heights * widths)
    with np.errstate(divide="ignore"):  # log2(0) = -inf, clamped to min_level below
        k = np.floor(k0 + np.log2(side / canonical + LEVEL_EPS))
    return np.clip(k, min_level, max_level).astype(np.int64)


def _level_strides(n_levels: int, min_level: int, strides) -> list[float]:
    if strides is None:
        return [2.0 ** (min_level + i) for i in range(n_levels)]
    strides = [float(s) for s in strides]
    if len(strides) != n_levels:
        raise ValueError(f"strides has {len(strides)} entries but there are {n_levels} feature "
                         "maps; give one stride per level (e.g. (4, 8, 16, 32) for P2-P5)")
    return strides


def multilevel_roi_align(feature_list: Sequence, boxes, output_size, sampling_ratio: int = 2,
                         *, aligned: bool = True, strides=None, k0: int = 4,
                         canonical: float = 224.0, min_level: int = 2) -> np.ndarray:
    """RoIAlign over a feature pyramid: each box is pooled from the level :func:`fpn_level` picks.

    Args:
        feature_list: ``[P_min, P_min+1, ...]``, each ``H_l×W_l×C`` (same ``C``).
        boxes: ``(N, 4)`` in image pixels.
        output_size: ``h`` or ``(h, w)``.
        sampling_ratio, aligned: as in :func:`roi_align`.
        strides: stride of each level; default ``2**level`` (4, 8, 16, 32 for P2–P5).
        k0, canonical, min_level: the level rule of :func:`fpn_level`.

    Returns:
        ``(N, h, w, C)`` float64, in the order of ``boxes``.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    feature_list = [_check_features(f) for f in feature_list]
    if not feature_list:
        raise ValueError("feature_list is empty; pass the pyramid maps [P2, P3, P4, P5]")
    channels = {f.shape[2] for f in feature_list}
    if len(channels) != 1:
        raise ValueError(f"all pyramid levels must have the same channels; got {sorted(channels)}")
    boxes = _check_boxes(boxes)
    strides = _level_strides(len(feature_list), min_level, strides)
    levels = fpn_level(boxes, k0, canonical, min_level, max_level=min_level + len(feature_list) - 1)
    out_h, out_w = _pair(output_size)
    out = np.zeros((boxes.shape[0], out_h, out_w, channels.pop()))
    for i, (feat, stride) in enumerate(zip(feature_list, strides, strict=True)):
        pick = levels == min_level + i
        if pick.any():
            out[pick] = roi_align(feat, boxes[pick], (out_h, out_w), 1.0 / stride,
                                  sampling_ratio=sampling_ratio, aligned=aligned)
    return out


# ------------------------------------------------------------------------------------------
# keras.ops twins: batched, fixed shapes, any backend
# ------------------------------------------------------------------------------------------

def fpn_level_ops(boxes, k0: int = 4, canonical: float = 224.0, min_level: int = 2,
                  *, max_level: int = 5):
    """:func:`fpn_level` in ``keras.ops``: boxes ``(..., 4)`` -> int32 levels ``(...)``.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    from keras import ops

    boxes = ops.cast(boxes, "float32")
    heights = ops.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    widths = ops.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    side = ops.sqrt(heights * widths)
    k = ops.floor(k0 + ops.log2(side / canonical + LEVEL_EPS))
    return ops.cast(ops.clip(k, min_level, max_level), "int32")


def _sample_grid_ops(boxes, scale, *, out_h: int, out_w: int, sampling_ratio: int,
                     aligned: bool):
    """Sample rows ``(B, N, h*sr)`` and columns ``(B, N, w*sr)`` on each box's own grid.

    ``scale`` is ``(B, N)`` (a per-box spatial scale, so one code path serves the pyramid).
    """
    from keras import ops

    offset = 0.5 if aligned else 0.0
    scale = scale[..., None]
    y1, x1 = boxes[..., 0:1] * scale - offset, boxes[..., 1:2] * scale - offset
    box_h = (boxes[..., 2:3] - boxes[..., 0:1]) * scale
    box_w = (boxes[..., 3:4] - boxes[..., 1:2]) * scale
    if not aligned:
        box_h, box_w = ops.maximum(box_h, 1.0), ops.maximum(box_w, 1.0)
    # Sample t of an axis with n bins sits at (t + 0.5) / sr bins from the start (t < n * sr),
    # the same points as the reference's (bin + (a + 0.5) / sr).
    ty = (ops.arange(out_h * sampling_ratio, dtype="float32") + 0.5) / sampling_ratio
    tx = (ops.arange(out_w * sampling_ratio, dtype="float32") + 0.5) / sampling_ratio
    ys = y1 + ty * (box_h / out_h)
    xs = x1 + tx * (box_w / out_w)
    return ys, xs


def _in_chunks(rows_per_step: int, *tensors):
    """Pad ``(R, ...)`` tensors to whole steps and reshape them to ``(steps, rows_per_step, ...)``.

    Padded rows are zeros (index 0 with weight 0: they read and write nothing). Zero rows still
    make one step, since ``keras.ops.map`` looks at the first element.
    """
    from keras import ops

    rows = tensors[0].shape[0]
    if rows is not None:   # known when traced: never pad past the rows there are
        rows_per_step = max(1, min(rows_per_step, rows))
        pad = (-rows) % rows_per_step if rows else 1
    else:                  # known only at run time (a batch size left open)
        pad = rows_per_step - ops.shape(tensors[0])[0] % rows_per_step
    return [ops.reshape(ops.pad(t, [(0, pad)] + [(0, 0)] * (len(t.shape) - 1)),
                        (-1, rows_per_step, *t.shape[1:])) for t in tensors]


def _weighted_gather(flat, index, weight, chunk_bytes: int):
    """``out[r, p] = sum_k weight[r, p, k] * flat[index[r, p, k]]``, with its gradient written out.

    Args:
        flat: ``(M, C)`` float32 table.
        index: ``(R, P, K)`` int32 rows of ``flat`` (R boxes, P bins, K neighbours per bin).
        weight: ``(R, P, K)`` float32.
        chunk_bytes: gathered bytes per forward ``ops.map`` step.

    Returns ``(R, P, C)``.

    The forward gathers a few boxes at a time (the ``(R, P, K, C)`` neighbours would be K times
    the output, and writing them out and reading them back is most of the time). Left to
    autodiff, that loop's backward would keep every step's gathered neighbours and add a dense
    table-sized gradient per step; written out, the gradient into ``flat`` is one scatter-add
    (``segment_sum``) of ``weight × upstream`` onto the rows it was read from, and the
    gradient into ``weight`` (it flows to the boxes; the course's models stop it there) is the
    neighbours gathered again, dotted with ``upstream``.
    """
    from keras import ops

    bins, k = index.shape[1], index.shape[2]
    rows = ops.shape(index)[0]
    channels = flat.shape[-1]
    box_bytes = bins * k * int(channels) * 4          # one box's neighbours, float32
    per_step = max(1, chunk_bytes // box_bytes)

    @ops.custom_gradient
    def gather(flat, weight):
        def gather_dot(args):        # neighbours of a chunk of boxes, weighted and summed
            idx, wts = args
            return ops.matmul(wts[..., None, :], ops.take(flat, idx, axis=0))[..., 0, :]

        idx_c, w_c = _in_chunks(per_step, index, weight)
        out = ops.reshape(ops.map(gather_dot, (idx_c, w_c)), (-1, bins, channels))[:rows]

        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream          # (R, P, C)
            idx_s, w_s, up_s = _in_chunks(max(1, SCATTER_CHUNK_BYTES // box_bytes),
                                          index, weight, upstream)

            def scatter(i, table):
                part = w_s[i][..., None] * up_s[i][:, :, None, :]           # (rows, P, K, C)
                return table + ops.segment_sum(ops.reshape(part, (-1, channels)),
                                               ops.reshape(idx_s[i], (-1,)),
                                               num_segments=ops.shape(flat)[0])

            d_flat = ops.fori_loop(0, ops.shape(idx_s)[0], scatter, ops.zeros_like(flat))
            up_c = _in_chunks(per_step, upstream)[0]
            d_weight = ops.map(lambda a: ops.einsum("rpkc,rpc->rpk", ops.take(flat, a[0], axis=0),
                                                    a[1]), (idx_c, up_c))
            return d_flat, ops.reshape(d_weight, (-1, bins, k))[:rows]

        return out, grad

    return gather(flat, weight)


def _align_from_flat(flat, base, height, width, *, ys, xs, out_h: int, out_w: int, sr: int,
                     chunk_bytes: int = GATHER_CHUNK_BYTES):
    """Bilinear samples averaged per bin, gathered from a flattened feature table.

    Args:
        flat: ``(M, C)`` every cell of every map (and image) as one table.
        base: ``(B, N)`` int32 row of ``flat`` where each box's map starts.
        height, width: ``(B, N)`` float32 size of each box's map.
        ys, xs: ``(B, N, h*sr)`` and ``(B, N, w*sr)`` sample positions.
        chunk_bytes: gathered bytes per forward ``ops.map`` step (:func:`gather_chunk_bytes`).

    Returns ``(B, N, h, w, C)``.
    """
    from keras import ops

    h = height[..., None]
    w = width[..., None]
    valid_y = ops.cast((ys >= -1.0) & (ys <= h), "float32")
    valid_x = ops.cast((xs >= -1.0) & (xs <= w), "float32")
    ys = ops.clip(ys, 0.0, h - 1.0)
    xs = ops.clip(xs, 0.0, w - 1.0)
    y0 = ops.floor(ys)
    x0 = ops.floor(xs)
    y1 = ops.minimum(y0 + 1.0, h - 1.0)
    x1 = ops.minimum(x0 + 1.0, w - 1.0)
    ly, lx = ys - y0, xs - x0
    # Per-axis weights of the low and high neighbour, zeroed for points beyond the -1/H band.
    wy = ops.stack([(1.0 - ly) * valid_y, ly * valid_y], axis=-1)         # (B, N, Sy, 2)
    wx = ops.stack([(1.0 - lx) * valid_x, lx * valid_x], axis=-1)         # (B, N, Sx, 2)
    row = ops.cast(ops.stack([y0, y1], axis=-1), "int32")                 # (B, N, Sy, 2)
    col = ops.cast(ops.stack([x0, x1], axis=-1), "int32")                 # (B, N, Sx, 2)
    w_int = ops.cast(width, "int32")[..., None, None, None, None]
    # Index of neighbour (p, q) of sample (s, t): (B, N, Sy, Sx, 2, 2).
    index = (base[..., None, None, None, None]
             + row[:, :, :, None, :, None] * w_int + col[:, :, None, :, None, :])
    weight = wy[:, :, :, None, :, None] * wx[:, :, None, :, None, :]
    b, n = ops.shape(ys)[0], ops.shape(ys)[1]
    # Group the samples and neighbours of each bin: (B, N, h, sr, w, sr, 2, 2) ->
    # (B, N, h, w, sr*sr*4), so one weighted sum gives the bin's average.
    def per_bin(t):
        t = ops.reshape(t, (b, n, out_h, sr, out_w, sr, 2, 2))
        t = ops.transpose(t, (0, 1, 2, 4, 3, 5, 6, 7))
        return ops.reshape(t, (b, n, out_h, out_w, sr * sr * 4))

    index, weight = per_bin(index), per_bin(weight) / float(sr * sr)
    channels = flat.shape[-1]
    k = sr * sr * 4
    pooled = _weighted_gather(flat, ops.reshape(index, (-1, out_h * out_w, k)),
                              ops.reshape(weight, (-1, out_h * out_w, k)), chunk_bytes)
    return ops.reshape(pooled, (b, n, out_h, out_w, channels))


def roi_align_table_ops(flat, boxes, *, base, height, width, scale, output_size,
                        sampling_ratio: int = 2, aligned: bool = True,
                        chunk_bytes: int | None = None):
    """RoIAlign of boxes that each lie on their own map inside one flattened table: the core
    that :func:`roi_align_ops`, :func:`multilevel_roi_align_ops` and the mask targets
    (:func:`course_lib.layers.roi_targets.mask_targets_ops`, one map per ground-truth mask)
    share.

    Args:
        flat: ``(M, C)``: every cell of every map, one after another.
        boxes: ``(B, N, 4)`` in image pixels; ``boxes * scale`` are on the box's map.
        base: ``(B, N)`` int32, the row of ``flat`` where each box's map starts.
        height, width: ``(B, N)`` float32, each box's map size in cells.
        scale: ``(B, N)`` float32, each box's map cells per image pixel (1 / stride).
        output_size, sampling_ratio, aligned: as in :func:`roi_align`.
        chunk_bytes: gathered bytes per step (default :func:`gather_chunk_bytes`).

    Returns:
        ``(B, N, h, w, C)`` float32.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    out_h, out_w, sr = _check_output_size_ops(output_size, sampling_ratio)
    ys, xs = _sample_grid_ops(boxes, scale, out_h=out_h, out_w=out_w, sampling_ratio=sr,
                              aligned=aligned)
    return _align_from_flat(flat, base, height, width, ys=ys, xs=xs, out_h=out_h, out_w=out_w,
                            sr=sr, chunk_bytes=chunk_bytes or gather_chunk_bytes())


def _check_output_size_ops(output_size, sampling_ratio):
    out_h, out_w = _pair(output_size)
    return out_h, out_w, check_sampling_ratio(sampling_ratio)


def roi_align_ops(features, boxes, output_size, spatial_scale: float, *, sampling_ratio: int = 2,
                  aligned: bool = True):
    """RoIAlign in ``keras.ops`` (the twin of :func:`roi_align`), batched with fixed shapes.

    Args:
        features: ``(B, H, W, C)`` with static ``H`` and ``W``.
        boxes: ``(B, N, 4)`` in image pixels (padding rows are fine: they are pooled too).
        output_size, spatial_scale, sampling_ratio, aligned: as in :func:`roi_align`.

    Returns:
        ``(B, N, h, w, C)`` float32.

    The four neighbours of every sample point are read with a vectorised gather from the
    map flattened to a ``(B*H*W, C)`` table (a few boxes at a time on a CPU, see
    :func:`gather_chunk_bytes`).

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    from keras import ops

    out_h, out_w, sr = _check_output_size_ops(output_size, sampling_ratio)
    features = ops.convert_to_tensor(features, dtype="float32")
    boxes = ops.convert_to_tensor(boxes, dtype="float32")
    if len(features.shape) != 4 or len(boxes.shape) != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"roi_align_ops wants features (B, H, W, C) and boxes (B, N, 4); got "
                         f"{tuple(features.shape)} and {tuple(boxes.shape)}")
    height, width, channels = features.shape[1], features.shape[2], features.shape[3]
    b, n = ops.shape(boxes)[0], ops.shape(boxes)[1]
    flat = ops.reshape(features, (-1, channels))
    base = ops.arange(b, dtype="int32")[:, None] * (height * width) + ops.zeros((b, n), "int32")
    ones = ops.ones((b, n), "float32")
    return roi_align_table_ops(flat, boxes, base=base, height=ones * height,
                               width=ones * width, scale=ones * spatial_scale,
                               output_size=(out_h, out_w), sampling_ratio=sr, aligned=aligned)


def multilevel_roi_align_ops(feature_list: Sequence, boxes, output_size, sampling_ratio: int = 2,
                             *, aligned: bool = True, strides=None, k0: int = 4,
                             canonical: float = 224.0, min_level: int = 2):
    """Multi-level RoIAlign in ``keras.ops`` (twin of :func:`multilevel_roi_align`).

    Fixed shapes without sorting boxes by level: all levels are flattened into one table
    ``(B * sum(H_l W_l), C)``, and each box reads its own level's block of it (its level picks
    the block's start, its height, width and stride). So every box is sampled once, on its
    level only.

    Args:
        feature_list: ``[(B, H_l, W_l, C), ...]`` from ``P_min_level`` up, static sizes.
        boxes: ``(B, N, 4)`` in image pixels.
        Others as in :func:`multilevel_roi_align`.

    Returns:
        ``(B, N, h, w, C)`` float32.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    from keras import ops

    out_h, out_w, sr = _check_output_size_ops(output_size, sampling_ratio)
    feature_list = [ops.convert_to_tensor(f, dtype="float32") for f in feature_list]
    if not feature_list:
        raise ValueError("feature_list is empty; pass the pyramid maps [P2, P3, P4, P5]")
    strides = _level_strides(len(feature_list), min_level, strides)
    boxes = ops.convert_to_tensor(boxes, dtype="float32")
    sizes = [(int(f.shape[1]), int(f.shape[2])) for f in feature_list]
    channels = feature_list[0].shape[3]
    cells = [h * w for h, w in sizes]
    per_image = sum(cells)
    starts = np.concatenate([[0], np.cumsum(cells)[:-1]])
    # (B, sum HW, C): image b's levels one after another; then one (B * sum HW, C) table.
    table = ops.concatenate(
        [ops.reshape(f, (-1, h * w, channels)) for f, (h, w) in zip(feature_list, sizes, strict=True)],
        axis=1)
    flat = ops.reshape(table, (-1, channels))
    levels = fpn_level_ops(boxes, k0, canonical, min_level,
                           max_level=min_level + len(feature_list) - 1)
    idx = levels - min_level                                              # (B, N)
    lookup = lambda values, dtype: ops.take(ops.convert_to_tensor(np.asarray(values), dtype), idx)  # noqa: E731
    b = ops.shape(boxes)[0]
    base = ops.arange(b, dtype="int32")[:, None] * per_image + lookup(starts, "int32")
    height = lookup([h for h, _ in sizes], "float32")
    width = lookup([w for _, w in sizes], "float32")
    scale = lookup([1.0 / s for s in strides], "float32")
    return roi_align_table_ops(flat, boxes, base=base, height=height, width=width, scale=scale,
                               output_size=(out_h, out_w), sampling_ratio=sr, aligned=aligned,
                               chunk_bytes=gather_chunk_bytes())

"""The matcher: label each candidate box (anchor or RoI) positive, negative or ignored.

Taught in notebooks/06_anchors_and_rpn (anchors) and 08_heads_and_losses (RoIs).

One rule serves both the RPN (thresholds 0.7 / 0.3, best anchor kept) and the box head
(0.5 / 0.5, no low-quality matches):

1. every candidate is matched to the ground-truth box it overlaps most (IoU);
2. max IoU ``>= positive_iou`` -> label 1; max IoU ``<= negative_iou`` -> 0; between -> -1
   (ignored: neither positive nor negative). With ``positive_iou == negative_iou`` there is no
   band: ``>=`` is positive, ``<`` is negative (the RoI rule);
3. ``allow_low_quality``: each valid gt box also makes its single best candidate positive (the
   lowest-indexed one within :data:`BEST_IOU_TOLERANCE` of its best IoU), so every object has
   at least one positive anchor even when none reaches 0.7. torchvision keeps *every* tie
   instead; with anchors much larger than a box that makes every anchor containing it positive;
4. *ignore regions*: ground truth the pipeline could not keep (crowds, instances over the cap,
   VOC's void) arrives as ``ignore_boxes``. A candidate that is not positive and whose IoA
   (intersection over the *candidate's* area) with any ignore box is ``>= ignore_ioa`` (0.5)
   becomes -1: it lies mostly on an unlabelled object, so calling it background would teach
   the model to miss that object. (CONTRACTS.md fixes this rule.)

Padding gt rows (``gt_valid`` false) never match. Labels are int32 in ``{1, 0, -1}``; a
candidate without any valid gt overlap is matched to index 0 (only positives use the match).

Memory: the IoU table is ``(B, A, G)``: at 1024×1024 with 3 anchors per cell on P2–P6
(A = 261,888) and G = 400 nuclei that is 420 MB in float32, and computing it needs several such
temporaries. :func:`match_ops` therefore walks over the gt boxes in chunks of
``max(1, MATCH_CHUNK_ELEMENTS // A)`` (a ``fori_loop``), keeping per candidate only the running
best IoU and its index, and per gt box its best IoU and first best candidate: at most
``A * chunk`` floats (16 MB) live at once.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from course_lib.ops import boxes as box_ops

#: Candidates within this IoU of a gt box's best count as tied for best (float32 and float64
#: rounding break exact ties differently; the first tied candidate wins in both).
BEST_IOU_TOLERANCE = 1e-5

#: Elements of one (A, gt chunk) IoU block in :func:`match_ops` (4M floats = 16 MB).
MATCH_CHUNK_ELEMENTS = 4 * 2**20


# ----------------------------------------------------------------------------- NumPy reference

def ioa_np(boxes, regions) -> np.ndarray:
    """Intersection over the area of each box: ``(N, 4)``, ``(M, 4)`` -> ``(N, M)`` in [0, 1].

    A box of zero area gives 0.

    Taught in notebooks/08_heads_and_losses.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    regions = np.asarray(regions, np.float64).reshape(-1, 4)
    ih = np.minimum(boxes[:, None, 2], regions[None, :, 2]) - np.maximum(boxes[:, None, 0],
                                                                         regions[None, :, 0])
    iw = np.minimum(boxes[:, None, 3], regions[None, :, 3]) - np.maximum(boxes[:, None, 1],
                                                                         regions[None, :, 1])
    inter = np.maximum(ih, 0) * np.maximum(iw, 0)
    area = box_ops.area(boxes)[:, None]
    return np.where(area > 0, inter / np.where(area > 0, area, 1.0), 0.0)


def match_np(boxes, gt_boxes, gt_valid=None, positive_iou: float = 0.7,
             *, negative_iou: float = 0.3, allow_low_quality: bool = True, ignore_boxes=None,
             ignore_valid=None, ignore_ioa: float = 0.5):
    """Label candidates of one image (NumPy reference of :func:`match_ops`).

    Args:
        boxes: ``(A, 4)`` candidates (anchors or RoIs), pixel edges.
        gt_boxes: ``(G, 4)``, possibly padded; gt_valid: ``(G,)`` bool (default all valid).
        positive_iou, negative_iou: the thresholds (rule 2 of the module docstring).
        allow_low_quality: rule 3 (best candidate of each gt box is positive).
        ignore_boxes: ``(I, 4)`` ignore regions or ``None``; ignore_valid: ``(I,)`` bool.
        ignore_ioa: rule 4 threshold.

    Returns:
        ``(labels (A,) int32 in {1, 0, -1}, matched (A,) int64 gt index, max_iou (A,))``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    valid = np.ones(len(gt_boxes), bool) if gt_valid is None else np.asarray(gt_valid, bool)
    if valid.shape != (len(gt_boxes),):
        raise ValueError(f"gt_valid has shape {valid.shape}; expected ({len(gt_boxes)},), one "
                         "flag per gt box.")
    if negative_iou > positive_iou:
        raise ValueError(f"match_np: negative_iou {negative_iou} > positive_iou {positive_iou}.")
    overlaps = np.where(valid[None, :], box_ops.iou(boxes, gt_boxes), -1.0)
    if overlaps.shape[1] == 0:
        overlaps = np.full((len(boxes), 1), -1.0)
        valid = np.zeros(1, bool)
    matched = np.argmax(overlaps, axis=1)
    max_iou = overlaps.max(axis=1)
    labels = np.where(max_iou >= positive_iou, 1, np.where(max_iou <= negative_iou, 0, -1))
    if positive_iou == negative_iou:  # no band: below the threshold is negative
        labels = np.where(max_iou >= positive_iou, 1, 0)
    labels = labels.astype(np.int32)
    if allow_low_quality:
        best = overlaps.max(axis=0)                                              # (G,)
        first = (overlaps >= best[None, :] - BEST_IOU_TOLERANCE).argmax(axis=0)  # (G,)
        labels[first[valid & (best > 0)]] = 1
    if ignore_boxes is not None:
        ignore_boxes = np.asarray(ignore_boxes, np.float64).reshape(-1, 4)
        iv = (np.ones(len(ignore_boxes), bool) if ignore_valid is None
              else np.asarray(ignore_valid, bool))
        if len(ignore_boxes) and iv.any():
            covered = ioa_np(boxes, ignore_boxes[iv]).max(axis=1) >= ignore_ioa
            labels[covered & (labels != 1)] = -1
    return labels, matched, max_iou


# ------------------------------------------------------------------------------- keras.ops twin

def ioa_ops(boxes, regions):
    """``keras.ops`` twin of :func:`ioa_np`: ``(..., N, 4)``, ``(..., M, 4)`` -> ``(..., N, M)``.

    Taught in notebooks/08_heads_and_losses.
    """
    boxes = ops.convert_to_tensor(boxes, "float32")
    regions = ops.convert_to_tensor(regions, "float32")
    ih = (ops.minimum(boxes[..., :, None, 2], regions[..., None, :, 2])
          - ops.maximum(boxes[..., :, None, 0], regions[..., None, :, 0]))
    iw = (ops.minimum(boxes[..., :, None, 3], regions[..., None, :, 3])
          - ops.maximum(boxes[..., :, None, 1], regions[..., None, :, 1]))
    inter = ops.maximum(ih, 0.0) * ops.maximum(iw, 0.0)
    area = box_ops.area_ops(boxes)[..., :, None]
    return ops.where(area > 0, inter / ops.where(area > 0, area, 1.0), 0.0)


def _best_over_gt(boxes, gt_boxes, gt_valid):
    """Per candidate: best IoU and its gt index; per gt: best IoU and first best candidate."""
    overlaps = box_ops.iou_ops(boxes, gt_boxes)                                 # (B, A, g)
    overlaps = ops.where(gt_valid[:, None, :], overlaps, -1.0)
    max_iou = ops.max(overlaps, axis=2)
    matched = ops.cast(ops.argmax(overlaps, axis=2), "int32")
    best = ops.max(overlaps, axis=1)                                            # (B, g)
    near = ops.cast(overlaps >= best[:, None, :] - BEST_IOU_TOLERANCE, "int32")
    first = ops.cast(ops.argmax(near, axis=1), "int32")                        # (B, g)
    return max_iou, matched, best, first


def _split_rows(rows, valid, chunk: int):
    """``(B, G, 4)`` boxes and ``(B, G)`` validity padded (invalid rows) to whole chunks and
    split: ``(B, n, chunk, 4)``, ``(B, n, chunk)`` and ``n = ceil(G / chunk)``."""
    g = int(rows.shape[1])
    n_chunks = -(-g // chunk)
    pad = n_chunks * chunk - g
    rows = ops.pad(rows, ((0, 0), (0, pad), (0, 0)))
    valid = ops.pad(valid, ((0, 0), (0, pad)), constant_values=False)
    batch = ops.shape(rows)[0]
    return (ops.reshape(rows, (batch, n_chunks, chunk, 4)),
            ops.reshape(valid, (batch, n_chunks, chunk)), n_chunks)


def _chunked_best_over_gt(boxes, gt_boxes, gt_valid, chunk: int):
    """:func:`_best_over_gt` over gt chunks of ``chunk`` rows (a ``fori_loop``)."""
    g = int(gt_boxes.shape[1])
    gt_chunks, valid_chunks, n_chunks = _split_rows(gt_boxes, gt_valid, chunk)
    batch = ops.shape(gt_boxes)[0]
    a = boxes.shape[-2]
    chunk_ids = ops.arange(n_chunks, dtype="int32")[None, :, None]

    def step(i, state):
        max_iou, matched, best, first = state
        c_max, c_matched, c_best, c_first = _best_over_gt(
            boxes, ops.take(gt_chunks, i, axis=1), ops.take(valid_chunks, i, axis=1))
        better = c_max > max_iou          # strict: an earlier gt keeps a tie, like argmax
        max_iou = ops.where(better, c_max, max_iou)
        matched = ops.where(better, c_matched + i * chunk, matched)
        here = chunk_ids == i
        best = ops.where(here, c_best[:, None, :], best)
        first = ops.where(here, c_first[:, None, :], first)
        return max_iou, matched, best, first

    state = (ops.full((batch, a), -2.0, "float32"), ops.zeros((batch, a), "int32"),
             ops.full((batch, n_chunks, chunk), -1.0, "float32"),
             ops.zeros((batch, n_chunks, chunk), "int32"))
    max_iou, matched, best, first = ops.fori_loop(0, n_chunks, step, state)
    best = ops.reshape(best, (batch, n_chunks * chunk))[:, :g]
    first = ops.reshape(first, (batch, n_chunks * chunk))[:, :g]
    return max_iou, matched, best, first


def max_ioa_ops(boxes, regions, region_valid, chunk: int | None = None):
    """Per candidate, the largest IoA with a valid region: ``(B, A, 4)``/``(A, 4)``,
    ``(B, I, 4)``, ``(B, I)`` -> ``(B, A)`` (0 where there is none), in chunks of regions.

    Taught in notebooks/08_heads_and_losses.
    """
    boxes = ops.convert_to_tensor(boxes, "float32")
    regions = ops.convert_to_tensor(regions, "float32")
    region_valid = ops.cast(region_valid, "bool")
    n = int(regions.shape[1])
    a = int(boxes.shape[-2])
    chunk = chunk or max(1, MATCH_CHUNK_ELEMENTS // max(a, 1))
    if len(boxes.shape) == 2:
        boxes = boxes[None]
    if n <= chunk:
        ioa = ops.where(region_valid[:, None, :], ioa_ops(boxes, regions), 0.0)
        return ops.max(ioa, axis=2)
    batch = ops.shape(regions)[0]
    regions, region_valid, n_chunks = _split_rows(regions, region_valid, chunk)

    def step(i, running):
        ioa = ioa_ops(boxes, ops.take(regions, i, axis=1))
        ioa = ops.where(ops.take(region_valid, i, axis=1)[:, None, :], ioa, 0.0)
        return ops.maximum(running, ops.max(ioa, axis=2))

    return ops.fori_loop(0, n_chunks, step, ops.zeros((batch, a), "float32"))


def match_ops(boxes, gt_boxes, gt_valid, positive_iou: float = 0.7, *, negative_iou: float = 0.3,
              allow_low_quality: bool = True, ignore_boxes=None, ignore_valid=None,
              ignore_ioa: float = 0.5, chunk: int | None = None):
    """Batched, fixed-shape twin of :func:`match_np`.

    Args:
        boxes: ``(A, 4)`` candidates shared by the batch (anchors) or ``(B, A, 4)`` (RoIs).
        gt_boxes: ``(B, G, 4)``; gt_valid: ``(B, G)`` bool.
        ignore_boxes: ``(B, I, 4)`` or ``None``; ignore_valid: ``(B, I)`` bool.
        chunk: gt rows per IoU block (default ``MATCH_CHUNK_ELEMENTS // A``; one block when
            ``G`` fits).
        Others as in :func:`match_np`.

    Returns:
        ``(labels (B, A) int32, matched (B, A) int32, max_iou (B, A) float32)``.

    Taught in notebooks/06_anchors_and_rpn.
    """
    boxes = ops.convert_to_tensor(boxes, dtype="float32")
    gt_boxes = ops.convert_to_tensor(gt_boxes, dtype="float32")
    gt_valid = ops.cast(gt_valid, "bool")
    shared = len(boxes.shape) == 2
    cand = boxes[None] if shared else boxes
    a = int(cand.shape[1])
    g = int(gt_boxes.shape[1])
    chunk = chunk or max(1, MATCH_CHUNK_ELEMENTS // max(a, 1))
    if g == 0:
        batch = ops.shape(gt_boxes)[0]
        max_iou = ops.full((batch, a), -1.0, "float32")
        matched = ops.zeros((batch, a), "int32")
        best = first = None
    elif g <= chunk:
        max_iou, matched, best, first = _best_over_gt(cand, gt_boxes, gt_valid)
    else:
        max_iou, matched, best, first = _chunked_best_over_gt(cand, gt_boxes, gt_valid, chunk)
    if negative_iou > positive_iou:
        raise ValueError(f"match_ops: negative_iou {negative_iou} > positive_iou {positive_iou}.")
    if positive_iou == negative_iou:
        labels = ops.where(max_iou >= positive_iou, 1, 0)
    else:
        labels = ops.where(max_iou >= positive_iou, 1, ops.where(max_iou <= negative_iou, 0, -1))
    labels = ops.cast(labels, "int32")
    if allow_low_quality and best is not None:
        # Scatter a 1 onto each valid gt box's first best candidate (no (B, A, G) table).
        keep = ops.cast(gt_valid & (best > 0), "int32")                         # (B, G)
        batch = ops.shape(gt_boxes)[0]
        rows = ops.arange(batch, dtype="int32")[:, None] + ops.zeros_like(first)
        index = ops.reshape(ops.stack([rows, first], axis=-1), (-1, 2))
        hits = ops.scatter(index, ops.reshape(keep, (-1,)), (batch, a))
        labels = ops.where(hits > 0, 1, labels)
    if ignore_boxes is not None:
        covered = max_ioa_ops(cand, ignore_boxes, ignore_valid) >= ignore_ioa
        labels = ops.where(covered & (labels != 1), -1, labels)
    return ops.cast(labels, "int32"), matched, max_iou

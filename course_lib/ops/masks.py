"""Instance masks: run-length encodings, boxes, label images, mini-masks and pasting back.

Taught in notebooks/02_metrics (RLE, boxes, label images) and notebooks/09_mask_rcnn
(mini-masks and pasting a 28x28 mask back into the image).

Conventions (DESIGN.md):

- a stack of instance masks is ``H×W×N`` bool; a label image is ``H×W`` int32 with 0 the
  background and each nucleus its own positive label;
- a box is float ``(y1, x1, y2, x2)`` in pixel-edge coordinates: pixel ``(r, c)`` covers
  ``[r, r+1) × [c, c+1)``, so a mask's tight box is ``(rmin, cmin, rmax + 1, cmax + 1)`` and a
  pixel centre sits at ``+0.5``.

Two run-length encodings appear in the course and they are *not* the same:

- the Kaggle / Data Science Bowl 2018 submission format (:func:`rle_encode`): pixels numbered
  from 1, top to bottom then left to right (column-major), written as ``"start length ..."``;
- the COCO RLE (:func:`coco_rle_encode`), produced by pycocotools from a Fortran-ordered
  uint8 array, with ``counts`` compressed into a string.
"""

from __future__ import annotations

import warnings

import numpy as np

# ---------------------------------------------------------------------------------------
# Kaggle (DSB 2018) run-length encoding
# ---------------------------------------------------------------------------------------


def rle_encode(mask: np.ndarray) -> str:
    """Encode one mask in the Kaggle DSB 2018 submission format.

    Pixels are numbered from 1, top to bottom then left to right (column-major), and each run
    of foreground pixels is written as ``"start length"``. An empty mask encodes as ``""``.

    Example: the 3×3 mask ::

        0 1 0
        0 1 1
        0 0 1

    read column by column is ``0 0 0 | 1 1 0 | 0 1 1``, so its encoding is ``"4 2 8 2"``.

    Args:
        mask: ``H×W`` array; non-zero pixels are foreground.

    Returns:
        The encoding as a string of space-separated integers.

    Raises:
        ValueError: ``mask`` is not two-dimensional.

    Taught in notebooks/02_metrics.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(
            f"rle_encode: mask must be 2-D (H×W), got shape {mask.shape}; "
            "encode the masks of an H×W×N stack one at a time (masks[..., i])."
        )
    # Column-major order is the transpose's row-major order.
    pixels = mask.T.ravel() != 0
    # Pad with a background pixel at each end so every run has a rising and a falling edge.
    padded = np.concatenate([[False], pixels, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])  # 0-based positions where runs flip
    starts, ends = edges[0::2], edges[1::2]
    runs = np.empty(2 * len(starts), dtype=np.int64)
    runs[0::2] = starts + 1  # 1-indexed
    runs[1::2] = ends - starts
    return " ".join(map(str, runs.tolist()))


def rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode a Kaggle DSB 2018 run-length encoding back into a mask.

    Args:
        rle: ``"start length ..."`` with 1-indexed, column-major starts; ``""`` (or a
            whitespace-only string, or NaN as pandas reads an empty cell) is an empty mask.
        shape: ``(H, W)`` of the image.

    Returns:
        ``H×W`` bool mask.

    Raises:
        ValueError: an odd number of values, a non-positive start or length, or a run
            running off the end of the image.

    Taught in notebooks/02_metrics.
    """
    if len(shape) != 2:
        raise ValueError(f"rle_decode: shape must be (H, W), got {shape}")
    height, width = int(shape[0]), int(shape[1])
    flat = np.zeros(height * width, dtype=bool)
    if rle is None or (isinstance(rle, float) and np.isnan(rle)):
        return np.zeros((height, width), dtype=bool)
    try:
        values = np.array(str(rle).split(), dtype=np.int64)
    except ValueError as err:
        raise ValueError(f"rle_decode: {rle!r:.60} is not a list of integers") from err
    if len(values) % 2:
        raise ValueError(
            f"rle_decode: an encoding is pairs of 'start length', got {len(values)} numbers"
        )
    starts, lengths = values[0::2] - 1, values[1::2]
    if len(values) and (starts.min() < 0 or lengths.min() <= 0):
        raise ValueError("rle_decode: starts are 1-indexed and lengths positive")
    if len(values) and (starts + lengths).max() > flat.size:
        raise ValueError(
            f"rle_decode: a run ends at pixel {(starts + lengths).max()} but an image of "
            f"shape {shape} has only {flat.size} pixels; is the shape (H, W) right?"
        )
    # Mark run boundaries with +1/-1 and integrate: O(pixels), no Python loop over runs.
    steps = np.zeros(flat.size + 1, dtype=np.int32)
    np.add.at(steps, starts, 1)
    np.add.at(steps, starts + lengths, -1)
    flat = np.cumsum(steps[:-1]) > 0
    return np.ascontiguousarray(flat.reshape(width, height).T)


# ---------------------------------------------------------------------------------------
# COCO run-length encoding (pycocotools)
# ---------------------------------------------------------------------------------------


def _as_stack(masks: np.ndarray, name: str) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[..., None]
    if masks.ndim != 3:
        raise ValueError(f"{name}: masks must be H×W×N (or H×W), got shape {masks.shape}")
    return masks


def coco_rle_encode(masks: np.ndarray) -> list[dict]:
    """COCO RLEs of a mask stack, JSON-ready.

    pycocotools needs a Fortran-ordered uint8 array (it reads memory column by column), and
    returns ``counts`` as bytes, which ``json`` cannot write; both are taken care of here.

    Args:
        masks: ``H×W×N`` masks (any dtype; non-zero is foreground). An ``H×W`` mask is
            treated as a stack of one.

    Returns:
        ``N`` dicts ``{"size": [H, W], "counts": str}``.

    Taught in notebooks/02_metrics.
    """
    from pycocotools import mask as mask_utils

    masks = _as_stack(masks, "coco_rle_encode")
    rles = mask_utils.encode(np.asfortranarray(masks != 0, dtype=np.uint8))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
        rle["size"] = [int(s) for s in rle["size"]]
    return rles


def coco_rle_encode_labels(labels: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """COCO RLEs of every object of a label image, without building an ``H×W×N`` stack.

    A large real image (1040×1388 with 375 nuclei) would need half a gigabyte as a mask stack;
    here the pixels are sorted by label once, in column-major order, and each object's runs
    read off its sorted pixel positions.

    Args:
        labels: ``H×W`` integers, 0 background.

    Returns:
        ``(ids, rles)``: the positive labels in increasing order and one RLE dict
        ``{"size": [H, W], "counts": str}`` per label, the same as :func:`coco_rle_encode` of
        :func:`labels_to_masks` gives.

    Taught in notebooks/02_metrics.
    """
    from pycocotools import mask as mask_utils

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"coco_rle_encode_labels: labels must be H×W, got {labels.shape}")
    height, width = labels.shape
    flat = labels.ravel(order="F")  # COCO counts run down the columns
    positions = np.flatnonzero(flat)
    if positions.size == 0:
        return np.zeros(0, dtype=labels.dtype), []
    order = np.argsort(flat[positions], kind="stable")  # by label; positions stay ascending
    positions, sorted_labels = positions[order], flat[positions][order]
    ids, first = np.unique(sorted_labels, return_index=True)
    bounds = np.append(first, len(positions))
    uncompressed = []
    for k in range(len(ids)):
        pos = positions[bounds[k]:bounds[k + 1]]
        breaks = np.flatnonzero(np.diff(pos) != 1) + 1
        starts = pos[np.concatenate([[0], breaks])]
        ends = pos[np.concatenate([breaks - 1, [len(pos) - 1]])] + 1  # exclusive
        # Alternate background and foreground run lengths, starting with background (0 when
        # the object starts at pixel 0) and closing with the background after the last run.
        gaps = starts - np.concatenate([[0], ends[:-1]])
        counts = np.empty(2 * len(starts) + 1, dtype=np.int64)
        counts[0:-1:2] = gaps
        counts[1::2] = ends - starts
        counts[-1] = height * width - ends[-1]
        if counts[-1] == 0:  # pycocotools writes no empty closing run
            counts = counts[:-1]
        uncompressed.append({"size": [height, width], "counts": counts.tolist()})
    rles = mask_utils.frPyObjects(uncompressed, height, width)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
        rle["size"] = [int(v) for v in rle["size"]]
    return ids, rles


def coco_rle_decode(rles: list[dict] | dict, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Masks from COCO RLEs (``counts`` as str or bytes).

    Args:
        rles: a list of RLE dicts (gives ``H×W×N``) or one dict (gives ``H×W``).
        shape: ``(H, W)``, needed only to shape an empty list as ``H×W×0``.

    Returns:
        bool masks.

    Taught in notebooks/02_metrics.
    """
    from pycocotools import mask as mask_utils

    def _bytes(rle: dict) -> dict:
        counts = rle["counts"]
        if isinstance(counts, list):  # uncompressed RLE, as some json files hold
            return mask_utils.frPyObjects(rle, *rle["size"])
        return {"size": list(rle["size"]),
                "counts": counts.encode("ascii") if isinstance(counts, str) else counts}

    if not isinstance(rles, dict) and len(rles) == 0:
        if shape is None:
            raise ValueError("coco_rle_decode: pass shape=(H, W) to decode an empty list")
        return np.zeros((*shape, 0), dtype=bool)
    with warnings.catch_warnings():
        # pycocotools' RLEs object predates NumPy 2's copy keyword; harmless, but noisy.
        warnings.simplefilter("ignore", DeprecationWarning)
        if isinstance(rles, dict):
            return mask_utils.decode(_bytes(rles)).astype(bool)
        decoded = mask_utils.decode([_bytes(r) for r in rles])
    return decoded.astype(bool).reshape(*rles[0]["size"], len(rles))


# ---------------------------------------------------------------------------------------
# Boxes and label images
# ---------------------------------------------------------------------------------------


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight boxes of a mask stack.

    Args:
        masks: ``H×W×N`` masks (non-zero is foreground).

    Returns:
        ``(N, 4)`` float32 ``(y1, x1, y2, x2) = (rmin, cmin, rmax + 1, cmax + 1)`` in
        pixel edges; an empty mask gives a row of zeros.

    Taught in notebooks/02_metrics.
    """
    masks = _as_stack(masks, "masks_to_boxes") != 0
    n = masks.shape[-1]
    boxes = np.zeros((n, 4), dtype=np.float32)
    rows = masks.any(axis=1)  # (H, N): which rows each mask touches
    cols = masks.any(axis=0)  # (W, N)
    present = rows.any(axis=0)
    if not present.any():
        return boxes
    h, w = rows.shape[0], cols.shape[0]
    # First True along an axis is argmax; the last is found on the reversed axis.
    boxes[:, 0] = rows.argmax(axis=0)
    boxes[:, 1] = cols.argmax(axis=0)
    boxes[:, 2] = h - rows[::-1].argmax(axis=0)
    boxes[:, 3] = w - cols[::-1].argmax(axis=0)
    boxes[~present] = 0
    return boxes


def labels_to_boxes(labels: np.ndarray, ids) -> np.ndarray:
    """Tight boxes of chosen labels of a label image, without building a mask stack.

    Args:
        labels: ``H×W`` integers, 0 is background.
        ids: ``(K,)`` labels whose boxes are wanted (any order; need not be present).

    Returns:
        ``(K, 4)`` float32 ``(y1, x1, y2, x2)`` pixel edges, the same boxes
        :func:`masks_to_boxes` gives for ``labels == id``; a label absent from the image (or
        ``id <= 0``) gives a row of zeros. One pass of ``scipy.ndimage.find_objects``.

    Taught in notebooks/02_metrics.
    """
    from scipy import ndimage

    ids = np.asarray(ids, np.int64).reshape(-1)
    boxes = np.zeros((len(ids), 4), np.float32)
    if len(ids) == 0 or ids.max() < 1:
        return boxes
    slices = ndimage.find_objects(np.asarray(labels), max_label=int(ids.max()))
    for k, i in enumerate(ids):
        sl = slices[i - 1] if i >= 1 else None
        if sl is not None:
            boxes[k] = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
    return boxes


def labels_to_masks(labels: np.ndarray, ids=None) -> np.ndarray:
    """Split a label image into one mask per label.

    Args:
        labels: ``H×W`` integers, 0 is background; labels need not be consecutive.
        ids: the labels to take, in this order (a label absent from the image gives an empty
            mask); default every distinct positive label, in increasing order.

    Returns:
        ``H×W×N`` bool, mask ``k`` is ``labels == ids[k]``.

    Taught in notebooks/02_metrics.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels_to_masks: labels must be H×W, got shape {labels.shape}")
    if ids is None:
        ids = np.unique(labels)
        ids = ids[ids > 0]
    ids = np.asarray(ids).reshape(-1)
    return labels[..., None] == ids[None, None, :]


def disjoint_masks_to_labels(masks: np.ndarray) -> np.ndarray | None:
    """Label image (mask ``i`` -> label ``i + 1``) of masks that do not overlap, else ``None``.

    Args:
        masks: ``H×W×N`` masks (non-zero is foreground).

    Returns:
        ``H×W`` int32 equal to ``masks_to_labels(masks)`` when no pixel belongs to two masks;
        ``None`` when one does (a label image cannot hold that, the caller keeps the stack).

    Faster than :func:`masks_to_labels`: with no overlap a pixel's first mask is its only one,
    so one ``argmax`` over the instance axis finds it. The data pipeline and the augmenter use
    it to move hundreds of nuclei as one channel.

    Taught in notebooks/02_metrics.
    """
    masks = _as_stack(masks, "disjoint_masks_to_labels").astype(bool, copy=False)
    if masks.shape[-1] == 0:
        return np.zeros(masks.shape[:2], np.int32)
    cover = masks.sum(axis=-1, dtype=np.int32)
    if cover.max() > 1:
        return None
    return np.where(cover > 0, masks.argmax(axis=-1) + 1, 0).astype(np.int32)


def colour_labels(image: np.ndarray) -> np.ndarray:
    """Label image of a label file stored in colour: each distinct colour is one instance.

    Args:
        image: ``H×W×C`` integers (RGB or RGBA; an alpha channel is ignored), black
            ``(0, 0, 0)`` the background; or an ``H×W`` label image, returned as int32.

    Returns:
        ``H×W`` int32, 0 for black, 1..N for the other colours in increasing order of their
        packed value (channel 0 most significant), so channels are never mixed up or dropped.

    Taught in notebooks/02_metrics.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return image.astype(np.int32)
    if image.ndim != 3:
        raise ValueError(f"colour_labels: expected H×W or H×W×C, got shape {image.shape}")
    rgb = image[..., :3] if image.shape[-1] in (3, 4) else image[..., :1]
    flat = rgb.reshape(-1, rgb.shape[-1])
    uniq, inverse = np.unique(flat, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    is_black = ~uniq.any(axis=1)
    # label = rank among the non-black colours (np.unique sorts rows lexicographically)
    ranks = np.cumsum(~is_black).astype(np.int32)
    ranks[is_black] = 0
    return ranks[inverse].reshape(image.shape[:2])


def masks_to_labels_by_score(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Label image from overlapping detections: the higher score wins a contested pixel.

    Args:
        masks: ``H×W×N`` bool masks (Mask R-CNN's pasted detections).
        scores: ``(N,)`` their confidences.

    Returns:
        ``H×W int32`` labels: the best-scored detection gets label 1 where it is, the next
        label 2 on the pixels it does not share with a better one, and so on (what a Kaggle
        submission needs: no pixel in two nuclei).

    Taught in notebooks/11_train_nuclei (exercise 2 writes it).
    """
    masks = np.asarray(masks, bool)
    labels = np.zeros(masks.shape[:2], np.int32)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")  # best first
    for label, k in enumerate(order, start=1):
        labels[masks[..., k] & (labels == 0)] = label   # only pixels no better one claimed
    return labels


#: Detections below this confidence are left out of label images (the DSB score counts
#: every predicted instance; COCO AP, which ranks by score, takes all of them).
MIN_SCORE_FOR_LABELS = 0.5


def detections_to_labels(detections: dict, min_score: float = MIN_SCORE_FOR_LABELS
                         ) -> np.ndarray:
    """``H×W int32`` instance labels of one image's Mask R-CNN detections (``detect``'s dict):
    detections scoring below ``min_score`` are left out, a contested pixel goes to the better
    score (:func:`masks_to_labels_by_score`).

    Taught in notebooks/11_train_nuclei.
    """
    keep = np.asarray(detections["scores"]) >= min_score
    return masks_to_labels_by_score(np.asarray(detections["masks"])[..., keep],
                                    np.asarray(detections["scores"])[keep])


def masks_to_labels(masks: np.ndarray, overlap: str = "last") -> np.ndarray:
    """Merge a mask stack into one label image; mask ``i`` gets label ``i + 1``.

    Masks of real annotations sometimes overlap by a pixel or two; a label image can only hold
    one label per pixel, so a rule is needed:

    - ``"last"`` (default): a later mask overwrites an earlier one, as painting them in order;
    - ``"first"``: the earlier mask keeps the pixel;
    - ``"error"``: raise if any pixel belongs to two masks.

    Args:
        masks: ``H×W×N`` masks (non-zero is foreground).
        overlap: ``"last"``, ``"first"`` or ``"error"``.

    Returns:
        ``H×W`` int32 label image, 0 for background.

    Taught in notebooks/02_metrics.
    """
    masks = _as_stack(masks, "masks_to_labels") != 0
    if overlap not in ("last", "first", "error"):
        raise ValueError(f"masks_to_labels: overlap must be 'last', 'first' or 'error', "
                         f"got {overlap!r}")
    n = masks.shape[-1]
    if n == 0:
        return np.zeros(masks.shape[:2], dtype=np.int32)
    if overlap == "error":
        counts = masks.sum(axis=-1)
        if counts.max() > 1:
            raise ValueError(
                f"masks_to_labels: {int((counts > 1).sum())} pixels belong to several masks; "
                "pass overlap='last' or 'first' to choose which mask keeps them."
            )
    if overlap == "first":
        index = masks.argmax(axis=-1)  # first True
    else:
        index = n - 1 - masks[..., ::-1].argmax(axis=-1)  # last True
    return np.where(masks.any(axis=-1), index + 1, 0).astype(np.int32)


# ---------------------------------------------------------------------------------------
# Mini-masks: masks stored at a fixed size inside their box, and pasted back
# ---------------------------------------------------------------------------------------


def _bilinear(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of a 2-D ``image`` at the grid ``ys × xs`` (pixel-index coordinates),
    with the border values extended beyond the edges.

    The course's one bilinear reader is :func:`course_lib.ops.roi.bilinear_sample`. Its border
    rule clamps points up to one cell outside the grid (and zeroes points further out); the
    points :func:`paste_mask` reads lie within half a cell of it, so clamping is exactly
    "border values extended".
    """
    from course_lib.ops.roi import bilinear_sample

    values = bilinear_sample(np.asarray(image)[..., None], np.asarray(ys)[:, None],
                             np.asarray(xs)[None, :])
    return values[..., 0]


def minimize_masks(masks: np.ndarray, boxes: np.ndarray, size: tuple[int, int] = (28, 28),
                   sampling_ratio: int = 4) -> np.ndarray:
    """Resample each mask inside its box to a fixed ``size`` (Mask R-CNN's mask targets).

    A binary mask is piecewise constant: pixel ``(r, c)`` covers ``[r, r+1) × [c, c+1)``. The
    box is cut into ``h×w`` cells and each cell's value is the fraction of its
    ``sampling_ratio²`` evenly spaced sample points that land on mask pixels, so a cell fully
    inside the mask is exactly 1 and a cell on the outline gets its approximate coverage.
    Points outside the image count as background.

    Args:
        masks: ``H×W×N`` masks.
        boxes: ``(N, 4)`` float ``(y1, x1, y2, x2)`` in pixel edges (often
            :func:`masks_to_boxes`, or RoIs for training targets).
        size: ``(h, w)`` of a mini-mask.
        sampling_ratio: samples per cell along each axis.

    Returns:
        ``h×w×N`` float32 soft masks in ``[0, 1]`` (threshold at 0.5 for a bool mini-mask).

    Taught in notebooks/09_mask_rcnn.
    """
    masks = _as_stack(masks, "minimize_masks") != 0
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) != masks.shape[-1]:
        raise ValueError(f"minimize_masks: {masks.shape[-1]} masks but {len(boxes)} boxes")
    height, width = masks.shape[:2]
    h, w = size
    out = np.zeros((h, w, len(boxes)), dtype=np.float32)
    # Sample offsets inside one cell, as fractions of the cell: (k + 0.5) / s.
    sub = (np.arange(sampling_ratio) + 0.5) / sampling_ratio
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        ys = y1 + (np.arange(h)[:, None] + sub[None, :]).ravel() * (y2 - y1) / h
        xs = x1 + (np.arange(w)[:, None] + sub[None, :]).ravel() * (x2 - x1) / w
        rows, cols = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
        row_ok = (rows >= 0) & (rows < height)
        col_ok = (cols >= 0) & (cols < width)
        samples = masks[np.clip(rows, 0, height - 1)[:, None],
                        np.clip(cols, 0, width - 1)[None, :], i]
        samples &= row_ok[:, None] & col_ok[None, :]
        out[..., i] = samples.reshape(h, sampling_ratio, w, sampling_ratio).mean(axis=(1, 3))
    return out


def paste_mask(mini_mask: np.ndarray, box: np.ndarray, image_shape: tuple[int, ...],
               threshold: float | None = 0.5) -> np.ndarray:
    """Paste one small soft mask back into the image at its box (Mask R-CNN inference).

    Every image pixel whose *centre* lies inside the box reads the mini-mask bilinearly at the
    matching point (the box is stretched over the ``h×w`` cells; values at the mini-mask's
    border are extended, not faded to zero); pixels outside the box are background. The result
    is then thresholded (``>= threshold``), as Mask R-CNN binarises at 0.5.

    Args:
        mini_mask: ``h×w`` soft mask (e.g. the 28×28 sigmoid output of the mask head).
        box: ``(4,)`` float ``(y1, x1, y2, x2)`` in image pixel edges (may be fractional or
            reach outside the image; it is clipped).
        image_shape: ``(H, W, ...)``; only the first two are used.
        threshold: ``None`` returns the soft float32 mask instead of a bool one.

    Returns:
        ``H×W`` bool mask (or float32 when ``threshold`` is ``None``).

    Taught in notebooks/09_mask_rcnn.
    """
    mini = np.asarray(mini_mask, dtype=np.float32)
    if mini.ndim != 2:
        raise ValueError(f"paste_mask: mini_mask must be h×w, got shape {mini.shape}")
    height, width = int(image_shape[0]), int(image_shape[1])
    y1, x1, y2, x2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    full = np.zeros((height, width), dtype=np.float32)
    # Pixels r with y1 <= r + 0.5 < y2, clipped to the image.
    r0, r1 = max(int(np.ceil(y1 - 0.5)), 0), min(int(np.ceil(y2 - 0.5)), height)
    c0, c1 = max(int(np.ceil(x1 - 0.5)), 0), min(int(np.ceil(x2 - 0.5)), width)
    if r1 > r0 and c1 > c0 and y2 > y1 and x2 > x1:
        h, w = mini.shape
        # Pixel centre -> position in mini-mask cells -> mini-mask pixel index (-0.5).
        ys = (np.arange(r0, r1) + 0.5 - y1) * h / (y2 - y1) - 0.5
        xs = (np.arange(c0, c1) + 0.5 - x1) * w / (x2 - x1) - 0.5
        full[r0:r1, c0:c1] = _bilinear(mini, ys, xs)
    if threshold is None:
        return full
    return full >= threshold


def expand_masks(mini_masks: np.ndarray, boxes: np.ndarray, image_shape: tuple[int, ...],
                 threshold: float | None = 0.5) -> np.ndarray:
    """Paste a stack of mini-masks back at their boxes: :func:`paste_mask` for each.

    Args:
        mini_masks: ``h×w×N`` soft masks.
        boxes: ``(N, 4)`` boxes in image pixel edges.
        image_shape: ``(H, W, ...)``.
        threshold: as in :func:`paste_mask`.

    Returns:
        ``H×W×N`` bool masks (float32 when ``threshold`` is ``None``).

    Taught in notebooks/09_mask_rcnn.
    """
    mini_masks = np.asarray(mini_masks)
    if mini_masks.ndim != 3:
        raise ValueError(f"expand_masks: mini_masks must be h×w×N, got {mini_masks.shape}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) != mini_masks.shape[-1]:
        raise ValueError(f"expand_masks: {mini_masks.shape[-1]} masks but {len(boxes)} boxes")
    dtype = np.float32 if threshold is None else bool
    out = np.zeros((int(image_shape[0]), int(image_shape[1]), len(boxes)), dtype=dtype)
    for i, box in enumerate(boxes):
        out[..., i] = paste_mask(mini_masks[..., i], box, image_shape, threshold)
    return out


#: Matterport's name for :func:`expand_masks`.
expand_mask = expand_masks

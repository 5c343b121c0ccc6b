"""Detecting in images larger than the detector's input: native-scale tiles.

Taught in notebooks/11_train_nuclei.

A Mask R-CNN built for ``S × S`` inputs resizes every image to fit the square
(:func:`course_lib.models.maskrcnn.detect`). For nuclei that is the wrong trade on large
images: a 1024×1344 image shrunk into 256 px makes its nuclei five times smaller than the
ones the model learned on. :func:`detect_tiled` keeps the scale instead: it cuts the image
into overlapping ``S × S`` windows, detects in each at scale 1, and keeps each detection
only in the window that *owns* its box centre, the window's core once the overlap is split
half and half with each neighbour. A nucleus cut by one window's edge lies whole inside a
neighbour (when it is smaller than the overlap), and that neighbour owns its centre.
"""

from __future__ import annotations

import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of windows of side ``tile`` covering ``[0, length)`` with at least
    ``overlap`` pixels shared between neighbours; the last window ends at ``length``.

    >>> tile_starts(256, 256, 64), tile_starts(520, 256, 64), tile_starts(100, 256, 64)
    ([0], [0, 132, 264], [0])

    Taught in notebooks/11_train_nuclei.
    """
    if tile <= overlap or overlap < 0:
        raise ValueError(f"tile={tile} must exceed overlap={overlap} ≥ 0")
    if length <= tile:
        return [0]
    n = int(np.ceil((length - overlap) / (tile - overlap)))
    return [int(round(k * (length - tile) / (n - 1))) for k in range(n)]


def _owned(starts: list[int], tile: int, length: int) -> list[tuple[float, float]]:
    """``[lo, hi)`` of each window: from the middle of its overlap with the previous window
    to the middle of its overlap with the next (the image's edges at both ends)."""
    spans = []
    for k, start in enumerate(starts):
        lo = 0.0 if k == 0 else (start + starts[k - 1] + tile) / 2
        hi = float(length) if k == len(starts) - 1 else (starts[k + 1] + start + tile) / 2
        spans.append((lo, hi))
    return spans


def detect_tiled(inference_model, image: np.ndarray, overlap: int = 64,
                 batch_size: int = 2, mask_threshold: float | None = None,
                 min_score: float = 0.0) -> dict:
    """Detections of one image of any size, at its own scale, from overlapping windows.

    Args:
        inference_model: a Mask R-CNN inference model whose input side ``S`` is the window.
        image: ``H×W×3`` uint8. Sides shorter than ``S`` are zero-padded (as the training
            pipeline pads), so the model always sees scale 1.
        overlap: pixels shared by neighbouring windows; nuclei smaller than this are always
            whole in the window that keeps them.
        batch_size: windows per forward pass.
        mask_threshold, min_score: as in :func:`~course_lib.models.maskrcnn.detect`.

    Returns:
        The dict :func:`~course_lib.models.maskrcnn.detect` returns for the whole image:
        ``boxes (N, 4)`` in image pixels, ``class_ids``, ``scores`` (best first), ``masks``
        ``H×W×N`` bool.

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.models.maskrcnn import detect

    side = int(inference_model.config.image_size)
    image = np.asarray(image)
    h, w = image.shape[:2]
    ph, pw = max(h, side), max(w, side)
    padded = image if (ph, pw) == (h, w) else np.pad(
        image, ((0, ph - h), (0, pw - w)) + ((0, 0),) * (image.ndim - 2))
    rows, cols = tile_starts(ph, side, overlap), tile_starts(pw, side, overlap)
    own_r, own_c = _owned(rows, side, ph), _owned(cols, side, pw)
    windows = [(r, c, own_r[i], own_c[j]) for i, r in enumerate(rows)
               for j, c in enumerate(cols)]
    found = detect(inference_model, [padded[r:r + side, c:c + side] for r, c, _, _ in windows],
                   batch_size=batch_size, mask_threshold=mask_threshold, min_score=min_score)
    boxes, class_ids, scores, masks = [], [], [], []
    for (r, c, (r0, r1), (c0, c1)), det in zip(windows, found, strict=True):
        b = det["boxes"] + np.array([r, c, r, c], np.float32)
        cy, cx = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        keep = (cy >= r0) & (cy < r1) & (cx >= c0) & (cx < c1)
        for k in np.flatnonzero(keep):
            full = np.zeros((ph, pw), bool)
            full[r:r + side, c:c + side] = det["masks"][..., k]
            masks.append(full[:h, :w])
        boxes.append(b[keep])
        class_ids.append(det["class_ids"][keep])
        scores.append(det["scores"][keep])
    boxes = np.concatenate(boxes).reshape(-1, 4)
    boxes = np.clip(boxes, 0, [h, w, h, w]).astype(np.float32)
    scores = np.concatenate(scores).astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    stack = np.stack(masks, axis=-1) if masks else np.zeros((h, w, 0), bool)
    return {"boxes": boxes[order], "class_ids": np.concatenate(class_ids)[order].astype(np.int32),
            "scores": scores[order], "masks": stack[..., order]}

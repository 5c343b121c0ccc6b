"""Instances from a semantic (per-pixel) prediction: connected components and watershed.

Taught in notebooks/10_unet.

A U-Net predicts a class per pixel, not instances. Three ways to get instances back:

1. :func:`connected_components`: threshold the nucleus probability and label each connected
   blob. Touching nuclei merge into one instance.
2. :func:`watershed_instances`: split such blobs with a watershed on the distance transform:
   each nucleus centre is a peak of the distance to the background, the peaks become
   markers, and the flooding of ``-distance`` from them meets at the necks between nuclei.
3. :func:`instances_from_three_class`: with background / interior / border classes the
   interiors of touching nuclei are already apart; each interior is a seed, grown by a
   watershed into the nucleus-plus-border region so the border pixels are given back.

All return ``H×W int32`` label images (0 = background, instances 1..N), ready for
:func:`course_lib.metrics.dsb_average_precision`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import measure, segmentation
from skimage.feature import peak_local_max


def _binary(prob_or_mask: np.ndarray, threshold: float) -> np.ndarray:
    arr = np.asarray(prob_or_mask)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"expected an H×W probability map or mask (or H×W×1); got shape "
                         f"{arr.shape}. For a softmax output pass probs[..., class_index].")
    return arr.astype(bool) if arr.dtype == bool else arr > threshold


def _relabel(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Drop instances smaller than ``min_size`` pixels, then number the rest 1..N."""
    if min_size > 0 and labels.max() > 0:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels = np.where(small[labels], 0, labels)
    return segmentation.relabel_sequential(labels)[0].astype(np.int32)


def connected_components(prob_or_mask: np.ndarray, threshold: float = 0.5,
                         min_size: int = 0, connectivity: int = 1) -> np.ndarray:
    """Label the connected foreground blobs (``prob > threshold``); touching nuclei merge.

    Args:
        prob_or_mask: ``H×W`` foreground probability (or bool mask).
        threshold: probability above which a pixel is foreground.
        min_size: drop instances smaller than this many pixels (0 = keep all).
        connectivity: 1 (4-neighbours) or 2 (8-neighbours).

    Taught in notebooks/10_unet.
    """
    fg = _binary(prob_or_mask, threshold)
    return _relabel(measure.label(fg, connectivity=connectivity).astype(np.int32), min_size)


def watershed_instances(prob_or_mask: np.ndarray, threshold: float = 0.5,
                        min_distance: int = 4, min_size: int = 0,
                        *, smooth: float = 1.0) -> np.ndarray:
    """Split touching nuclei: watershed of ``-distance`` from peaks of the distance transform.

    Args:
        prob_or_mask: ``H×W`` foreground probability (or bool mask).
        threshold: probability above which a pixel is foreground.
        min_distance: smallest distance in pixels between two nucleus centres (peaks closer
            than this merge); about the radius of the smallest nucleus you expect.
        min_size: drop instances smaller than this many pixels.
        smooth: Gaussian σ (px) applied to the distance map so a ragged outline does not
            create spurious peaks (0 = none).

    Returns:
        ``H×W int32`` labels. Each connected blob gets at least one instance even when it has
        no peak far enough from its neighbours.

    Taught in notebooks/10_unet.
    """
    fg = _binary(prob_or_mask, threshold)
    if not fg.any():
        return np.zeros(fg.shape, np.int32)
    blobs = measure.label(fg, connectivity=1)
    distance = ndimage.distance_transform_edt(fg)
    if smooth > 0:
        distance = ndimage.gaussian_filter(distance, smooth) * fg
    peaks = peak_local_max(distance, min_distance=min_distance, labels=blobs,
                           exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = 1
    # a plateau may give several neighbouring peak pixels: one marker per connected group
    markers = measure.label(markers, connectivity=2)
    # a blob without any marker (tiny or flat) still deserves an instance: seed it whole
    seeded = np.unique(blobs[markers > 0])
    unseeded = fg & ~np.isin(blobs, seeded)
    if unseeded.any():
        extra = measure.label(unseeded, connectivity=1)
        markers[extra > 0] = extra[extra > 0] + markers.max()
    labels = segmentation.watershed(-distance, markers, mask=fg)
    return _relabel(labels.astype(np.int32), min_size)


def instances_from_three_class(probs_or_classes: np.ndarray, min_size: int = 0,
                               interior_threshold: float = 0.5,
                               foreground_threshold: float | None = None) -> np.ndarray:
    """Instances from background / interior / border predictions: seeds grown into nuclei.

    Args:
        probs_or_classes: ``H×W×3`` softmax probabilities (background, interior, border) or
            an ``H×W`` class map with values 0, 1, 2.
        min_size: drop instances smaller than this many pixels.
        interior_threshold: with probabilities, a seed pixel needs ``p_interior`` above it.
        foreground_threshold: with probabilities, a pixel belongs to a nucleus when
            ``p_background`` is below this (``None``: when background is not the most
            probable class). Below 0.5 it trims the uncertain rim of every nucleus: the CPU
            budget's U-Net draws nuclei a little too large, and 0.3 scored best on training
            images (``tools/tune_unet_postprocessing.py``).

    Returns:
        ``H×W int32`` labels. The interiors' connected components are the seeds; a watershed
        on ``1 - p_interior`` (or the distance to the seeds for a class map) grows them over
        the nucleus-or-border pixels. Foreground regions with no seed become instances too.

    Taught in notebooks/10_unet.
    """
    arr = np.asarray(probs_or_classes)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        classes = np.argmax(arr, axis=-1)
        seeds_mask = (classes == 1) & (arr[..., 1] > interior_threshold)
        elevation = 1.0 - arr[..., 1]
    elif arr.ndim == 2:
        classes = arr.astype(np.int64)
        if classes.size and (classes.min() < 0 or classes.max() > 2):
            raise ValueError("a class map must hold 0 (background), 1 (interior), 2 (border)")
        seeds_mask = classes == 1
        elevation = ndimage.distance_transform_edt(~seeds_mask)
    else:
        raise ValueError(f"expected H×W×3 probabilities or an H×W class map; got {arr.shape}")
    foreground = classes > 0
    if foreground_threshold is not None and arr.ndim == 3:
        foreground = arr[..., 0] < foreground_threshold
    seeds = measure.label(seeds_mask, connectivity=1).astype(np.int32)
    labels = segmentation.watershed(elevation, seeds, mask=foreground).astype(np.int32)
    leftover = foreground & (labels == 0)
    if leftover.any():
        extra = measure.label(leftover, connectivity=1)
        labels[extra > 0] = extra[extra > 0] + labels.max()
    return _relabel(labels, min_size)


def touching_pairs(labels: np.ndarray, max_gap: int = 1) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of instances that touch: at most ``max_gap`` px apart.

    Two instances touch when a pixel of one lies within ``max_gap`` pixels (chessboard
    distance, i.e. the 8-neighbourhood for ``max_gap=1``) of a pixel of the other: adjacent
    masks for 1, masks with a one-pixel background gap for 2.

    Args:
        labels: ``H×W`` instance labels (0 = background).
        max_gap: the largest chessboard distance (px, ≥ 1) between two touching instances.

    Returns:
        The sorted list of touching pairs of label values.

    Taught in notebooks/10_unet.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or max_gap < 1:
        raise ValueError(f"touching_pairs: labels must be H×W (got {labels.shape}) and "
                         f"max_gap ≥ 1 (got {max_gap})")
    pairs = set()
    h, w = labels.shape
    # compare every pixel with its neighbours at offsets up to max_gap (half the offsets,
    # the other half is the same pairs seen from the other side)
    for dy in range(0, max_gap + 1):
        for dx in range(-max_gap, max_gap + 1):
            if dy == 0 and dx <= 0:
                continue
            a = labels[0:h - dy, max(0, -dx):w - max(0, dx)]
            b = labels[dy:h, max(0, dx):w - max(0, -dx)]
            sel = (a > 0) & (b > 0) & (a != b)
            if sel.any():
                lo = np.minimum(a[sel], b[sel])
                hi = np.maximum(a[sel], b[sel])
                pairs.update(zip(lo.tolist(), hi.tolist(), strict=True))
    return sorted(pairs)


def merged_touching_pairs(true_labels: np.ndarray, pred_labels: np.ndarray,
                          max_gap: int = 1) -> tuple[int, int]:
    """How many touching true pairs one predicted instance swallowed: ``(merged, n_pairs)``.

    Each true instance is *owned* by the predicted instance covering more than half of its
    pixels (none if no prediction covers half). A touching pair (:func:`touching_pairs`) is
    merged when both nuclei have the same owner. Missed nuclei are not merges.

    Args:
        true_labels, pred_labels: ``H×W`` instance labels of the same image.
        max_gap: as in :func:`touching_pairs`.

    Returns:
        ``(merged pairs, touching pairs in the ground truth)``.

    Taught in notebooks/10_unet.
    """
    true_labels = np.asarray(true_labels)
    pred_labels = np.asarray(pred_labels)
    if true_labels.shape != pred_labels.shape:
        raise ValueError(f"merged_touching_pairs: shapes differ: {true_labels.shape} (truth) "
                         f"vs {pred_labels.shape} (prediction)")
    pairs = touching_pairs(true_labels, max_gap)
    if not pairs:
        return 0, 0
    n_true, n_pred = int(true_labels.max()) + 1, int(pred_labels.max()) + 1
    overlap = np.bincount(true_labels.ravel().astype(np.int64) * n_pred + pred_labels.ravel(),
                          minlength=n_true * n_pred).reshape(n_true, n_pred)
    area = overlap.sum(axis=1)
    best = overlap[:, 1:].argmax(axis=1) + 1 if n_pred > 1 else np.zeros(n_true, np.int64)
    best_overlap = overlap[np.arange(n_true), best] if n_pred > 1 else np.zeros(n_true)
    owner = np.where(2 * best_overlap > area, best, 0)
    merged = sum(1 for i, j in pairs if owner[i] != 0 and owner[i] == owner[j])
    return merged, len(pairs)

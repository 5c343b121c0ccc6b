"""U-Net training targets from an instance label image: the border weight map and 3 classes.

Taught in notebooks/10_unet.

The U-Net paper separates touching cells by weighting the loss of the thin background gaps
between them heavily:

    w(x) = w_c(x) + w0 · exp(-(d1(x) + d2(x))² / (2σ²)),   w0 = 10, σ ≈ 5 px

``w_c`` balances the class frequencies, ``d1`` and ``d2`` are the distances from pixel ``x``
to the nearest and the second-nearest cell. Where two cells nearly touch, a gap pixel has
small ``d1 + d2`` and a weight near ``w_c + w0``; far from cells, or next to a lone cell
(only one cell within reach: ``d2 = ∞``), the border term vanishes.

Conventions here (the paper leaves them open):

- distances are Euclidean between pixel centres (``scipy.ndimage.distance_transform_edt``),
  so a background pixel next to a cell has ``d = 1``;
- the border term is added on background pixels only (``background_only=True``, as the
  paper's Fig. 3d shows it); inside a cell ``d1 = 0`` and the term would only blur its edge;
- with fewer than two instances ``d2 = ∞`` and the border term is 0 everywhere;
- ``w_c`` is "balanced": a class with ``n_c`` of ``N`` pixels gets ``N / (K · n_c)``, so each
  of the K classes present contributes equally to the loss.

The alternative to weighting is to predict the border itself: :func:`three_class_target`
gives background (0) / interior (1) / border (2) classes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: The paper's constants.
W0 = 10.0
SIGMA = 5.0


def _check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{name} must be an H×W label image (0 = background); got shape "
                         f"{labels.shape}. Convert H×W×N masks with masks_to_labels first.")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise ValueError(f"{name} must hold integer instance ids; got dtype {labels.dtype}")
    return labels.astype(np.int64, copy=False)


def class_balance_weights(labels: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Per-pixel ``w_c``: ``N / (K · n_c)`` for each class ``c`` present (K classes present).

    Args:
        labels: ``H×W`` label image. With ``n_classes=None`` it is an *instance* label image
            and the classes are background (0) and foreground (> 0); otherwise it already
            holds class ids ``0 … n_classes-1`` (e.g. from :func:`three_class_target`).
        n_classes: see above.

    Returns:
        ``H×W`` float32 weights. An image with a single class gets weight 1 everywhere.

    Taught in notebooks/10_unet.
    """
    labels = _check_labels(labels)
    classes = (labels > 0).astype(np.int64) if n_classes is None else labels
    counts = np.bincount(classes.ravel(), minlength=n_classes or 2)
    present = counts > 0
    per_class = np.zeros(len(counts), dtype=np.float64)
    per_class[present] = classes.size / (present.sum() * counts[present])
    return per_class[classes].astype(np.float32)


def nearest_two_distances(labels: np.ndarray, cutoff: float | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """``(d1, d2)``: distance of every pixel to the nearest and second-nearest instance.

    Each instance's distance map is ``distance_transform_edt(labels != id)`` (0 on the
    instance). To stay fast with hundreds of nuclei, it is computed only in the instance's
    bounding box grown by ``cutoff`` pixels: any pixel outside that window is farther than
    ``cutoff`` from the instance. So ``d1, d2`` are exact wherever they are ≤ ``cutoff`` and
    ``inf`` (or a value > cutoff) beyond.

    Args:
        labels: ``H×W`` instance label image.
        cutoff: window margin in pixels; ``None`` computes every distance on the full image.

    Returns:
        Two ``H×W`` float64 arrays; ``inf`` where fewer than one / two instances are in reach.

    Taught in notebooks/10_unet.
    """
    labels = _check_labels(labels)
    h, w = labels.shape
    d1 = np.full((h, w), np.inf)
    d2 = np.full((h, w), np.inf)
    slices = ndimage.find_objects(labels)
    for idx, sl in enumerate(slices, start=1):
        if sl is None:  # an id with no pixels (ids need not be consecutive)
            continue
        if cutoff is None:
            window = (slice(0, h), slice(0, w))
        else:
            m = int(np.ceil(cutoff))
            window = (slice(max(sl[0].start - m, 0), min(sl[0].stop + m, h)),
                      slice(max(sl[1].start - m, 0), min(sl[1].stop + m, w)))
        d = ndimage.distance_transform_edt(labels[window] != idx)
        a, b = d1[window], d2[window]
        # keep the two smallest seen so far: the new d2 is the middle of (d1, d2, d)
        b[...] = np.minimum(b, np.maximum(a, d))
        a[...] = np.minimum(a, d)
    return d1, d2


def border_weight(labels: np.ndarray, w0: float = W0, sigma: float = SIGMA,
                  background_only: bool = True, *, tol: float = 1e-6) -> np.ndarray:
    """The border term ``w0 · exp(-(d1 + d2)² / (2σ²))`` of the U-Net weight map.

    Args:
        labels: ``H×W`` instance label image (0 = background).
        w0: peak weight (10 in the paper).
        sigma: width in pixels (5 in the paper).
        background_only: add the term on background pixels only (see module docstring).
        tol: terms below ``tol`` may be dropped; it sets the distance window so that the
            cost stays proportional to the nuclei's area, not to their number × image size.

    Returns:
        ``H×W`` float32; 0 everywhere when the image holds fewer than two instances.

    Taught in notebooks/10_unet.
    """
    labels = _check_labels(labels)
    if sigma <= 0:
        raise ValueError(f"sigma={sigma} must be > 0 (pixels)")
    if w0 <= 0:
        return np.zeros(labels.shape, np.float32)
    # beyond d1 + d2 > cutoff the term is below tol; since d2 ≥ d1 we need d2 ≤ cutoff,
    # hence both instances within cutoff of the pixel
    cutoff = sigma * np.sqrt(2.0 * max(np.log(w0 / tol), 0.0))
    d1, d2 = nearest_two_distances(labels, cutoff=cutoff)
    with np.errstate(over="ignore", invalid="ignore"):
        term = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma ** 2))
    term[~np.isfinite(d2)] = 0.0
    if background_only:
        term[labels > 0] = 0.0
    return term.astype(np.float32)


def weight_map(labels: np.ndarray, w0: float = W0, sigma: float = SIGMA,
               class_weights: str | None = "balanced", *, background_only: bool = True
               ) -> np.ndarray:
    """The U-Net loss weight map ``w(x) = w_c(x) + w0 · exp(-(d1 + d2)² / (2σ²))``.

    Args:
        labels: ``H×W`` instance label image (0 = background).
        w0, sigma: the border term's height and width (paper: 10 and 5 px).
        class_weights: ``"balanced"`` (:func:`class_balance_weights`) or ``None`` (w_c = 1).
        background_only: see :func:`border_weight`.

    Returns:
        ``H×W`` float32 weights, to pass to Keras as per-pixel ``sample_weight``.

    Taught in notebooks/10_unet.
    """
    labels = _check_labels(labels)
    if class_weights == "balanced":
        wc = class_balance_weights(labels)
    elif class_weights is None:
        wc = np.ones(labels.shape, np.float32)
    else:
        raise ValueError(f"class_weights={class_weights!r}: use 'balanced' or None")
    return wc + border_weight(labels, w0, sigma, background_only=background_only)


# --------------------------------------------------------------------------------------
# Three-class targets: background / interior / border
# --------------------------------------------------------------------------------------

BACKGROUND, INTERIOR, BORDER = 0, 1, 2


def instance_borders(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """``H×W`` bool: instance pixels within ``width`` px (disk) of a pixel of another label.

    "Another label" includes background, so every nucleus gets a rim, and two touching
    nuclei are separated by both their rims. With ``width=1`` this equals
    ``skimage.segmentation.find_boundaries(labels, mode="inner")``. Pixels at the image edge
    are not borders by themselves (the image frame is not a label).

    Taught in notebooks/10_unet.
    """
    labels = _check_labels(labels)
    if width < 1:
        raise ValueError(f"width={width} must be ≥ 1 pixel")
    yy, xx = np.mgrid[-width:width + 1, -width:width + 1]
    footprint = yy ** 2 + xx ** 2 <= width ** 2
    # a pixel sees another label in its disk iff the max or the min label there differs
    hi = ndimage.maximum_filter(labels, footprint=footprint, mode="nearest")
    lo = ndimage.minimum_filter(labels, footprint=footprint, mode="nearest")
    return (labels > 0) & ((hi != labels) | (lo != labels))


def three_class_target(labels: np.ndarray, border_width: int = 1) -> np.ndarray:
    """``H×W`` uint8 classes: 0 background, 1 nucleus interior, 2 nucleus border.

    Predicting the border as its own class is the other way (besides the weight map) to keep
    touching nuclei apart: interiors of touching nuclei are separated by border pixels, so
    their connected components are the instances (see
    :func:`course_lib.ops.watershed.instances_from_three_class`).

    Taught in notebooks/10_unet.
    """
    labels = _check_labels(labels)
    out = np.zeros(labels.shape, np.uint8)
    out[labels > 0] = INTERIOR
    out[instance_borders(labels, border_width)] = BORDER
    return out

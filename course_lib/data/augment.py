"""Joint augmentation of an image, its instance masks and their boxes.

Taught in notebooks/01_data_tour (the gallery), 10_unet (elastic deformation) and
12_train_voc (augmentation against overfitting).

Every geometric transform moves the image and the masks with the *same* coordinate map: the
image is interpolated (bilinear), the masks are sampled at the nearest source pixel so they
stay boolean. Boxes are never transformed directly; they are recomputed from the transformed
masks (a rotated box is not a box), and instances that leave the frame or become empty are
dropped together with their class ids.

Conventions (DESIGN.md): images ``H x W x C`` uint8, masks ``H x W x N`` bool, boxes
``(y1, x1, y2, x2)`` in pixel-edge coordinates.

Two ways to use it:

- single transforms as plain functions, e.g. ``flip_left_right(image, masks)``,
  ``affine(image, masks, scale=1.1, rotate=10)``, ``elastic_deform(image, masks, rng)``;
- an :class:`Augmenter` composing random transforms, each applied with a probability, driven by a
  seeded :class:`numpy.random.Generator`::

      aug = Augmenter.default(seed=0)
      out = aug(image, masks, class_ids)   # Augmented(image, masks, class_ids, boxes, dropped)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from skimage import transform as sktf

from course_lib.ops.masks import (
    disjoint_masks_to_labels,
    labels_to_boxes,
    labels_to_masks,
    masks_to_boxes,
)

# ----------------------------------------------------------------------------------------------
# helpers


def _check(image: np.ndarray, masks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be H x W or H x W x C, got shape {image.shape}")
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape[:2] != image.shape[:2]:
            raise ValueError(
                f"masks shape {masks.shape} does not match image shape {image.shape}: "
                "masks must be H x W x N with the image's H and W"
            )
    return image, masks


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """``(N, 4)`` float32 tight boxes ``(y1, x1, y2, x2)`` of ``H x W x N`` masks (pixel edges).

    An empty mask gives ``(0, 0, 0, 0)``. Kept under this name for existing callers; the one
    implementation is :func:`course_lib.ops.masks.masks_to_boxes`.

    Taught in notebooks/01_data_tour.
    """
    return masks_to_boxes(masks).reshape(-1, 4)


#: ``H x W`` int32 label image of non-overlapping masks or ``None`` (the one implementation is
#: :func:`course_lib.ops.masks.disjoint_masks_to_labels`; this name is kept for old callers).
stack_to_labels = disjoint_masks_to_labels

#: Tight boxes of chosen labels of a label image (:func:`course_lib.ops.masks.labels_to_boxes`).
label_boxes = labels_to_boxes


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip interpolated values back to an integer image dtype."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def _reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Mirror integer indices into ``[0, n)`` like ``scipy.ndimage`` mode ``'reflect'`` (d c b a | a b c d)."""
    period = 2 * n
    j = np.mod(idx, period)
    return np.where(j >= n, period - 1 - j, j)


def sample_nearest(array: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                   mode: str = "constant") -> np.ndarray:
    """Nearest-neighbour resampling of ``array`` (``H x W [x N]``) at source coordinates.

    Args:
        array: the source, any dtype (bool masks stay bool).
        rows, cols: ``(H', W')`` float source coordinates of each output pixel, pixel centres at
            integers (``scipy.ndimage`` / ``skimage`` convention).
        mode: ``"constant"`` (outside the source gives 0 / False) or ``"reflect"``.

    Returns:
        ``(H', W') + array.shape[2:]`` array of the same dtype.

    Taught in notebooks/01_data_tour.
    """
    h, w = array.shape[:2]
    ri = np.floor(np.asarray(rows) + 0.5).astype(np.int64)  # round half up, as skimage order=0
    ci = np.floor(np.asarray(cols) + 0.5).astype(np.int64)
    if mode == "reflect":
        return array[_reflect_index(ri, h), _reflect_index(ci, w)]
    if mode != "constant":
        raise ValueError(f"mode must be 'constant' or 'reflect', got {mode!r}")
    valid = (ri >= 0) & (ri < h) & (ci >= 0) & (ci < w)
    out = np.zeros(ri.shape + array.shape[2:], dtype=array.dtype)
    out[valid] = array[ri[valid], ci[valid]]
    return out


def sample_linear(image: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  mode: str = "constant") -> np.ndarray:
    """Bilinear resampling of an ``H x W [x C]`` image at float source coordinates (same dtype).

    Taught in notebooks/01_data_tour.
    """
    img = np.asarray(image)
    src = img.astype(np.float32)
    coords = np.stack([rows, cols])
    if src.ndim == 2:
        out = ndimage.map_coordinates(src, coords, order=1, mode=mode, cval=0.0)
    else:
        out = np.stack([ndimage.map_coordinates(src[..., c], coords, order=1, mode=mode, cval=0.0)
                        for c in range(src.shape[-1])], axis=-1)
    return _to_dtype(out, img.dtype)


# ----------------------------------------------------------------------------------------------
# elastic deformation (U-Net paper, Ronneberger et al. 2015, section 3.1)


def elastic_field(shape: tuple[int, int], rng: np.random.Generator, grid: int = 3,
                  sigma: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Dense displacement field ``(dy, dx)``, each ``H x W`` float32, in pixels.

    Random displacements are drawn on a coarse ``grid x grid`` lattice from a Gaussian with
    standard deviation ``sigma`` pixels, then interpolated bicubically (cubic spline through the
    lattice values) to every pixel. The lattice nodes sit on the image corners, edge midpoints
    and centre (for ``grid=3``), so a smooth, large-scale warp results.

    Taught in notebooks/10_unet.
    """
    if grid < 2:
        raise ValueError(f"grid must be at least 2 (got {grid}): the lattice needs corner nodes")
    h, w = shape
    coarse = rng.normal(0.0, sigma, size=(2, grid, grid))
    # coordinates of every pixel on the lattice: pixel 0 -> node 0, last pixel -> node grid-1
    r = np.arange(h, dtype=np.float64) * (grid - 1) / max(h - 1, 1)
    c = np.arange(w, dtype=np.float64) * (grid - 1) / max(w - 1, 1)
    rr, cc = np.meshgrid(r, c, indexing="ij")
    dy = ndimage.map_coordinates(coarse[0], [rr, cc], order=3, mode="nearest")
    dx = ndimage.map_coordinates(coarse[1], [rr, cc], order=3, mode="nearest")
    return dy.astype(np.float32), dx.astype(np.float32)


def elastic_deform(image: np.ndarray, masks: np.ndarray | None, rng: np.random.Generator,
                   grid: int = 3, sigma: float = 10.0, mode: str = "reflect"
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Elastic deformation as in the U-Net paper: smooth random warp of image and masks together.

    Args:
        image: ``H x W [x C]`` image (any dtype; integer images are rounded back).
        masks: ``H x W [x N]`` masks or label/weight maps sampled nearest (or ``None``).
        rng: the random generator (draws ``2 * grid * grid`` normals).
        grid: coarse lattice size (3 in the paper).
        sigma: standard deviation of the lattice displacements in pixels (10 in the paper);
            ``sigma=0`` returns the input unchanged.
        mode: what the border pulls in: ``"reflect"`` (mirrored, as U-Net's overlap-tile) or
            ``"constant"`` (zeros / False). The same for image and masks, so they stay aligned.

    Returns:
        ``(image, masks)`` of the input shapes and dtypes.

    Taught in notebooks/10_unet.
    """
    image, masks = _check(image, masks)
    h, w = image.shape[:2]
    dy, dx = elastic_field((h, w), rng, grid=grid, sigma=sigma)
    rr, cc = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32),
                         indexing="ij")
    rows, cols = rr + dy, cc + dx
    out_image = sample_linear(image, rows, cols, mode=mode)
    out_masks = None if masks is None else sample_nearest(masks, rows, cols, mode=mode)
    return out_image, out_masks


# ----------------------------------------------------------------------------------------------
# flips and quarter turns (exact, no interpolation)


def flip_left_right(image: np.ndarray, masks: np.ndarray | None = None):
    """Mirror columns. Returns ``(image, masks)``.

    Taught in notebooks/01_data_tour.
    """
    image, masks = _check(image, masks)
    return image[:, ::-1].copy(), None if masks is None else masks[:, ::-1].copy()


def flip_up_down(image: np.ndarray, masks: np.ndarray | None = None):
    """Mirror rows. Returns ``(image, masks)``.

    Taught in notebooks/01_data_tour.
    """
    image, masks = _check(image, masks)
    return image[::-1].copy(), None if masks is None else masks[::-1].copy()


def rotate90(image: np.ndarray, masks: np.ndarray | None = None, k: int = 1):
    """Turn by ``k`` quarter turns counter-clockwise (``np.rot90``); H and W swap for odd ``k``.

    Taught in notebooks/01_data_tour.
    """
    image, masks = _check(image, masks)
    image = np.ascontiguousarray(np.rot90(image, k, axes=(0, 1)))
    if masks is not None:
        masks = np.ascontiguousarray(np.rot90(masks, k, axes=(0, 1)))
    return image, masks


def flip_boxes_left_right(boxes: np.ndarray, width: int) -> np.ndarray:
    """Boxes after :func:`flip_left_right` of an image ``width`` wide: x -> width - x.

    Taught in notebooks/01_data_tour.
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.stack([b[:, 0], width - b[:, 3], b[:, 2], width - b[:, 1]], axis=1)


def flip_boxes_up_down(boxes: np.ndarray, height: int) -> np.ndarray:
    """Boxes after :func:`flip_up_down` of an image ``height`` tall: y -> height - y.

    Taught in notebooks/01_data_tour.
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.stack([height - b[:, 2], b[:, 1], height - b[:, 0], b[:, 3]], axis=1)


def rotate90_boxes(boxes: np.ndarray, shape: tuple[int, int], k: int = 1) -> np.ndarray:
    """Boxes after :func:`rotate90` of an image of ``shape = (H, W)``.

    One counter-clockwise quarter turn sends pixel-edge point (y, x) to (W - x, y).

    Taught in notebooks/01_data_tour.
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    h, w = shape
    for _ in range(k % 4):
        b = np.stack([w - b[:, 3], b[:, 0], w - b[:, 1], b[:, 2]], axis=1)
        h, w = w, h
    return b


# ----------------------------------------------------------------------------------------------
# affine warp and crop


def affine_matrix(shape: tuple[int, int], scale: float | tuple[float, float] = 1.0,
                  translate: tuple[float, float] = (0.0, 0.0), rotate: float = 0.0,
                  shear: float = 0.0) -> sktf.AffineTransform:
    """The forward ``skimage`` transform (x = column, y = row) about the image centre.

    Args:
        shape: ``(H, W)``.
        scale: zoom factor (``>1`` enlarges), or ``(sy, sx)``.
        translate: ``(ty, tx)`` shift in pixels.
        rotate: degrees, counter-clockwise on screen.
        shear: degrees.

    Taught in notebooks/01_data_tour.
    """
    h, w = shape
    sy, sx = (scale, scale) if np.isscalar(scale) else scale
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])  # pixel centres are integers in skimage
    to_origin = sktf.AffineTransform(translation=-centre)
    # rows grow downwards, so a positive angle in (x, y) is clockwise on screen: negate
    core = sktf.AffineTransform(scale=(sx, sy), rotation=np.deg2rad(-rotate),
                                shear=np.deg2rad(shear))
    back = sktf.AffineTransform(translation=centre + np.array([translate[1], translate[0]]))
    return sktf.AffineTransform(matrix=back.params @ core.params @ to_origin.params)


def affine_source_coords(tform: sktf.AffineTransform, shape: tuple[int, int]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Source ``(rows, cols)`` (each ``H x W`` float32) that a forward transform pulls every output
    pixel from; the same map as ``skimage.transform.warp_coords(tform.inverse, shape)``, computed
    with broadcasting (an affine map is separable into row and column terms).

    Taught in notebooks/01_data_tour.
    """
    inv = np.linalg.inv(tform.params).astype(np.float32)
    r = np.arange(shape[0], dtype=np.float32)[:, None]
    c = np.arange(shape[1], dtype=np.float32)[None, :]
    cols = inv[0, 0] * c + inv[0, 1] * r + inv[0, 2]
    rows = inv[1, 0] * c + inv[1, 1] * r + inv[1, 2]
    return rows, cols


def affine(image: np.ndarray, masks: np.ndarray | None = None,
           scale: float | tuple[float, float] = 1.0, translate: tuple[float, float] = (0.0, 0.0),
           rotate: float = 0.0, shear: float = 0.0, output_shape: tuple[int, int] | None = None):
    """Scale, translate, rotate and shear image and masks about the image centre.

    The image goes through ``skimage.transform.warp`` (bilinear, zeros outside); the masks are
    sampled at the nearest source pixel of the same coordinate map
    (:func:`affine_source_coords`), so they stay bool and aligned. Identity parameters return the input unchanged.

    Returns:
        ``(image, masks)``.

    Taught in notebooks/01_data_tour.
    """
    image, masks = _check(image, masks)
    shape = image.shape[:2] if output_shape is None else tuple(output_shape)
    tform = affine_matrix(image.shape[:2], scale, translate, rotate, shear)
    warped = sktf.warp(image.astype(np.float32), tform.inverse, order=1, mode="constant",
                       cval=0.0, preserve_range=True, output_shape=shape + image.shape[2:])
    out_image = _to_dtype(warped, image.dtype)
    out_masks = None
    if masks is not None:
        rows, cols = affine_source_coords(tform, shape)
        out_masks = sample_nearest(masks, rows, cols, mode="constant")
    return out_image, out_masks


def crop(image: np.ndarray, masks: np.ndarray | None, top: int, left: int, height: int,
         width: int, keep_size: bool = True):
    """Cut the window ``[top, top+height) x [left, left+width)``; optionally resize it back.

    With ``keep_size`` the crop is scaled back to the input size (bilinear image, nearest masks),
    so batch shapes stay fixed; this is a zoom-in by ``H / height``.

    Taught in notebooks/01_data_tour.
    """
    image, masks = _check(image, masks)
    h, w = image.shape[:2]
    if not (0 <= top and 0 <= left and height > 0 and width > 0
            and top + height <= h and left + width <= w):
        raise ValueError(f"crop window {(top, left, height, width)} does not fit in {(h, w)}")
    img = image[top:top + height, left:left + width]
    msk = None if masks is None else masks[top:top + height, left:left + width]
    if not keep_size or (height, width) == (h, w):
        return img.copy(), None if msk is None else msk.copy()
    # output pixel centre (r + 0.5) * height / h - 0.5 in crop pixel-centre coordinates
    rows = (np.arange(h, dtype=np.float32) + 0.5) * height / h - 0.5
    cols = (np.arange(w, dtype=np.float32) + 0.5) * width / w - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3:
        from PIL import Image  # same pixel-centre mapping, ~10x faster on uint8 photos

        out_img = np.asarray(Image.fromarray(image).resize(
            (w, h), Image.Resampling.BILINEAR, box=(left, top, left + width, top + height)))
    else:
        out_img = sample_linear(img, rr, cc, mode="nearest")
    out_msk = None if msk is None else sample_nearest(msk, rr, cc, mode="reflect")
    return out_img, out_msk


# ----------------------------------------------------------------------------------------------
# photometric transforms (image only)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blur the spatial axes with a Gaussian of ``sigma`` pixels (channels kept apart).

    Taught in notebooks/01_data_tour.
    """
    image = np.asarray(image)
    if sigma <= 0:
        return image.copy()
    s = (sigma, sigma) + (0,) * (image.ndim - 2)
    return _to_dtype(ndimage.gaussian_filter(image.astype(np.float32), s), image.dtype)


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Scale deviations from the image's mean grey value by ``factor`` (1 keeps the image).

    Taught in notebooks/01_data_tour.
    """
    image = np.asarray(image)
    x = image.astype(np.float32)
    return _to_dtype(x.mean() + (x - x.mean()) * factor, image.dtype)


def adjust_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Multiply intensities by ``factor`` (1 keeps the image), clipped to the dtype's range.

    Taught in notebooks/01_data_tour.
    """
    image = np.asarray(image)
    return _to_dtype(image.astype(np.float32) * factor, image.dtype)


# ----------------------------------------------------------------------------------------------
# random transforms and the Augmenter


def _uniform(rng: np.random.Generator, bounds) -> float:
    lo, hi = (bounds, bounds) if np.isscalar(bounds) else bounds
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


@dataclass
class FlipLeftRight:
    """Random left-right mirror with probability ``p``.

    Taught in notebooks/01_data_tour.
    """

    p: float = 0.5

    def __call__(self, image, masks, rng):
        return flip_left_right(image, masks) if rng.random() < self.p else (image, masks)


@dataclass
class FlipUpDown:
    """Random up-down mirror with probability ``p``.

    Taught in notebooks/01_data_tour.
    """

    p: float = 0.5

    def __call__(self, image, masks, rng):
        return flip_up_down(image, masks) if rng.random() < self.p else (image, masks)


@dataclass
class Rotate90:
    """With probability ``p``, 1-3 random quarter turns (H and W swap for odd turns).

    Taught in notebooks/01_data_tour.
    """

    p: float = 0.5

    def __call__(self, image, masks, rng):
        if rng.random() >= self.p:
            return image, masks
        return rotate90(image, masks, k=int(rng.integers(1, 4)))


@dataclass
class Affine:
    """Random scale / translate / rotate / shear, each drawn uniformly from its range.

    ``translate`` is a fraction of the image side; ``rotate`` and ``shear`` are degrees.
    With ``per_axis_scale`` the row and column zooms are drawn independently.

    Taught in notebooks/01_data_tour.
    """

    scale: tuple[float, float] = (0.8, 1.2)
    translate: tuple[float, float] = (-0.1, 0.1)
    rotate: tuple[float, float] = (-15.0, 15.0)
    shear: tuple[float, float] = (-8.0, 8.0)
    p: float = 0.5
    per_axis_scale: bool = False

    def __call__(self, image, masks, rng):
        if rng.random() >= self.p:
            return image, masks
        h, w = np.shape(image)[:2]
        # one zoom for both axes, or (per_axis_scale, as imgaug's scale={"x": .., "y": ..})
        # a row zoom and a column zoom drawn apart
        scale = (_uniform(rng, self.scale), _uniform(rng, self.scale)) if self.per_axis_scale \
            else _uniform(rng, self.scale)
        return affine(image, masks, scale=scale,
                      translate=(_uniform(rng, self.translate) * h,
                                 _uniform(rng, self.translate) * w),
                      rotate=_uniform(rng, self.rotate), shear=_uniform(rng, self.shear))


@dataclass
class Crop:
    """Random crop keeping a fraction in ``fraction`` of each side, resized back to the input size.

    Taught in notebooks/01_data_tour.
    """

    fraction: tuple[float, float] = (0.9, 1.0)
    p: float = 0.5

    def __call__(self, image, masks, rng):
        if rng.random() >= self.p:
            return image, masks
        h, w = np.shape(image)[:2]
        ch = max(1, int(round(h * _uniform(rng, self.fraction))))
        cw = max(1, int(round(w * _uniform(rng, self.fraction))))
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        return crop(image, masks, top, left, ch, cw, keep_size=True)


@dataclass
class Window:
    """A random ``size × size`` window at the image's own scale (no resizing).

    Unlike :class:`Crop`, which zooms, this keeps every nucleus at its native size: a
    detector trained on windows of large images sees the same object sizes it will see when
    it detects in native-scale tiles (:func:`course_lib.models.tiled_detection.detect_tiled`).
    A side shorter than ``size`` is kept whole.

    Taught in notebooks/11_train_nuclei.
    """

    size: int = 256

    def __call__(self, image, masks, rng):
        h, w = np.shape(image)[:2]
        ch, cw = min(h, self.size), min(w, self.size)
        if (ch, cw) == (h, w):
            return image, masks
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        return crop(image, masks, top, left, ch, cw, keep_size=False)


class _PhotometricTransform:
    """Base of the pixel-value transforms: with probability ``p``, draw one value uniformly
    from ``bounds`` and apply ``self.apply(image, value)``; masks are left alone."""

    bounds: tuple[float, float]
    p: float

    def apply(self, image: np.ndarray, value: float) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, image, masks, rng):
        if rng.random() >= self.p:
            return image, masks
        return self.apply(image, _uniform(rng, self.bounds)), masks


@dataclass
class GaussianBlur(_PhotometricTransform):
    """Blur with a sigma (pixels) drawn from ``bounds``.

    Taught in notebooks/01_data_tour.
    """

    bounds: tuple[float, float] = (0.0, 1.0)
    p: float = 0.3

    def apply(self, image, value):
        return gaussian_blur(image, value)


@dataclass
class Contrast(_PhotometricTransform):
    """Contrast factor drawn from ``bounds`` (0.75-1.5).

    Taught in notebooks/01_data_tour.
    """

    bounds: tuple[float, float] = (0.75, 1.5)
    p: float = 0.5

    def apply(self, image, value):
        return adjust_contrast(image, value)


@dataclass
class Brightness(_PhotometricTransform):
    """Brightness factor drawn from ``bounds`` (0.8-1.2).

    Taught in notebooks/01_data_tour.
    """

    bounds: tuple[float, float] = (0.8, 1.2)
    p: float = 0.5

    def apply(self, image, value):
        return adjust_brightness(image, value)


@dataclass
class Elastic:
    """:func:`elastic_deform` with probability ``p``.

    Taught in notebooks/10_unet.
    """

    grid: int = 3
    sigma: float = 10.0
    p: float = 0.5

    def __call__(self, image, masks, rng):
        if rng.random() >= self.p:
            return image, masks
        return elastic_deform(image, masks, rng, grid=self.grid, sigma=self.sigma)


class Augmented(NamedTuple):
    """What :class:`Augmenter` returns.

    Attributes:
        image: ``H' x W' x C`` (H', W' differ from the input only after an odd quarter turn).
        masks: ``H' x W' x M`` bool, the ``M <= N`` instances still visible.
        class_ids: ``(M,)`` int32, class ids of the kept instances.
        boxes: ``(M, 4)`` float32 tight boxes of the kept masks (pixel edges).
        dropped: how many instances left the frame or became empty.

    Taught in notebooks/01_data_tour.
    """

    image: np.ndarray
    masks: np.ndarray
    class_ids: np.ndarray
    boxes: np.ndarray
    dropped: int


class Augmenter:
    """Apply a list of random transforms in order, then recompute boxes and drop empty instances.

    Args:
        transforms: callables ``(image, masks, rng) -> (image, masks)``, e.g. :class:`FlipLeftRight`.
        seed: seed of the generator used when a call passes no ``rng``.
        min_pixels: an instance with fewer mask pixels after the transforms is dropped.

    Call ``augmenter(image, masks, class_ids=None, rng=None)``. For reproducible data pipelines,
    pass an ``rng`` derived from (seed, epoch, index) so the result does not depend on call order.

    A transform receives the masks either as the ``H x W x N`` bool stack or, when no two
    instances overlap, as one ``H x W`` int32 label image (instance ``i`` has label ``i + 1``):
    the same result, N times less work. Custom transforms must therefore treat ``masks`` as an
    array of any dtype with 2 or 3 dimensions and resample it by nearest neighbour.

    Taught in notebooks/01_data_tour.
    """

    def __init__(self, transforms: Sequence, seed: int | None = 0, min_pixels: int = 1):
        self.transforms = list(transforms)
        self.rng = np.random.default_rng(seed)
        self.min_pixels = int(min_pixels)

    @classmethod
    def default(cls, seed: int | None = 0, rotate90: bool = True) -> Augmenter:
        """The course's detection recipe: flips, quarter turns, affine, crop, blur, contrast, brightness."""
        transforms = [FlipLeftRight(), FlipUpDown()]
        if rotate90:
            transforms.append(Rotate90())
        transforms += [Affine(), Crop(), GaussianBlur(), Contrast(), Brightness()]
        return cls(transforms, seed=seed)

    @classmethod
    def article(cls, seed: int | None = 0) -> Augmenter:
        """The seed article's set for Pascal VOC (notebook 12), one transform per entry:

        ========================  =====================================================  ====
        transform                 range                                                  p
        ========================  =====================================================  ====
        left-right flip           -                                                      0.5
        crop, resized back        keep 90-100 % of each side                             1
        affine                    zoom 0.8-1.2 per axis, shift +-20 % of each side,      1
                                  rotation +-25 degrees, shear +-8 degrees
        Gaussian blur             sigma 0-0.5 px                                         0.5
        contrast                  factor 0.75-1.5 about the image's mean                 1
        brightness                factor 0.8-1.2                                         1
        ========================  =====================================================  ====

        The list (flip 0.5, crop, blur, contrast 0.75-1.5, brightness 0.8-1.2, affine) is
        imgaug's documented "simple and common augmentation sequence" without its Gaussian
        noise; the blur and affine ranges are that example's. imgaug applies the list in a
        random order; this preset applies it in the order above (geometry, then pixel values).

        Taught in notebooks/12_train_voc.
        """
        return cls([FlipLeftRight(p=0.5), Crop(fraction=(0.9, 1.0), p=1.0),
                    Affine(scale=(0.8, 1.2), translate=(-0.2, 0.2), rotate=(-25.0, 25.0),
                           shear=(-8.0, 8.0), p=1.0, per_axis_scale=True),
                    GaussianBlur(bounds=(0.0, 0.5), p=0.5), Contrast(bounds=(0.75, 1.5), p=1.0),
                    Brightness(bounds=(0.8, 1.2), p=1.0)], seed=seed)

    @classmethod
    def unet(cls, seed: int | None = 0) -> Augmenter:
        """The U-Net recipe: flips, quarter turns, elastic deformation, brightness and contrast."""
        return cls([FlipLeftRight(), FlipUpDown(), Rotate90(), Elastic(p=0.7), Contrast(),
                    Brightness()], seed=seed)

    def __repr__(self) -> str:
        return f"Augmenter({self.transforms!r})"

    def __call__(self, image: np.ndarray, masks: np.ndarray | None = None,
                 class_ids: np.ndarray | None = None,
                 rng: np.random.Generator | None = None) -> Augmented:
        image, masks = _check(image, masks)
        if masks is None:
            masks = np.zeros(image.shape[:2] + (0,), bool)
        masks = masks.astype(bool, copy=False)
        if masks.ndim == 2:
            masks = masks[..., None]
        n = masks.shape[-1]
        if class_ids is None:
            class_ids = np.ones(n, np.int32)
        class_ids = np.asarray(class_ids, np.int32).reshape(-1)
        if class_ids.shape[0] != n:
            raise ValueError(f"class_ids has {class_ids.shape[0]} entries for {n} masks")
        rng = self.rng if rng is None else rng
        # Instances that do not overlap (the usual case) travel as one H x W label image, so a
        # geometric transform moves one channel instead of N (nuclei images hold hundreds).
        labels = disjoint_masks_to_labels(masks) if n > 1 else None
        as_labels = labels is not None
        carried = labels if as_labels else masks
        for t in self.transforms:
            image, carried = t(image, carried, rng)
        if as_labels:
            counts = np.bincount(carried.ravel(), minlength=n + 1)[1:n + 1]
            keep = counts >= self.min_pixels
            ids = np.flatnonzero(keep) + 1
            masks = labels_to_masks(carried, ids)
            boxes = labels_to_boxes(carried, ids)
        else:
            masks = carried
            keep = masks.reshape(-1, n).sum(axis=0) >= self.min_pixels if n else np.zeros(0, bool)
            masks = masks[..., keep]
            boxes = masks_to_boxes(masks)
        return Augmented(image, masks, class_ids[keep], boxes, int(n - keep.sum()))

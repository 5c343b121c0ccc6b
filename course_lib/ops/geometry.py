"""Image geometry shared by the data pipeline and the model: into the model's square and back.

Taught in notebooks/09_mask_rcnn.

Mask R-CNN takes fixed ``S × S`` inputs. :func:`resize_and_pad` brings an image there
(resize keeping the aspect ratio so its longer side is ``long_side``, then zero-pad to a
centred square); the image's place in the square is its *window* ``(y1, x1, y2, x2)`` and the
resize factor its *scale*. A point ``p`` of the original lands at ``p · scale + (y1, x1)``,
so :func:`unresize_boxes` undoes it.

Every image travels with one ``image_meta`` row recording that, in the layout
:data:`IMAGE_META_FIELDS` (written here once): the original height and width, the window, the
scale. :func:`image_meta` writes a row; :func:`parse_image_meta` (NumPy) and
:func:`meta_window` (``keras.ops``, inside the graph) are the one place that reads it.
"""

from __future__ import annotations

import numpy as np
from skimage.transform import resize as sk_resize

#: The columns of an ``image_meta`` row, in order.
IMAGE_META_FIELDS = ("height", "width", "window_y1", "window_x1", "window_y2", "window_x2",
                     "scale")
#: Length of an ``image_meta`` row.
IMAGE_META_SIZE = len(IMAGE_META_FIELDS)
_WINDOW = slice(2, 6)
_SCALE = 6


def image_meta(original_shape, window, scale: float) -> np.ndarray:
    """One ``image_meta`` row ``(7,)`` float32: original ``(H, W)``, window, scale.

    Taught in notebooks/09_mask_rcnn.
    """
    h, w = original_shape[:2]
    return np.array([h, w, *np.asarray(window, np.float32).reshape(4), scale], np.float32)


def parse_image_meta(meta: np.ndarray) -> dict[str, np.ndarray]:
    """Split ``image_meta`` rows ``(..., 7)`` into their fields (NumPy).

    Returns:
        dict with ``original_shape`` ``(..., 2)`` int32, ``window`` ``(..., 4)`` float32 and
        ``scale`` ``(...)`` float32, for :func:`unresize_boxes` and for pasting detections back.

    Taught in notebooks/09_mask_rcnn.
    """
    meta = np.asarray(meta, np.float32)
    return {"original_shape": meta[..., :2].astype(np.int32), "window": meta[..., _WINDOW],
            "scale": meta[..., _SCALE]}


def meta_window(meta):
    """The ``(B, 4)`` float32 windows ``(y1, x1, y2, x2)`` of ``image_meta`` rows ``(B, 7)``,
    as a ``keras.ops`` tensor (the graph's reader; :func:`parse_image_meta` is NumPy's).

    Taught in notebooks/09_mask_rcnn.
    """
    from keras import ops

    return ops.cast(meta, "float32")[:, _WINDOW]


def resize_nearest(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of ``H x W [x N]`` masks to ``shape``: each output pixel takes the
    source pixel under its centre (``(r + 0.5) * H / H' - 0.5`` rounded).

    Taught in notebooks/09_mask_rcnn.
    """
    h, w = masks.shape[:2]
    nh, nw = shape
    rows = np.clip(np.floor((np.arange(nh) + 0.5) * h / nh).astype(np.int64), 0, h - 1)
    cols = np.clip(np.floor((np.arange(nw) + 0.5) * w / nw).astype(np.int64), 0, w - 1)
    return masks[rows][:, cols]


def resize_and_pad(image: np.ndarray, masks: np.ndarray | None, image_size: int,
                   long_side: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, float]:
    """Resize keeping the aspect ratio so the longer side is ``long_side`` (default
    ``image_size``), then zero-pad to a centred ``image_size`` square.

    ``long_side`` below ``image_size`` leaves a margin on every side, as the VOC article does
    (500 px on the long side in a 512 square: the network's strides need a multiple of 64).

    ``masks`` may be an ``H x W x N`` stack or an ``H x W`` label image (any dtype, resized by
    nearest neighbour, padded with 0).

    Returns:
        ``(image, masks, window, scale)``: ``S x S x C`` image (input dtype), ``S x S [x N]``
        masks of the input dtype (``None`` if none given), window ``(y1, x1, y2, x2)`` float32 of
        the image in the square, and the scale factor.

    Taught in notebooks/09_mask_rcnn.
    """
    long_side = image_size if long_side is None else int(long_side)
    if not 0 < long_side <= image_size:
        raise ValueError(f"resize_and_pad: long_side={long_side} must be in 1..image_size "
                         f"({image_size}).")
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if (nh, nw) == (h, w):
        resized = image
    elif image.dtype == np.uint8 and (image.ndim == 2 or image.shape[-1] in (1, 3, 4)):
        # Pillow's bilinear resize is a convolution whose support widens when shrinking, so it
        # anti-aliases, and it is ~20x faster than scikit-image on uint8 photos
        from PIL import Image

        squeeze = image.ndim == 3 and image.shape[-1] == 1
        pil = Image.fromarray(image[..., 0] if squeeze else image)
        resized = np.asarray(pil.resize((nw, nh), Image.Resampling.BILINEAR))
        resized = resized[..., None] if squeeze else resized
    else:
        resized = sk_resize(image.astype(np.float32), (nh, nw) + image.shape[2:], order=1,
                            preserve_range=True, anti_aliasing=scale < 1, mode="edge")
        resized = np.clip(np.rint(resized), 0, 255).astype(image.dtype) \
            if np.issubdtype(image.dtype, np.integer) else resized.astype(image.dtype)
    top, left = (image_size - nh) // 2, (image_size - nw) // 2
    out = np.zeros((image_size, image_size) + image.shape[2:], image.dtype)
    out[top:top + nh, left:left + nw] = resized
    window = np.array([top, left, top + nh, left + nw], np.float32)
    out_masks = None
    if masks is not None:
        m = resize_nearest(masks, (nh, nw)) if (nh, nw) != (h, w) else masks
        out_masks = np.zeros((image_size, image_size) + masks.shape[2:], masks.dtype)
        out_masks[top:top + nh, left:left + nw] = m
    return out, out_masks, window, float(scale)


def unresize_boxes(boxes: np.ndarray, window: np.ndarray, scale: float) -> np.ndarray:
    """Boxes of the padded square back in the original image's pixel-edge coordinates.

    Taught in notebooks/09_mask_rcnn.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    offset = np.array([window[0], window[1], window[0], window[1]], np.float32)
    return (boxes - offset) / scale

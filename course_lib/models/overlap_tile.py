"""Overlap-tile prediction: a U-Net applied to an image of any size, tile by tile.

Taught in notebooks/10_unet.

The valid U-Net maps an input tile of side ``T_in`` to a smaller output tile of side
``T_out = T_in - 2·m``: each output pixel needs ``m`` pixels of context on every side (92 px
for the paper's 572 → 388). To predict a whole image:

1. cut the *output* plane into a grid of ``T_out × T_out`` tiles that cover every pixel
   exactly once (the last row and column of tiles may stick out past the image);
2. pad the image by ``m`` (plus whatever the last tiles stick out) by *mirroring* it at its
   borders (``np.pad(mode="reflect")``), so the context outside the image looks like tissue
   rather than a black frame;
3. for the tile whose output starts at ``(y, x)``, feed the padded window starting at
   ``(y, x)`` of side ``T_in`` (in original coordinates it starts at ``(y - m, x - m)``);
4. paste each output tile in place and crop to the image.

Input windows overlap by ``2·m``; output tiles do not overlap at all. A same-padding net can
be tiled the same way: it returns a ``T_in`` tile, of which the centre ``T_out`` (the pixels
that had full context) is kept.

With a translation-equivariant model (any stack of valid convolutions) tiled and
whole-image predictions agree exactly. A U-Net's poolings are equivariant only to shifts by
multiples of ``2**depth``, so the two agree exactly when ``T_out`` is such a multiple (always
the case at depth ≤ 2) and up to the pooling phase otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.ops.padding import MIRROR_MODE, mirror_pad


def tile_origins(shape: tuple[int, int], tile_out: int | tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left corners ``(y, x)`` of the output tiles that cover an ``H×W`` image once.

    Tiles start at multiples of ``tile_out``; the last row/column may extend past the image.

    Taught in notebooks/10_unet.
    """
    th, tw = _pair(tile_out)
    h, w = shape[:2]
    if min(h, w, th, tw) <= 0:
        raise ValueError(f"image shape {shape[:2]} and tile_out {tile_out} must be positive")
    return [(y, x) for y in range(0, h, th) for x in range(0, w, tw)]


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def overlap_tile_predict(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    tile_in: int | tuple[int, int],
    tile_out: int | tuple[int, int],
    batch_size: int = 4,
    pad_mode: str = "reflect",
) -> np.ndarray:
    """Predict an ``H×W×C`` image of any size with a model that takes fixed-size tiles.

    Args:
        predict_fn: maps a batch ``(B, T_in, T_in, C)`` to ``(B, T_out, T_out, K)`` (valid
            net) or ``(B, T_in, T_in, K)`` (same-padding net; its centre ``T_out`` is kept).
            E.g. ``lambda x: model.predict(x, verbose=0)``.
        image: ``H×W×C`` (or ``H×W``, treated as one channel), any dtype the model accepts.
        tile_in: input tile side(s) ``T_in``.
        tile_out: output tile side(s) ``T_out``; ``T_in - T_out`` must be even (the margin
            ``m = (T_in - T_out) / 2`` is the context on each side).
        batch_size: tiles per call of ``predict_fn``.
        pad_mode: ``np.pad`` mode for the context outside the image (the paper mirrors).

    Returns:
        ``H×W×K`` float32 predictions, every pixel from exactly one tile.

    Taught in notebooks/10_unet.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"image must be H×W×C or H×W; got shape {image.shape}")
    (ti_h, ti_w), (to_h, to_w) = _pair(tile_in), _pair(tile_out)
    mh, mw = (ti_h - to_h) / 2, (ti_w - to_w) / 2
    if mh < 0 or mw < 0 or mh != int(mh) or mw != int(mw):
        raise ValueError(f"tile_in {tile_in} - tile_out {tile_out} must be even and ≥ 0 "
                         "(the context margin is half of it on each side)")
    mh, mw = int(mh), int(mw)
    h, w = image.shape[:2]
    origins = tile_origins((h, w), (to_h, to_w))
    n_rows, n_cols = -(-h // to_h), -(-w // to_w)
    extra_h, extra_w = n_rows * to_h - h, n_cols * to_w - w
    pad = ((mh, mh + extra_h), (mw, mw + extra_w), (0, 0))
    # np.pad reflects repeatedly when a pad is wider than the image, so small images work too;
    # the default goes through the one mirror of the course, as the U-Net training crops do
    padded = mirror_pad(image, pad[:2]) if pad_mode == MIRROR_MODE else \
        np.pad(image, pad, mode=pad_mode)

    out = None
    for start in range(0, len(origins), batch_size):
        chunk = origins[start:start + batch_size]
        batch = np.stack([padded[y:y + ti_h, x:x + ti_w] for y, x in chunk])
        pred = np.asarray(predict_fn(batch))
        if pred.ndim == 3:
            pred = pred[..., None]
        if pred.shape[1:3] == (ti_h, ti_w) and (ti_h, ti_w) != (to_h, to_w):
            pred = pred[:, mh:mh + to_h, mw:mw + to_w]  # same-padding net: keep the centre
        if pred.shape[:3] != (len(chunk), to_h, to_w):
            raise ValueError(f"predict_fn returned shape {pred.shape}; expected "
                             f"({len(chunk)}, {to_h}, {to_w}, K) or ({len(chunk)}, {ti_h}, "
                             f"{ti_w}, K). Check tile_in/tile_out against the model.")
        if out is None:
            out = np.zeros((n_rows * to_h, n_cols * to_w, pred.shape[-1]), np.float32)
        for (y, x), tile in zip(chunk, pred, strict=True):
            out[y:y + to_h, x:x + to_w] = tile
    return out[:h, :w]


def model_tile_sizes(model, margin: int | None = None) -> tuple[int, int]:
    """``(tile_in, tile_out)`` read from a Keras model's static input and output sides.

    For a valid-convolution net both come from the model (e.g. 572 and 388). A same-padding
    net has equal sides: give ``margin`` (pixels of context discarded on each side) and get
    ``(T_in, T_in - 2·margin)``.

    Taught in notebooks/10_unet.
    """
    t_in, t_out = model.input_shape[1], model.output_shape[1]
    if t_in is None:
        raise ValueError("the model has no fixed input size; build it with a fixed "
                         "input_shape (e.g. (128, 128, 3)) to tile with it")
    if t_in == t_out:
        if margin is None:
            raise ValueError("a same-padding model keeps the size: pass margin= (context "
                             "pixels dropped on each side of its output tile)")
        return t_in, t_in - 2 * margin
    return t_in, t_out

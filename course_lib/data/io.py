"""Robust reading of images and masks: every file comes back in the course's conventions.

Taught in notebooks/01_data_tour.

Real datasets mix formats: the DSB2018 images are 8-bit RGBA PNGs, some microscopy sets are
grey or 16-bit TIFFs, VOC photos are JPEGs. Everything downstream expects one thing, so:

* :func:`read_image` returns ``H×W×3 uint8`` RGB: alpha is dropped, grey is repeated into the
  three channels, 16-bit (and other integer) data is rescaled to 0..255, float data in [0, 1]
  is scaled by 255.
* :func:`read_mask` returns ``H×W bool``: any non-zero pixel is foreground.

A file that cannot be decoded (corrupt bytes, truncated transfer, unknown format) raises
:class:`ImageReadError`, whose message names the file and says what to do, instead of the
decoder's bare exception surfacing in the middle of an epoch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: File endings read through tifffile (Pillow handles 16-bit multi-channel TIFFs poorly).
TIFF_SUFFIXES = (".tif", ".tiff")


class ImageReadError(ValueError):
    """A file exists but could not be decoded as an image (corrupt, truncated, wrong format).

    Taught in notebooks/01_data_tour.
    """


def _fail(path: Path, err: Exception | str) -> ImageReadError:
    return ImageReadError(
        f"Could not read image file {path}: {err}. The file is corrupt, truncated or not an "
        "image; re-download or regenerate it (python -m course_lib.data.prepare), or delete the "
        "sample folder so the loader skips it."
    )


def read_array(path: str | Path) -> np.ndarray:
    """Decode ``path`` to a NumPy array as stored (any dtype, 2-D or ``H×W×C``).

    PNG, JPEG and the other Pillow formats are read with Pillow, TIFF with tifffile.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageReadError: the file exists but cannot be decoded.

    Taught in notebooks/01_data_tour.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image file {path} does not exist; check the dataset path "
                                "(config.dataset_status() shows what was found).")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            arr = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()  # force decoding now: truncation is only detected here
                if im.mode == "P":  # palette images: expand to the colours they show
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                arr = np.array(im)
                if im.mode == "I" and arr.size and 0 <= arr.min() and arr.max() <= 65535:
                    arr = arr.astype(np.uint16)  # 16-bit data some Pillow versions widen to int32
    except (OSError, ValueError, SyntaxError) as err:  # Pillow/tifffile decoding failures
        raise _fail(path, err) from err
    if arr.size == 0:
        raise _fail(path, "it holds no pixels")
    return arr


def to_uint8_rgb(arr: np.ndarray, source: str | Path = "array") -> np.ndarray:
    """Convert a decoded image array to ``H×W×3 uint8`` RGB.

    * ``H×W`` or ``H×W×1`` grey: repeated into three channels;
    * ``H×W×2`` grey + alpha and ``H×W×4`` RGBA: alpha dropped;
    * ``uint16`` / other integers: scaled by ``255 / dtype max`` (so 65535 -> 255, 257 -> 1);
      booleans: ``True`` -> 255; floats: assumed in [0, 1], clipped and scaled by 255.

    ``source`` only names the input in error messages.

    Taught in notebooks/01_data_tour.
    """
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (1, 2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channel-first TIFFs
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ImageReadError(
            f"{source}: expected a 2-D grey or H×W×C colour image (C in 1..4), got shape "
            f"{arr.shape}; multi-page or volume files must be split into single images first."
        )
    channels = arr.shape[-1]
    if channels in (1, 2):  # grey (+ alpha)
        arr = np.repeat(arr[..., :1], 3, axis=2)
    else:
        arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        scaled = np.clip(arr.astype(np.float64), 0, info.max) * (255.0 / info.max)
        return np.round(scaled).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ImageReadError(f"{source}: unsupported pixel type {arr.dtype}.")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``H×W×3 uint8`` RGB (see :func:`to_uint8_rgb` for the rules).

    Taught in notebooks/01_data_tour.
    """
    return to_uint8_rgb(read_array(path), source=path)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask file as ``H×W bool``: a pixel is foreground when any colour channel is non-zero.

    An alpha channel is ignored (DSB masks are single-channel 0/255; an RGBA mask with opaque
    black background must not become all foreground).

    Taught in notebooks/01_data_tour.
    """
    arr = read_array(path)
    if arr.ndim == 3:
        arr = arr[..., :3] if arr.shape[-1] in (3, 4) else arr[..., :1]
        return np.any(arr != 0, axis=-1)
    if arr.ndim != 2:
        raise ImageReadError(f"Mask file {path} has shape {arr.shape}; expected a 2-D mask.")
    return arr != 0

"""Robust reading of images and masks: every file comes back in the course's conventions.

Taught in notebooks/01_data_tour.

Real datasets mix formats: the DSB2018 images are 8-bit RGBA PNGs, some microscopy sets are
grey 12- or 16-bit TIFFs, VOC photos are JPEGs. Everything downstream expects one thing, so:

* :func:`read_image` returns ``H×W×3 uint8`` RGB: alpha is dropped, grey is repeated into the
  three channels, and pixel values are brought to 0..255 by the rules of :func:`to_uint8_rgb`;
* :func:`read_mask` returns ``H×W bool``: any non-zero colour is foreground;
* :func:`read_label_image` returns ``H×W int32`` instance labels, also from a label file saved
  in colour (each colour one instance, not channel 0 only).

How values are brought to 0..255 (the *rescaling rule*):

* ``uint8``: kept as it is (8 bits stored, 8 bits meant);
* other integers (``uint16``, ``int32``, ...): **min–max over the image's own values**,
  ``round((v - min) / (max - min) * 255)``. Microscopes store 10-, 12- or 14-bit data in 16-bit
  files; dividing by the type's maximum 65535 would turn a 12-bit image (max 4095) almost black
  (values up to 16 of 255). Min–max uses the range the data actually has, keeps the order of
  every pixel and clips none, and is easy to check by hand. It was preferred over a robust
  min–max at the 0.1/99.9 percentiles, which clips 0.2 % of every image, including the clean
  ones, and depends on the image size; pass ``rescale="percentile"`` where a few hot pixels
  would otherwise compress the rest. A constant image falls back to ``v / dtype max``.
* floats: values already in [0, 1] are scaled by 255; anything outside (e.g. 0..4095 or
  negative values) is min–max rescaled like integers instead of being clipped to white;
  NaN becomes 0.
* ``bool``: ``True`` -> 255.

Multi-page TIFFs (z-stacks, time series, channels saved as pages) are *not* one image, and
whether 3 pages are RGB or 3 slices cannot be told from the file: :func:`read_array` refuses
them with an :class:`ImageReadError` naming the file, the page count and the fix (split the pages
or save one RGB page). A single-page TIFF that stores its colour planes separately (axes
``SYX``) is recognised from its own tags and turned channel-last, so no shape guess is needed.

A file that cannot be decoded (corrupt bytes, truncated transfer, unknown format, an image so
large that Pillow suspects a decompression bomb) raises :class:`ImageReadError`, whose message
names the file and says what to do, instead of the decoder's bare exception surfacing in the
middle of an epoch.

One truncation Pillow does not see: a PNG whose compressed pixel data is complete as a stream
but holds fewer rows than the header promises (a writer that stopped early and still closed
the file properly). Pillow then fills the missing rows with black, silently. :func:`read_array`
counts the bytes the PNG's data inflates to (:func:`png_rows_missing`, one extra ``zlib`` pass,
a few milliseconds for a megapixel image) and refuses such a file with an
:class:`ImageReadError`.
"""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: File endings read through tifffile (Pillow handles 16-bit multi-channel TIFFs poorly).
TIFF_SUFFIXES = (".tif", ".tiff")

#: Percentiles of ``rescale="percentile"`` (robust min–max).
ROBUST_PERCENTILES = (0.1, 99.9)


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


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        n_pages = len(tif.pages)
        if n_pages > 1:
            raise ImageReadError(
                f"{path} is a multi-page TIFF ({n_pages} pages: a stack, a time series or "
                "channels saved as pages), not one image. Split it into one file per image "
                "(e.g. tifffile.imread(path, key=i)), or save the colour image as a single "
                "RGB page.")
        page = tif.pages[0]
        arr = page.asarray()
        axes = getattr(page, "axes", "")
    if arr.ndim == 3 and axes.startswith("S"):  # planar colour (SYX): channels first by tag
        arr = np.moveaxis(arr, 0, -1)
    return arr


#: PNG colour type -> samples per pixel (grey, RGB, palette, grey + alpha, RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}

#: Adam7 interlacing: the 7 passes as (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))


def png_pixel_bytes(width: int, height: int, bit_depth: int, colour_type: int,
                    interlaced: bool) -> int:
    """How many bytes a PNG's pixel data inflates to: each row is one filter byte plus its
    packed pixels; an interlaced image stores 7 smaller sub-images (Adam7), row by row.

    Taught in notebooks/01_data_tour.
    """
    bits = _PNG_CHANNELS.get(colour_type, 4) * bit_depth

    def image_bytes(w: int, h: int) -> int:
        return 0 if w == 0 or h == 0 else h * (1 + (w * bits + 7) // 8)

    if not interlaced:
        return image_bytes(width, height)
    return sum(image_bytes(max(0, -(-(width - x0) // dx)), max(0, -(-(height - y0) // dy)))
               for x0, y0, dx, dy in _ADAM7)


def _png_chunks(data: bytes):
    """``(type, payload)`` of each chunk of a PNG file's bytes, up to ``IEND``."""
    pos = 8  # after the signature
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        yield kind, data[pos + 8:pos + 8 + length]
        if kind == b"IEND":
            return
        pos += 12 + length  # length, type, payload, CRC


def png_rows_missing(data: bytes) -> str:
    """Why a PNG's pixel data holds fewer rows than its header says (``""``: it is complete).

    Pillow refuses a PNG whose compressed stream is cut off, but decodes one whose stream ends
    properly after too few rows, filling the rest with black. This inflates the ``IDAT``
    chunks once more and compares the byte count with :func:`png_pixel_bytes`. A stream cut
    off or corrupt is left to Pillow (it raises for those).

    Taught in notebooks/01_data_tour.
    """
    chunks = list(_png_chunks(data))
    header = next((payload for kind, payload in chunks if kind == b"IHDR"), b"")
    if len(header) < 13:
        return ""
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header[:13])
    expected = png_pixel_bytes(width, height, depth, colour, bool(interlace))
    inflater, got = zlib.decompressobj(), 0
    try:
        for kind, payload in chunks:
            if kind == b"IDAT":
                got += len(inflater.decompress(payload))
    except zlib.error:
        return ""
    if not inflater.eof or got >= expected:
        return ""
    if interlace:
        return (f"its pixel data stops early ({got} of {expected} bytes): part of the "
                "interlaced image is missing")
    rows = got // (expected // height)
    return (f"its pixel data stops after {rows} of {height} rows (the rest would read as "
            "black)")


def read_array(path: str | Path, palette: str = "colours") -> np.ndarray:
    """Decode ``path`` to a NumPy array as stored (any dtype, 2-D or ``H×W×C``).

    PNG, JPEG and the other Pillow formats are read with Pillow, TIFF with tifffile (one page
    only, see the module docstring).

    Args:
        path: the image file.
        palette: for palette (``P``) images, ``"colours"`` expands the palette to the colours
            shown (what a photo means); ``"indices"`` keeps the stored indices (what a label
            or class image means).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageReadError: the file exists but cannot be decoded, is truncated (also a PNG
            whose pixel data ends early, see :func:`png_rows_missing`), is a multi-page TIFF,
            or is larger than Pillow's decompression-bomb limit.

    Taught in notebooks/01_data_tour.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image file {path} does not exist; check the dataset path "
                                "(course_lib.data.discovery.dataset_status() shows what was "
                                "found).")
    from PIL import Image

    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            arr = _read_tiff(path)
        else:
            with Image.open(path) as im:
                im.load()  # force decoding now: truncation is only detected here
                if im.format == "PNG":  # the truncation Pillow does not see
                    missing = png_rows_missing(path.read_bytes())
                    if missing:
                        raise _fail(path, missing)
                if im.mode == "P" and palette == "colours":  # expand to the colours it shows
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                arr = np.array(im)
                if im.mode == "I" and arr.size and 0 <= arr.min() and arr.max() <= 65535:
                    arr = arr.astype(np.uint16)  # 16-bit data some Pillow versions widen to int32
    except Image.DecompressionBombError as err:
        raise ImageReadError(
            f"{path} is larger than Pillow's decompression-bomb limit "
            f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels): {err}. If you trust "
            "the file, raise the limit before reading (PIL.Image.MAX_IMAGE_PIXELS = None), or "
            "downscale or tile the image first.") from err
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError) as err:  # Pillow/tifffile decoding failures
        raise _fail(path, err) from err
    if arr.size == 0:
        raise _fail(path, "it holds no pixels")
    return arr


def rescale_to_uint8(values: np.ndarray, rescale: str = "minmax") -> np.ndarray:
    """Bring pixel values of any dtype to ``uint8`` 0..255 by the module's rescaling rule.

    Args:
        values: array of any shape; ``uint8`` is returned unchanged, ``bool`` as 0/255.
        rescale: ``"minmax"`` (default) maps the array's min to 0 and max to 255;
            ``"percentile"`` maps the :data:`ROBUST_PERCENTILES` instead and clips beyond them.
            Floats already within [0, 1] are scaled by 255 whatever the rule.

    Returns:
        ``uint8`` array of the same shape.

    Taught in notebooks/01_data_tour.
    """
    values = np.asarray(values)
    if rescale not in ("minmax", "percentile"):
        raise ValueError(f"rescale must be 'minmax' or 'percentile', got {rescale!r}")
    if values.dtype == np.uint8:
        return values
    if values.dtype == bool:
        return values.astype(np.uint8) * 255
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise ImageReadError(f"unsupported pixel type {values.dtype}.")
    v = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if np.issubdtype(values.dtype, np.floating) and v.size and 0.0 <= v.min() and v.max() <= 1.0:
        return np.round(v * 255.0).astype(np.uint8)
    if rescale == "percentile":
        lo, hi = np.percentile(v, ROBUST_PERCENTILES)
    else:
        lo, hi = (v.min(), v.max()) if v.size else (0.0, 0.0)
    if hi <= lo:  # a constant image: no range to stretch
        top = np.iinfo(values.dtype).max if np.issubdtype(values.dtype, np.integer) else max(hi, 1)
        return np.round(np.clip(v / top, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.round(np.clip((v - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


def to_uint8_rgb(arr: np.ndarray, source: str | Path = "array",
                 rescale: str = "minmax") -> np.ndarray:
    """Convert a decoded image array to ``H×W×3 uint8`` RGB.

    * ``H×W`` or ``H×W×1`` grey: repeated into three channels;
    * ``H×W×2`` grey + alpha and ``H×W×4`` RGBA: alpha dropped;
    * values: :func:`rescale_to_uint8` over the colour channels together (one range for the
      image, so colours keep their balance): ``uint8`` kept, other integers and floats outside
      [0, 1] min–max rescaled, floats in [0, 1] times 255, booleans ``True`` -> 255.

    Channels must come last (:func:`read_array` already turns planar TIFFs channel-last).
    ``source`` only names the input in error messages.

    Taught in notebooks/01_data_tour.
    """
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ImageReadError(
            f"{source}: expected a 2-D grey or H×W×C colour image (C in 1..4, channels last), "
            f"got shape {arr.shape}; multi-page or volume files must be split into single "
            "images first, channel-first arrays moved with np.moveaxis(a, 0, -1).")
    channels = arr.shape[-1]
    if channels in (1, 2):  # grey (+ alpha)
        arr = np.repeat(arr[..., :1], 3, axis=2)
    else:
        arr = arr[..., :3]
    try:
        return np.ascontiguousarray(rescale_to_uint8(arr, rescale))
    except ImageReadError as err:
        raise ImageReadError(f"{source}: {err}") from err


def read_image(path: str | Path, rescale: str = "minmax") -> np.ndarray:
    """Read an image file as ``H×W×3 uint8`` RGB (see :func:`to_uint8_rgb` for the rules).

    Taught in notebooks/01_data_tour.
    """
    return to_uint8_rgb(read_array(path), source=path, rescale=rescale)


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


def read_label_image(path: str | Path) -> np.ndarray:
    """Read an instance label file as ``H×W int32`` (0 background, one value per instance).

    A grey (8-/16-bit) or palette file gives its stored values (palette indices, not colours);
    a file saved in colour (RGB/RGBA) gives one label per distinct colour, black the background
    (:func:`course_lib.ops.masks.colour_labels`), so instances that differ only in green or
    blue are not merged as reading channel 0 would.

    Taught in notebooks/01_data_tour.
    """
    from course_lib.ops.masks import colour_labels

    arr = read_array(path, palette="indices")
    if arr.ndim == 3 and arr.shape[-1] == 2:  # grey + alpha: the grey value is the label
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ImageReadError(f"Label file {path} has shape {arr.shape}; expected H×W or H×W×C.")
    if arr.ndim == 2 and np.issubdtype(arr.dtype, np.floating):
        raise ImageReadError(f"Label file {path} holds floats; labels must be integers.")
    return colour_labels(arr) if arr.ndim == 3 else arr.astype(np.int32)

"""Mirror padding: the context a U-Net sees beyond an image's border.

Taught in notebooks/10_unet.

The U-Net paper fills the missing context around a tile by mirroring the image at its border.
Two mirrors are in common use and they differ by one pixel:

- ``"reflect"`` (NumPy's name; scipy calls it ``"mirror"``): the border pixel is the axis and is
  not repeated, ``c b | a b c``;
- ``"symmetric"`` (scipy's ``"reflect"``): the border pixel is repeated, ``b a | a b c``.

The course uses ``"reflect"`` everywhere (overlap-tile inference and the U-Net training crops):
repeating the border pixel doubles it into a two-pixel line that is not in the tissue, and a
nucleus cut by the border would come back with a seam; with the axis on the border pixel the
mirrored intensities continue smoothly across it. Training and inference must pad alike, so
both call :func:`mirror_pad`.
"""

from __future__ import annotations

import numpy as np

#: The one mirror mode of the course (``np.pad`` name); see the module docstring for why.
MIRROR_MODE = "reflect"


def mirror_pad(array: np.ndarray, pad) -> np.ndarray:
    """Pad the two spatial axes of ``array`` by mirroring it at its border (:data:`MIRROR_MODE`).

    Args:
        array: ``H×W`` or ``H×W×C`` (any dtype; label images stay label images).
        pad: ``((top, bottom), (left, right))`` pixels to add; a pad wider than the image
            mirrors again and again (``np.pad`` does that), so tiny images work too.

    Returns:
        ``(H + top + bottom)×(W + left + right)[×C]`` array of the input dtype; channels are
        not padded.

    Taught in notebooks/10_unet.
    """
    array = np.asarray(array)
    (top, bottom), (left, right) = pad
    widths = ((int(top), int(bottom)), (int(left), int(right))) + ((0, 0),) * (array.ndim - 2)
    return np.pad(array, widths, mode=MIRROR_MODE)
